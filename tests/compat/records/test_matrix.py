"""The version matrix over two real scikit-learn releases, installed from the package index into
throwaway virtualenvs (slow: about a minute per environment the first time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import compat
from compat.records.matrix import EnvResult, first_breaking

ROOT = Path(__file__).resolve().parents[3]


def test_first_breaking_version_is_found_in_upgrade_order():
    def env(version, verdict):
        return EnvResult([f"scikit-learn=={version}"], verdict=verdict)

    results = [env("1.7.2", "fail"), env("1.5.2", "pass"), env("1.6.1", "pass"), env("1.10.0", "fail")]
    assert first_breaking(results) == "scikit-learn==1.7.2"
    assert first_breaking([env("1.2.2", "fail"), env("1.6.1", "pass")]) == "scikit-learn==1.2.2 (and below)"
    assert first_breaking([env("1.6.1", "pass")]) is None
    # every environment fails: the matrix still says where (never null)
    assert first_breaking([env("1.6.1", "fail")]) == "scikit-learn==1.6.1"
    assert first_breaking([env("1.7.2", "fail"), env("1.6.1", "fail")]) == \
        "scikit-learn==1.6.1 (and every environment above it)"


def test_the_table_never_cuts_a_reason():
    import io

    from rich.console import Console

    from compat.records.matrix import MatrixReport, render_text

    reason = ("native model no longer loads: " + "a long explanation from the library, " * 8).strip() + " END"
    results = [EnvResult(["scikit-learn==1.6.1"], status="ok", loads=False, verdict="fail", reason=reason),
               EnvResult(["scikit-learn==1.7.2"], verdict="pass", loads=True, native_agrees=True, onnx_agrees=True)]
    buf = io.StringIO()
    render_text(MatrixReport("m.mprec", results, first_breaking(results)), Console(file=buf, width=100))
    lines = buf.getvalue().splitlines()
    assert len(reason) > 200 and f"scikit-learn==1.6.1: {reason}" in lines
    assert lines[-1] == "first breaking: scikit-learn==1.6.1 (and below)"


@pytest.mark.slow
def test_matrix_over_two_scikit_learn_releases(tmp_path):
    shutil.copy(ROOT / "fixtures" / "sklearn" / "diabetes_gbr.joblib", tmp_path / "gbr.joblib")
    compat.record(tmp_path / "gbr.joblib", output=tmp_path / "gbr.mprec", rows=64)
    done = subprocess.run([sys.executable, "-m", "compat.cli", "matrix", "gbr.mprec", "--with", "scikit-learn==1.6.1",
                           "--with", "scikit-learn==1.7.2", "--json", "m.json"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=1800)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["schema"] == "modelport.matrix/1" and len(data["environments"]) == 2
    for env, version in zip(data["environments"], ("1.6.1", "1.7.2")):
        assert env["status"] == "ok", env
        assert env["versions"]["scikit-learn"] == version  # really ran under that release
        assert env["loads"] in (True, False) and env["verdict"] in ("pass", "fail")
        if env["verdict"] == "pass":
            assert env["native_agrees"] and env["onnx_agrees"]
    assert ("scikit-learn==1.6.1" in done.stdout) and ("scikit-learn==1.7.2" in done.stdout)
    assert (done.returncode == 0) == all(e["verdict"] == "pass" for e in data["environments"])
