"""Where a file's code may run: a fresh confined process per artifact. ``pool`` keeps worker slots that fork one
child per file, ``worker`` is such a slot, ``confine`` lays the layers on it (namespaces, seccomp, rlimits,
landlock, cgroups), ``proctree`` kills everything a file started, ``service`` feeds a pool from other threads
(store objects, Dask workers), ``limits`` holds the default jobs and memory. Nothing here knows what an audit
step does: the slot runs ``compat.audits.steps``."""
