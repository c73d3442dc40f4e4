"""Payload helpers for the safety tests: ``Call`` pickles as ``func(*args)``; ``Canary`` is a file only a payload
that ran would create (fixture ``canary`` in tests/convert/conftest.py checks it stays absent)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys


class Call:
    """Pickles as ``func(*args)``: the classic payload shape."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class Canary:
    """A file that only a payload running would create. Every test using it checks it is still absent."""

    def __init__(self, path):
        self.path = path

    @property
    def command(self) -> str:
        return f"touch {shlex.quote(str(self.path))}"

    def payload(self):
        """An object whose pickle runs os.system(touch canary)."""
        return Call(os.system, self.command)

    def fired(self) -> bool:
        return self.path.exists()

    def load_in_subprocess(self, path, loader: str = "pickle") -> None:
        """Positive control: really load ``path`` in another process (this one stays clean)."""
        code = {
            "pickle": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
            "joblib": "import joblib,sys; joblib.load(sys.argv[1])",
        }[loader]
        subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
