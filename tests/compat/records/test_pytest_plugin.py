"""The pytest plugin on a small sample project: records listed in its pyproject.toml become test items."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

import compat

ROOT = Path(__file__).resolve().parents[3]


def test_plain_pytest_runs_a_projects_records(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "fixtures" / "sklearn" / "diabetes_gbr.joblib", models / "gbr.joblib")
    (tmp_path / "pyproject.toml").write_text('[tool.modelport]\nrecords = ["models/*.mprec"]\n')
    compat.record(models / "gbr.joblib", output=models / "gbr.mprec")

    def pytest_in_project(*extra):  # this checkout's plugin, not whichever modelport the venv has installed
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                              capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))

    passing = pytest_in_project()
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 passed" in passing.stdout

    with zipfile.ZipFile(models / "gbr.mprec") as zin, zipfile.ZipFile(models / "moved.mprec", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.startswith("native/"):
                arr = np.load(io.BytesIO(data)).copy()
                arr[0] *= 1.5
                buf = io.BytesIO()
                np.save(buf, arr)
                data = buf.getvalue()
            zout.writestr(info, data)
    failing = pytest_in_project()
    assert failing.returncode == 1
    assert "1 failed, 1 passed" in failing.stdout
    assert "moved.mprec" in failing.stdout and "native now vs then" in failing.stdout and "prediction" in failing.stdout

    only = pytest_in_project("--modelport-records", "models/gbr.mprec")
    assert only.returncode == 1  # the command-line glob adds to the configured ones


def test_no_records_configured_means_no_items(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], capture_output=True,
                          text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0 and "1 passed" in done.stdout
