"""Shared test setup. HOME points at a temporary folder so onnxruntime's telemetry database and keras'
config land there, not in the user's home."""

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


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sklearn_fixtures() -> Path:
    return FIXTURES / "sklearn"
