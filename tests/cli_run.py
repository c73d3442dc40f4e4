"""``modelport`` run as a user runs it: a fresh process, the repository on PYTHONPATH, 120 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modelport(*args, cwd=None, env=None, unset=(), timeout=600) -> subprocess.CompletedProcess:
    """``env`` adds variables; ``unset`` removes ones the test runner's shell may carry but a user's does not."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    for name in unset:
        environ.pop(name, None)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "compat.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=environ, timeout=timeout)
