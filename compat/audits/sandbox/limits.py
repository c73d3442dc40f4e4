"""How much of this machine an audit takes by default: a worker process per CPU, and a memory cap per file
that shares what is available among them. Where the work runs (this machine, or each Dask worker) decides."""

from __future__ import annotations

import os


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_memory(jobs: int) -> int:
    """Bytes per worker: 80% of the available memory shared by the workers, between 1 and 8 GiB."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        return 4 << 30
    return int(min(8 << 30, max(1 << 30, available * 0.8 / max(jobs, 1))))
