"""A HistGradientBoosting model fitted on a DataFrame with ``pd.Categorical`` string columns, taken the way
a user takes it: ``modelport convert --inputs`` the CSV it was fitted on, ``check`` on that CSV, an audit of
its folder, and ``--report`` written whatever the exit code."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from cli_run import modelport

COLORS = ["red", "green", "blue", "teal"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from sklearn.ensemble import HistGradientBoostingClassifier

    folder = tmp_path_factory.mktemp("categorical")
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice(COLORS, n).astype(object)
    color[rng.random(n) < 0.05] = None
    x1 = rng.normal(100.0, 30.0, n)
    x1[rng.random(n) < 0.03] = np.nan
    df = pd.DataFrame({"color": pd.Categorical(color, categories=COLORS),
                       "size": pd.Categorical(rng.choice(["S", "M", "L"], n)),
                       "x1": x1, "x2": rng.normal(-5.0, 2.0, n),
                       "shape": pd.Categorical(rng.choice(["a", "b"], n))})
    y = (df["color"].isin(["red", "teal"]).to_numpy() ^ (np.nan_to_num(x1, nan=0.0) > 100)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(df, y)  # categorical_features="from_dtype"
    joblib.dump(model, folder / "hgb.joblib")
    df.to_csv(folder / "data.csv", index=False)
    return folder


def report_of(path) -> dict:
    assert path.exists(), f"--report {path} was not written"
    return json.loads(path.read_text())


def test_convert_and_check_on_the_csv_it_was_fitted_on(fitted, tmp_path):
    out, report = tmp_path / "hgb.onnx", tmp_path / "r.json"
    result = modelport("convert", fitted / "hgb.joblib", "--inputs", fitted / "data.csv", "-o", out,
                       "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    # the printed signature is what the check reads: one input per column, strings for the categories
    printed = " ".join(result.stdout.split())  # the console wraps long lines
    assert "color: string[batchx1]" in printed and "x1: float32[batchx1]" in printed
    data = report_of(report)
    assert data["verdict"] == "pass" and data["inputs"]["rows"] == 1600
    assert any("exact TreeEnsemble" in note for note in data["conversion"]["notes"])
    checked = modelport("check", fitted / "hgb.joblib", out, "--inputs", fitted / "data.csv", "--rows", "0",
                        "--report", tmp_path / "c.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert report_of(tmp_path / "c.json")["inputs"]["rows"] == 600


def test_audit_converts_and_checks_it(fitted, tmp_path):
    from compat.audits import audit

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "hgb.joblib").write_bytes((fitted / "hgb.joblib").read_bytes())
    report = audit([folder], jobs=1)
    (row,) = report.artifacts
    assert (row.load.status, row.convert.status, row.check.status) == ("ok", "ok", "pass"), (row.convert, row.check)


def test_report_is_written_on_every_exit_code(fitted, tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = fitted / "hgb.joblib"
    # 1: the check fails (an ONNX file of another model fitted on the same columns)
    df = pd.read_csv(fitted / "data.csv").astype({"color": "category", "size": "category", "shape": "category"})
    other = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(df, (df["x2"] > -5).astype(int))
    joblib.dump(other, tmp_path / "other.joblib")
    assert modelport("convert", tmp_path / "other.joblib", "-o", tmp_path / "other.onnx").returncode == 0
    failed = modelport("check", model, tmp_path / "other.onnx", "--report", tmp_path / "fail.json")
    assert failed.returncode == 1
    assert report_of(tmp_path / "fail.json")["verdict"] == "fail"
    # 2: bad input (the CSV lacks a column the model was fitted on; a file that does not exist)
    df.drop(columns=["shape"]).to_csv(tmp_path / "partial.csv", index=False)
    for args, report in (((model, "--inputs", tmp_path / "partial.csv"), tmp_path / "bad.json"),
                         ((tmp_path / "missing.joblib",), tmp_path / "missing.json")):
        bad = modelport("convert", *args, "-o", tmp_path / "x.onnx", "--report", report)
        assert bad.returncode == 2, bad.stderr
        data = report_of(report)
        assert (data["verdict"], data["exit_code"]) == ("error", 2)
        assert data["error"]["message"] in bad.stderr
    assert "shape" in report_of(tmp_path / "bad.json")["error"]["message"]
    # 3: unsupported (a clusterer without predict)
    from sklearn.cluster import DBSCAN

    joblib.dump(DBSCAN().fit(np.random.default_rng(0).normal(size=(20, 2))), tmp_path / "db.joblib")
    unsupported = modelport("convert", tmp_path / "db.joblib", "--report", tmp_path / "u.json")
    assert unsupported.returncode == 3
    assert (report_of(tmp_path / "u.json")["exit_code"], report_of(tmp_path / "u.json")["error"]["kind"]) == (
        3, "UnsupportedModelError")
    # 2 from check, and 0 without a check
    assert modelport("check", model, tmp_path / "nothing.onnx", "--report", tmp_path / "c2.json").returncode == 2
    assert report_of(tmp_path / "c2.json")["exit_code"] == 2
    # 1: an unsafe pickle (it would create a canary file): refused, never run, and reported
    import os
    import pickle

    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {canary}",)

    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(Payload()))
    unsafe = modelport("convert", tmp_path / "payload.pkl", "--report", tmp_path / "unsafe.json")
    assert unsafe.returncode == 1 and not canary.exists()
    assert report_of(tmp_path / "unsafe.json")["error"]["kind"] == "UnsafeArtifactError"
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))",
                    str(tmp_path / "payload.pkl")], capture_output=True, timeout=120)
    assert canary.exists()  # live control: a real unpickling does run it
    unchecked = modelport("convert", model, "--no-check", "-o", tmp_path / "n.onnx", "--report", tmp_path / "n.json")
    assert unchecked.returncode == 0 and report_of(tmp_path / "n.json")["verdict"] == "unchecked"
