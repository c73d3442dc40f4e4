"""Shared test setup. HOME points at a temporary folder so onnxruntime's telemetry database and keras'
config land there, not in the user's home (see STACK.md); each test has its own empty result cache."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
_HOME = tempfile.mkdtemp(prefix="modelport-test-home-")
os.environ["HOME"] = _HOME
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sklearn_zoo.py


@pytest.fixture(autouse=True)
def _own_result_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty default result cache (``modelport audit``/``verify`` cache by default under
    $XDG_CACHE_HOME): no test reuses another's results."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sklearn_fixtures() -> Path:
    return FIXTURES / "sklearn"
