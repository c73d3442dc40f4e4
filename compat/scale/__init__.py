"""Running many jobs: a result cache that survives crashes and re-runs (``cache``) and a Dask back end that
sends per-item tasks to a cluster and streams results back (``cluster``). Generic: the audits and the
replays of records (``compat.audits``, ``compat.records``) bring their own task functions."""
