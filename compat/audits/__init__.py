"""Audit folders of model files: what each is, who wrote it, whether loading it would run code, and whether it
still loads, converts and agrees. ``engine`` walks and drives, ``runners`` say where tasks run (this machine or
Dask) and ``task`` is the unit they run, ``steps`` are what a file goes through, each loading file in a confined
process of its own (``sandbox``), ``static`` runs the static pass (no file's code: in this process, or forked),
``diagnose`` says why a file fails, ``report`` holds the results, ``render`` shows them.

    from compat.audits import audit
    report = audit(["models/"], static=True)
"""

from __future__ import annotations

from .engine import audit, drift, walk
from .report import (
                     AUDIT_SCHEMA,
                     DEFAULT_TIMEOUT,
                     FAILED,
                     SAFETY,
                     STATUSES,
                     STEPS,
                     AuditReport,
                     AuditRow,
                     Outcome,
                     Skipped,
)

__all__ = ["AUDIT_SCHEMA", "DEFAULT_TIMEOUT", "FAILED", "SAFETY", "STATUSES", "STEPS", "AuditReport", "AuditRow",
           "Outcome", "Skipped", "audit", "drift", "walk"]
