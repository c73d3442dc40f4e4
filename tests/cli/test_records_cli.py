"""Records that travel (issue 17), run as users run them: how many rows `record` keeps and says it kept,
its help, a remedy change `verify` reports, and a matrix whose only environment fails.

(The model-class half of the issue, records made in proj/ci/ with ../nets.py:Net, is in
tests/compat/test_record_trust.py.)
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np

from cli_run import modelport

ROOT = Path(__file__).resolve().parents[2]
SKLEARN = ROOT / "fixtures" / "sklearn"


def flat(text: str) -> str:
    return " ".join(text.split())


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def recorded_inputs(record: Path) -> np.ndarray:
    with zipfile.ZipFile(record) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        (entry,) = manifest["inputs"]
        return np.load(io.BytesIO(zf.read(entry["file"])), allow_pickle=False)


def golden_rows(tmp_path: Path, n: int) -> Path:
    """``n`` realistic rows for the diabetes model: its holdout rows, repeated with a little noise."""
    holdout = np.load(SKLEARN / "diabetes_gbr.holdout.npz")["X"]
    rng = np.random.default_rng(1)
    rows = np.resize(holdout, (n, holdout.shape[1])) + rng.normal(0, 1e-3, (n, holdout.shape[1]))
    path = tmp_path / "golden.npz"
    np.savez(path, X=rows)
    return path


def test_record_keeps_the_first_rows_of_inputs_and_says_how_many_it_left_out(tmp_path):
    golden = golden_rows(tmp_path, 600)
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", tmp_path / "gbr.joblib")
    done = modelport("record", "gbr.joblib", "-o", "g.mprec", "--inputs", golden, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"recorded the first 256 of the 600 rows of {golden}; the other 344 were left out "
                        "(--rows N records more, --rows 0 all of them)"), done.stdout
    assert re.match(r"^wrote g\.mprec: 256 rows, outputs prediction; ONNX graph kept inside; [0-9.]+ KiB$", lines[1])
    assert np.array_equal(recorded_inputs(tmp_path / "g.mprec"), np.load(golden)["X"][:256])

    everything = modelport("record", "gbr.joblib", "-o", "all.mprec", "--inputs", golden, "--rows", "0", cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert "left out" not in everything.stdout and "wrote all.mprec: 600 rows" in everything.stdout
    assert np.array_equal(recorded_inputs(tmp_path / "all.mprec"), np.load(golden)["X"])

    fewer = modelport("record", "gbr.joblib", "-o", "few.mprec", "--inputs", golden, "--rows", "1000", cwd=tmp_path)
    assert fewer.returncode == 0 and "left out" not in fewer.stdout and "600 rows" in fewer.stdout

    synthesized = modelport("record", "gbr.joblib", "-o", "syn.mprec", "--rows", "40", cwd=tmp_path)
    assert synthesized.returncode == 0 and "left out" not in synthesized.stdout
    assert "wrote syn.mprec: 40 rows" in synthesized.stdout

    nothing = modelport("record", "gbr.joblib", "-o", "none.mprec", "--rows", "0", cwd=tmp_path)
    assert nothing.returncode == 2
    assert one_line(nothing.stderr) == ("modelport: --rows 0: nothing to record (--rows N records N rows; --rows 0 "
                                        "keeps every row of --inputs)")
    assert not (tmp_path / "none.mprec").exists()


def test_record_help_says_what_record_does():
    from compat.records.record import DEFAULT_RECORD_ROWS

    done = modelport("record", "--help")
    assert done.returncode == 0
    text = flat(done.stdout)
    assert "rows stored in the record: the first N rows of --inputs" in text
    assert f"no synthesized rows are added to --inputs (default: {DEFAULT_RECORD_ROWS}; 0: every row of --inputs)" in text
    assert "nothing is recorded if they disagree" in text
    assert "also added after --inputs rows" not in text  # convert's --rows, which record never did
    for option in ("--report", "--junit", "--batch-size"):  # accepted and ignored before: now not offered
        assert option not in text
    refused = modelport("record", SKLEARN / "diabetes_gbr.joblib", "-o", "x.mprec", "--junit", "x.xml")
    assert refused.returncode == 2 and "unrecognized arguments: --junit" in refused.stderr


def test_verify_reports_a_remedy_change_as_a_change(tmp_path):
    """A simulated regression: the record says its graph needed no remedy, today's converter needs `double`."""
    shutil.copy(SKLEARN / "churn_columns_forest.joblib", tmp_path / "churn.joblib")
    made = modelport("record", "churn.joblib", "-o", "today.mprec", "--rows", "64", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    with zipfile.ZipFile(tmp_path / "today.mprec") as zin, zipfile.ZipFile(tmp_path / "then.mprec", "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        assert manifest["onnx"]["remedy"] == "double"  # what today's conversion of this forest needs
        manifest["onnx"]["remedy"] = None  # the record of an older converter whose plain graph agreed
        for info in zin.infolist():
            zout.writestr(info, json.dumps(manifest).encode() if info.filename == "manifest.json" else zin.read(info))

    same = modelport("verify", "today.mprec", cwd=tmp_path)
    assert same.returncode == 0, same.stdout
    changed = modelport("verify", "then.mprec", "--report", "v.json", cwd=tmp_path)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "reconverted vs native now: failed: remedy changed: plain -> double (today: plain fail, exact-trees " \
           "fail, double pass)" in flat(changed.stdout)
    data = json.loads((tmp_path / "v.json").read_text())["records"][0]
    by_name = {c["name"]: c for c in data["comparisons"]}
    assert not by_name["reconverted vs native now"]["passed"]
    assert all(c["passed"] for name, c in by_name.items() if name != "reconverted vs native now")
    assert data["verdict"] == "fail" and "remedy changed: plain -> double" in data["reason"]


def test_matrix_names_the_only_failing_environment_and_prints_its_whole_reason(tmp_path):
    """The environment cannot be installed (no package index, no wheels: pip fails in seconds, offline)."""
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", tmp_path / "gbr.joblib")
    assert modelport("record", "gbr.joblib", "-o", "g.mprec", "--rows", "16", cwd=tmp_path).returncode == 0
    (tmp_path / "no-wheels").mkdir()
    env = {"MODELPORT_CACHE": str(tmp_path / "envs"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "no-wheels")}
    done = modelport("matrix", "g.mprec", "--with", "scikit-learn==1.6.1", "--json", "m.json", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads((tmp_path / "m.json").read_text())
    (only,) = data["environments"]
    assert only["status"] == "install-failed" and only["reason"].startswith("ERROR: ")
    assert data["first_breaking"] == "scikit-learn==1.6.1"
    lines = done.stdout.splitlines()
    assert f"scikit-learn==1.6.1: {only['reason']}" in lines  # whole, on its own line
    assert lines[-1] == "first breaking: scikit-learn==1.6.1"
