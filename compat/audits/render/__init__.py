"""The audit's views: ``text`` (terminal table, progress bar), ``html``, ``sarif``, ``junit``; JSON is the
report's own ``to_json``. Each view module is imported only when asked for.

    from compat.audits import render
    render.write(report, "html", "audit.html")   # also "json", "sarif", "junit"; atomic
"""

from __future__ import annotations

import importlib
from pathlib import Path

# report kind -> (module, function returning str or bytes)
WRITERS = {"html": ("html", "to_html"), "sarif": ("sarif", "to_sarif_json"), "junit": ("junit", "to_junit")}


def render(report, kind: str):
    """The report as ``kind`` (json | html | sarif | junit): text or bytes."""
    if kind == "json":
        return report.to_json()
    module, function = WRITERS[kind]
    return getattr(importlib.import_module(f".{module}", __name__), function)(report)


def write(report, kind: str, path) -> Path:
    """Write ``report`` as ``kind`` to ``path``, atomically."""
    from convert.atomic import write_atomic

    return write_atomic(Path(path), render(report, kind))
