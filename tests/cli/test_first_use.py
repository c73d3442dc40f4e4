"""What a new user tripped over (issue 17), run as the user runs it: each silent accept is now exit 2 with one
line naming the file or option and what to do; one bad file never hides the good ones; outputs are never
half written, stranded or silently replaced; a file that does not load says which module it misses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from cli_run import modelport

ROOT = Path(__file__).resolve().parents[2]
SKLEARN = ROOT / "fixtures" / "sklearn"
TENSORFLOW = ROOT / "fixtures" / "tensorflow"
LOGREG = SKLEARN / "breast_cancer_logreg.joblib"  # Pipeline(StandardScaler -> LogisticRegression), X: float32[batchx30]
HOLDOUT = SKLEARN / "breast_cancer_logreg.holdout.csv"
TEMP_SUFFIX = ".modelport-tmp"


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def one_error_line(result) -> str:
    """The single ``modelport: ...`` line a user error prints on stderr (no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("modelport: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def logreg_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("logreg") / "logreg.onnx"
    result = modelport("convert", LOGREG, "-o", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


# --------------------------------------------------------------------------------------- silent accepts


@pytest.mark.parametrize("command", ["check", "convert", "record"])
def test_tol_for_an_output_the_model_lacks_is_refused(tmp_path, logreg_onnx, command):
    args = {"check": ("check", LOGREG, logreg_onnx), "convert": ("convert", LOGREG, "-o", tmp_path / "m.onnx"),
            "record": ("record", LOGREG, "-o", tmp_path / "m.mprec")}[command]
    result = modelport(*args, "--tol", "proba=0,0", "--tol", "probabilities=1e-3,1e-6")
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"{LOGREG}: --tol names output 'proba', which this model does not have" in line
    assert "its outputs are: label, probabilities" in line
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.mprec").exists()
    right = modelport(*args, "--tol", "probabilities=1e-3,1e-6")  # the right name takes effect
    assert right.returncode == 0, right.stdout + right.stderr


def test_npz_arrays_are_matched_by_name(tmp_path, logreg_onnx):
    rows = np.loadtxt(HOLDOUT, delimiter=",", skiprows=1, dtype=np.float32)[:40]
    np.savez(tmp_path / "named.npz", X=rows)
    np.savez(tmp_path / "other.npz", foo=rows)
    np.savez(tmp_path / "narrow.npz", foo=rows[:, :29])
    np.savez(tmp_path / "two.npz", foo=rows, bar=rows)

    named = modelport("check", LOGREG, logreg_onnx, "--inputs", tmp_path / "named.npz", "--rows", 0)
    assert named.returncode == 0 and f"on 40 rows from {tmp_path / 'named.npz'}" in flat(named.stdout)

    # a single array under another name feeds the single input only because its shape fits, and says so
    other = modelport("check", LOGREG, logreg_onnx, "--inputs", tmp_path / "other.npz", "--rows", 0)
    assert other.returncode == 0, other.stdout + other.stderr
    assert "its only array, foo, taken as input X: the shapes agree" in flat(other.stdout)

    narrow = modelport("check", LOGREG, logreg_onnx, "--inputs", tmp_path / "narrow.npz")
    assert narrow.returncode == 2
    line = one_error_line(narrow)
    assert f"{tmp_path / 'narrow.npz'}: has no array named X; its only array, foo [40, 29], does not fit" in line

    two = modelport("check", LOGREG, logreg_onnx, "--inputs", tmp_path / "two.npz")
    assert two.returncode == 2
    line = one_error_line(two)
    assert "has no array named X (it has: foo, bar)" in line and "name the arrays after the model's inputs: X" in line


def test_a_header_only_csv_is_named_and_is_an_error_with_rows_0(tmp_path, logreg_onnx):
    header = tmp_path / "header.csv"
    header.write_text(HOLDOUT.read_text().splitlines()[0] + "\n")
    said = modelport("check", LOGREG, logreg_onnx, "--inputs", header)
    assert said.returncode == 0, said.stdout + said.stderr
    assert f"on 1000 rows from synthesized (seed 0) only: {header} holds no rows" in flat(said.stdout)
    refused = modelport("check", LOGREG, logreg_onnx, "--inputs", header, "--rows", 0)
    assert refused.returncode == 2
    line = one_error_line(refused)
    assert f"{header}: holds no rows: nothing to compare on" in line and "leave out --rows 0" in line
    converted = modelport("convert", LOGREG, "-o", tmp_path / "m.onnx", "--inputs", header, "--rows", 0)
    assert converted.returncode == 2 and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("spec, bad", [("batch*3*32", "batch*3*32"), ("batchx-1", "-1"), ("x=batchx3.5", "3.5"),
                                       ("batchx0x3", "0")])
def test_input_specs_the_grammar_does_not_define_are_refused(tmp_path, spec, bad):
    result = modelport("convert", LOGREG, "-o", tmp_path / "m.onnx", "--input", spec)
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"bad --input {spec!r}: {bad!r} is not a dimension" in line and "[name=]DIMS[:DTYPE]" in line


def test_strict_audit_of_a_folder_without_models_fails(tmp_path):
    empty = tmp_path / "emptydir"
    empty.mkdir()
    (empty / "notes.csv").write_text("a,b\n1,2\n")  # a file, but no model
    strict = modelport("audit", empty, "--strict", "--json", tmp_path / "audit.json")
    assert strict.returncode == 2
    assert one_error_line(strict) == (f"modelport: no model files under {empty} (check the path; --strict fails an "
                                      "audit that finds no model file)")
    assert json.loads((tmp_path / "audit.json").read_text())["summary"]["exit_code"] == 2
    assert modelport("audit", empty).returncode == 0  # without --strict an empty folder is not an error


@pytest.fixture(scope="module")
def forests(tmp_path_factory):
    """A RandomForest and an IsolationForest fitted on the same columns, and the IsolationForest's graph."""
    from sklearn.ensemble import IsolationForest, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import compat

    folder = tmp_path_factory.mktemp("forests")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, (X[:, 0] > 0).astype(int)),
                folder / "rf.joblib")
    joblib.dump(IsolationForest(n_estimators=5, random_state=0).fit(X), folder / "iso.joblib")
    joblib.dump(LogisticRegression().fit(X, np.digitize(X[:, 0], [-0.5, 0.5])), folder / "lr3.joblib")
    for name in ("iso", "lr3", "rf"):
        assert compat.convert(str(folder / f"{name}.joblib"), str(folder / f"{name}.onnx")).passed
    return folder


def test_checking_another_models_onnx_file_is_a_usage_error(forests):
    wrong = modelport("check", forests / "rf.joblib", forests / "iso.onnx")
    assert wrong.returncode == 2
    line = one_error_line(wrong)
    assert (f"{forests / 'iso.onnx'}: gives outputs (label, scores) but the native model gives (label, probabilities): "
            "nothing corresponds to probabilities (was it converted from this model?)") in line
    classes = modelport("check", forests / "rf.joblib", forests / "lr3.onnx")  # same names, another class count
    assert classes.returncode == 2
    assert "its output probabilities has 3 column(s) but the native model has 2 classes" in one_error_line(classes)
    right = modelport("check", forests / "rf.joblib", forests / "rf.onnx")
    assert right.returncode == 0, right.stdout + right.stderr


def test_a_graph_that_names_its_outputs_its_own_way_is_still_paired_by_position(forests, tmp_path):
    """The other side of the rule above: a graph from skl2onnx itself (output_label, output_probability as
    ZipMap) shares no name with the native model, so its outputs pair by position and the check runs."""
    from skl2onnx import to_onnx

    model = joblib.load(forests / "rf.joblib")
    graph = to_onnx(model, np.zeros((1, 4), dtype=np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    (tmp_path / "plain.onnx").write_bytes(graph.SerializeToString())
    result = modelport("check", forests / "rf.joblib", tmp_path / "plain.onnx")
    assert result.returncode in (0, 1), result.stderr  # a verdict on the numbers, not a usage error
    assert "outputs matched by position" in flat(result.stdout)


# ------------------------------------------------------------------------ one bad file never hides the others


def test_inspect_reports_every_file_and_the_bad_ones_with_their_error(tmp_path):
    good, truncated, empty = tmp_path / "good.joblib", tmp_path / "truncated.joblib", tmp_path / "empty.joblib"
    shutil.copy(LOGREG, good)
    truncated.write_bytes(LOGREG.read_bytes()[:2000])
    empty.write_bytes(b"")
    result = modelport("inspect", good, truncated, empty, "--json")
    assert result.returncode == 2
    entries = json.loads(result.stdout)
    assert [e["path"] for e in entries] == [str(good), str(truncated), str(empty)]
    assert entries[0]["safety"] == "safe" and "error" not in entries[0]
    assert entries[1]["safety"] == "unknown" or entries[1].get("error")  # fail closed: never safe
    assert entries[2]["error"].startswith("empty file") and entries[2]["schema"] == "modelport.inspect/1"
    assert one_error_line(result).startswith(f"modelport: {empty}: empty file")
    text = modelport("inspect", good, empty)
    assert text.returncode == 2 and str(good) in flat(text.stdout) and "safe" in text.stdout
    assert one_error_line(text).startswith(f"modelport: {empty}: empty file")


@pytest.mark.parametrize("command", ["convert-o", "check-report", "record-o", "audit-json"])
def test_an_output_in_a_folder_that_cannot_be_written_is_one_line(tmp_path, logreg_onnx, command):
    target = Path("/proc") / f"modelport-{os.getpid()}.out"  # /proc takes no new files, not even from root
    args = {"convert-o": ("convert", LOGREG, "-o", target),
            "check-report": ("check", LOGREG, logreg_onnx, "--report", target),
            "record-o": ("record", LOGREG, "-o", target),
            "audit-json": ("audit", SKLEARN, "--static", "--json", target.with_suffix(".json"))}[command]
    started = time.perf_counter()
    result = modelport(*args)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith(f"modelport: {target.with_suffix('.jsonl') if command == 'audit-json' else target}: "
                           "cannot be written: /proc refuses it (")
    assert line.endswith("(choose a folder you can write to)")
    assert time.perf_counter() - started < 30  # refused before the work, not after it


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0555 folder anyway; /proc covers root above")
def test_a_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = modelport("convert", LOGREG, "-o", folder / "m.onnx")
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"modelport: {folder / 'm.onnx'}: cannot be written: {folder} refuses it")


STALLED_WRITER = """
import os, sys, time
from pathlib import Path
ready = Path(sys.argv[1])
def stall(fd):  # the report's bytes are in its temporary file; the rename has not happened
    ready.write_text("mid-write")
    time.sleep(600)
os.fsync = stall
from compat.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _stalled_writer(tmp_path: Path, name: str, args) -> tuple[subprocess.Popen, Path]:
    ready = tmp_path / f"{name}.ready"
    proc = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(ready), *map(str, args)],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, "the writer ended before it reached the write"
        assert time.monotonic() < deadline, "the writer never reached the write"
        time.sleep(0.05)
    return proc, ready


def test_a_killed_write_strands_no_temporary_file(tmp_path, logreg_onnx):
    out = tmp_path / "out"
    out.mkdir()
    report = out / "report.json"
    killed, _ = _stalled_writer(tmp_path, "killed", ("check", LOGREG, logreg_onnx, "--report", report))
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    stranded = [p.name for p in out.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert len(stranded) == 1 and stranded[0].startswith(".report.json.") and not report.exists()

    live, _ = _stalled_writer(tmp_path, "live", ("check", LOGREG, logreg_onnx, "--report", out / "other.json"))
    try:
        live_temp = {p.name for p in out.iterdir() if p.name.endswith(TEMP_SUFFIX)} - set(stranded)
        assert len(live_temp) == 1
        again = modelport("check", LOGREG, logreg_onnx, "--report", report)  # the next run into that folder
        assert again.returncode == 0, again.stdout + again.stderr
        left = {p.name for p in out.iterdir()}
        assert "report.json" in left and json.loads(report.read_text())["verdict"] == "pass"
        assert stranded[0] not in left, "the killed writer's temporary file is still there"
        assert live_temp <= left, "a live writer's temporary file was removed"
    finally:
        live.kill()
        live.wait(timeout=30)


def test_two_converts_racing_to_one_output_do_not_both_say_wrote(tmp_path, forests):
    target = tmp_path / "model.onnx"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", PYTHONUNBUFFERED="1")
    cli = [sys.executable, "-m", "compat.cli", "convert"]
    # the slow one takes its look at the target first and checks 4 million rows; the fast one ends meanwhile
    slow = subprocess.Popen([*cli, LOGREG, "-o", target, "--rows", "4000000"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = slow.stdout.readline()
    assert first.startswith("loaded"), first + slow.stderr.read()
    fast = subprocess.run([*cli, forests / "rf.joblib", "-o", target, "--rows", "100"], env=env,
                          capture_output=True, text=True, timeout=300)
    slow_out, slow_err = slow.communicate(timeout=300)
    assert fast.returncode == 0 and f"wrote {target}" in fast.stdout, fast.stdout + fast.stderr
    assert slow.returncode == 2 and "wrote" not in slow_out
    assert one_error_line(subprocess.CompletedProcess([], 2, slow_out, slow_err)) == (
        f"modelport: {target}: changed while this run was working (another process wrote it); not overwritten "
        "(run again, or choose another output)")
    import onnx

    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert props["modelport.source"] == "rf.joblib"  # the file is the one whose writer said so


def test_the_default_output_never_replaces_another_files_conversion(tmp_path):
    shutil.copy(LOGREG, tmp_path / "model.joblib")
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", tmp_path / "model.pkl")
    first = modelport("convert", "model.joblib", cwd=tmp_path)
    assert first.returncode == 0 and "wrote model.onnx" in first.stdout
    written = (tmp_path / "model.onnx").read_bytes()
    second = modelport("convert", "model.pkl", cwd=tmp_path)
    assert second.returncode == 2
    assert one_error_line(second) == ("modelport: model.onnx: holds the conversion of model.joblib; converting "
                                      "model.pkl would replace it (name the output: -o model.pkl.onnx, or -o "
                                      "model.onnx to replace it)")
    assert (tmp_path / "model.onnx").read_bytes() == written
    assert modelport("convert", "model.joblib", cwd=tmp_path).returncode == 0  # its own conversion: replaced
    assert modelport("convert", "model.pkl", "-o", "model.onnx", cwd=tmp_path).returncode == 0  # named: replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    shutil.copy(LOGREG, foreign / "model.joblib")
    (foreign / "model.onnx").write_bytes(b"someone else's file")
    refused = modelport("convert", "model.joblib", cwd=foreign)
    assert refused.returncode == 2
    assert "model.onnx: exists and was not converted by modelport" in one_error_line(refused)
    assert (foreign / "model.onnx").read_bytes() == b"someone else's file"


@pytest.mark.slow
def test_keras_and_h5_of_one_name_do_not_share_model_onnx(tmp_path):
    for suffix in ("keras", "h5"):
        shutil.copy(TENSORFLOW / f"two_inputs.{suffix}", tmp_path / f"model.{suffix}")
    first = modelport("convert", "model.keras", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    second = modelport("convert", "model.h5", cwd=tmp_path)
    assert second.returncode == 2
    assert "model.onnx: holds the conversion of model.keras; converting model.h5 would replace it" in \
        one_error_line(second)
    third = modelport("convert", "model.h5", "-o", "model.h5.onnx", cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    inspected = json.loads(modelport("inspect", tmp_path / "model.h5.onnx", "--json").stdout)
    producer = inspected["saved_with"]["producer"]
    assert producer.startswith("tf2onnx ") and "None" not in producer, producer


# ------------------------------------------------------------------------------------------- diagnoses

LOGCLIP = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class LogClip(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.log1p(np.clip(X, 0, None))
"""

SAVE = """
import joblib, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from mytransform import LogClip
X = np.random.default_rng(0).uniform(0, 5, (100, 3))
joblib.dump(make_pipeline(LogClip(), LogisticRegression()).fit(X, (X[:, 0] > 2).astype(int)), "../custom.joblib")
"""


def test_a_missing_module_of_the_users_own_is_named_as_the_audit_names_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "mytransform.py").write_text(LOGCLIP)
    subprocess.run([sys.executable, "-c", SAVE], cwd=project, check=True)
    model = tmp_path / "custom.joblib"

    result = modelport("convert", model, "--trust", "-o", tmp_path / "custom.onnx", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line == (f"modelport: {model}: needs mytransform.LogClip, but no module mytransform is installed here: "
                    "install the package that provides it, or run where mytransform is importable (PYTHONPATH)")
    assert "pip install scikit-learn" not in line
    audited = modelport("audit", model, "--trust", "--json", tmp_path / "audit.json", cwd=tmp_path)
    row = json.loads((tmp_path / "audit.json").read_text())["artifacts"][0]
    assert audited.returncode == 0 and row["load"]["category"] == "missing-class"
    assert line.endswith(row["load"]["reason"])  # one diagnosis, the same words
    found = modelport("convert", model, "--trust", "--input", "X=batchx3", "-o", tmp_path / "custom.onnx",
                      cwd=tmp_path, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{project}"})
    assert flat(found.stdout).startswith(f"loaded {model}: Pipeline(LogClip -> LogisticRegression)"), \
        found.stdout + found.stderr  # control: where the module is importable, the same file loads


NESTED = """
from torch import nn


class Tagger(nn.Module):
    def __init__(self, vocab=50, d_model=16, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 2, dim_feedforward=32, dropout=0.0, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)  # enable_nested_tensor=True, which norm_first rules out
        self.head = nn.Linear(d_model, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.emb(tokens).transpose(0, 1)).transpose(0, 1))
"""


@pytest.mark.slow
def test_torchs_nested_tensor_advice_stays_off_the_terminal(tmp_path):
    pytest.importorskip("torch", reason="the torch extra is not installed")
    (tmp_path / "mynets.py").write_text(NESTED)
    made = subprocess.run([sys.executable, "-c", "import torch, mynets\ntorch.manual_seed(0)\n"
                           "torch.save(mynets.Tagger().eval().state_dict(), 'tagger.pt')"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "enable_nested_tensor is True" in made.stderr  # control: building the class does warn
    result = modelport("convert", "tagger.pt", "--model-class", "mynets.py:Tagger", "--input",
                       "tokens=batchx12:int64", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "nested" not in result.stderr, result.stderr
