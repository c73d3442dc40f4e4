"""The modelport command, run the way users run it: a subprocess, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from cli_run import modelport

ROOT = Path(__file__).resolve().parents[2]
SKLEARN = ROOT / "fixtures" / "sklearn"


def test_help_teaches_and_imports_no_framework():
    out = modelport("--help")
    assert out.returncode == 0
    for word in ("inspect", "convert", "check", "exit codes", "examples"):
        assert word in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom compat import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n"
         "    pass\nprint(sorted(m for m in ('torch', 'tensorflow', 'keras', 'sklearn', 'skl2onnx') if m in sys.modules))"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert probe.stdout.strip().splitlines()[-1] == "[]"


def test_sklearn_convert_never_imports_torch_or_tensorflow(tmp_path):
    code = ("import sys\nfrom compat import cli\n"
            f"rc = cli.main(['convert', {str(SKLEARN / 'diabetes_gbr.joblib')!r}, '-o', {str(tmp_path / 'g.onnx')!r}])\n"
            "print(rc, sorted(m for m in ('torch', 'tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert probe.stdout.strip().splitlines()[-1] == "0 []", probe.stderr


def test_convert_writes_a_model_onnxruntime_serves(tmp_path):
    out = tmp_path / "churn.onnx"
    report = tmp_path / "report.json"
    result = modelport("convert", SKLEARN / "churn_columns_forest.joblib", "-o", out,
                       "--inputs", SKLEARN / "churn_columns_forest.holdout.csv", "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and f"wrote {out}" in result.stdout
    data = json.loads(report.read_text())
    assert data["schema"] == "modelport.check/1" and data["verdict"] == "pass"
    assert {o["name"] for o in data["outputs"]} == {"label", "probabilities"}
    for key in ("max_abs_error", "max_rel_error", "mismatched", "total", "atol", "rtol"):
        assert key in data["outputs"][1]
    assert data["inputs"]["rows"] > 1000 and "holdout" in data["inputs"]["source"]
    assert {"python", "numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"} <= set(data["environment"])
    assert data["remedies"][0]["remedy"] == "none"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]


def test_default_output_is_beside_the_input(tmp_path):
    model = tmp_path / "gbr.joblib"
    model.write_bytes((SKLEARN / "diabetes_gbr.joblib").read_bytes())
    result = modelport("convert", model)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gbr.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gbr.joblib", "gbr.onnx"]  # no temp files left


def test_check_passes_and_fails_honestly(tmp_path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    a = tmp_path / "a.joblib"
    b = tmp_path / "b.joblib"
    joblib.dump(LogisticRegression(C=1.0, max_iter=5000).fit(x, y), a)
    joblib.dump(LogisticRegression(C=1e-4, max_iter=5000).fit(x, y), b)
    assert modelport("convert", b, "-o", tmp_path / "b.onnx").returncode == 0
    same = modelport("check", b, tmp_path / "b.onnx")
    assert same.returncode == 0 and "PASS" in same.stdout
    other = modelport("check", a, tmp_path / "b.onnx", "--report", tmp_path / "r.json")
    assert other.returncode == 1 and "FAIL" in other.stdout
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "fail"


def test_a_conversion_that_disagrees_is_not_written(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.neural_network import MLPClassifier

    x, y = load_wine(return_X_y=True)
    model = tmp_path / "mlp.joblib"
    joblib.dump(MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(x / 100, y), model)
    result = modelport("convert", model, "--atol", "0", "--rtol", "0")  # nothing computed twice is bit-equal
    assert result.returncode == 1
    assert "no ONNX file written" in result.stdout and "tried:" in result.stdout
    assert not (tmp_path / "mlp.onnx").exists()
    kept = modelport("convert", model, "--atol", "0", "--rtol", "0", "--keep-failed")
    assert kept.returncode == 1 and (tmp_path / "mlp.onnx").exists()


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str]]:
    (tmp_path / "empty.joblib").write_bytes(b"")
    (tmp_path / "random.pkl").write_bytes(np.random.default_rng(0).bytes(4096))
    good = (SKLEARN / "breast_cancer_logreg.joblib").read_bytes()
    (tmp_path / "truncated.joblib").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pkl").write_text("this is a README, not a model\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "wrong_columns.csv").write_text("a,b,c\n1,2,3\n")
    model = SKLEARN / "breast_cancer_logreg.joblib"
    return {
        "empty file": (["convert", tmp_path / "empty.joblib"], "empty.joblib"),
        "random bytes": (["convert", tmp_path / "random.pkl"], "random.pkl"),
        "truncated joblib": (["convert", tmp_path / "truncated.joblib"], "truncated.joblib"),
        "text .pkl": (["convert", tmp_path / "text.pkl"], "text.pkl"),
        "directory": (["convert", tmp_path / "folder"], "folder"),
        "missing path": (["convert", tmp_path / "nope.joblib"], "nope.joblib"),
        "csv columns": (["convert", model, "-o", tmp_path / "x.onnx", "--inputs", tmp_path / "wrong_columns.csv"],
                        "wrong_columns.csv"),
        "check a non-onnx": (["check", model, tmp_path / "text.pkl"], "text.pkl"),
    }


@pytest.mark.parametrize("case", ["empty file", "random bytes", "truncated joblib", "text .pkl", "directory",
                                  "missing path", "csv columns", "check a non-onnx"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    args, name = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = modelport(*args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_payload_is_never_executed_by_inspect_or_convert(tmp_path):
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": Payload()}, protocol=4))
    inspected = modelport("inspect", path)
    assert inspected.returncode == 1 and "unsafe" in inspected.stdout and "system" in inspected.stdout
    for command in (["convert", path], ["check", path, SKLEARN / "breast_cancer_logreg.joblib"]):
        result = modelport(*command)
        assert result.returncode == 1, result.stderr
        assert "unsafe" in result.stderr and "--trust" in result.stderr
    assert not canary.exists()


def test_usage_errors_exit_2():
    assert modelport("convert").returncode == 2
    assert modelport("frobnicate").returncode == 2
    assert modelport("convert", SKLEARN / "diabetes_gbr.joblib", "--tol", "nonsense").returncode == 2
