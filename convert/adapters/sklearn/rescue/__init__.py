"""Legacy rescue for scikit-learn files: ``migrate`` (the migrating unpickler: old names through the scanner's
history table, old layouts rewritten), ``state`` (state brought forward, by rules with their releases, from
``state.json``), ``changes`` (what a migration did; stand-ins for missing code), ``reference`` (independent
evaluation from fitted arrays), ``safe`` (skops out and back, with an explicit trusted-type list)."""
