"""The terminal every view prints to, and modelport's own version (read from metadata: imports nothing)."""

from __future__ import annotations

import sys


def version() -> str:
    """The installed modelport release, or ``unknown`` in a checkout that was never installed."""
    from convert.versions import installed_version

    return installed_version("modelport") or "unknown"


def console(stderr: bool = False):
    """A rich Console; when output is not a terminal (CI logs, pipes) it is 110 columns, not rich's 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 110
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)
