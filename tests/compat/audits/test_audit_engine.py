"""The audit engine for real: folders of genuine artifacts, worker processes, payloads that crash, hang or
eat memory. Nothing is mocked; timings are kept short with ``static=True`` where the dynamic steps are not
the point, a 5-second timeout, and two workers."""

from __future__ import annotations

import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from compat.audits import STATUSES, AuditReport, audit
from process_watch import Watch
from tiny_models import tiny_onnx

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures"
TIMEOUT = 5.0
MEMORY = 640 << 20  # per file, beyond the frameworks its slot imported: every zoo model fits (a Keras model
# adds about 80 MB), the payloads below do not


# ------------------------------------------------------------------------------------------ builders


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, 4))
    return path


def _safetensors(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"dense.weight": np.ones((4, 3), np.float32), "dense.bias": np.zeros(4, np.float32),
               "steps": np.arange(2, dtype=np.int64)}, path)
    return path


# relative path -> (format, how it is made); the folder mixes every kind of file an audit meets
ZOO_MODELS = {
    "sklearn/breast_cancer.joblib": ("joblib", lambda p: shutil.copy(FIXTURES / "sklearn/breast_cancer_logreg.joblib", p)),
    "sklearn/topics.pkl": ("pickle", lambda p: shutil.copy(FIXTURES / "sklearn/topics_tfidf_svm.pkl", p)),
    "torch/mlp_state.pt": ("torch-zip", lambda p: shutil.copy(FIXTURES / "torch/mlp_state.pt", p)),
    "torch/lstm_checkpoint.pt": ("torch-zip", lambda p: shutil.copy(FIXTURES / "torch/lstm_checkpoint.pt", p)),
    "torch/cnn_legacy.pt": ("torch-legacy", lambda p: shutil.copy(FIXTURES / "torch/cnn_legacy.pt", p)),
    "torch/cnn_script.pt": ("torchscript", lambda p: shutil.copy(FIXTURES / "torch/cnn_script.pt", p)),
    "onnx/relu.onnx": ("onnx", lambda path: tiny_onnx(path, "Relu", 4)),
    "weights/model.safetensors": ("safetensors", _safetensors),
    "keras/two_inputs.keras": ("keras", lambda p: shutil.copy(FIXTURES / "tensorflow/two_inputs.keras", p)),
    "keras/two_inputs.h5": ("keras-h5", lambda p: shutil.copy(FIXTURES / "tensorflow/two_inputs.h5", p)),
    "tf/scorer_module": ("savedmodel", lambda p: shutil.copytree(FIXTURES / "tensorflow/scorer_module", p)),
    # a joblib file under a misleading name, two folders down: found by its bytes
    "nested/deeper/notes.txt": ("joblib", lambda p: shutil.copy(FIXTURES / "sklearn/diabetes_gbr.joblib", p)),
    "nested/config.pkl": ("pickle", lambda p: _dump(p, {"threshold": 0.5, "labels": ["no", "yes"]})),
}
ZOO_SKIPPED = {
    "README.md": ("not a model", lambda p: p.write_text("# models\nsee the audit\n")),
    "data/train.csv": ("not a model", lambda p: p.write_text("a,b,label\n1,2,0\n3,4,1\n")),
    "data/holdout.npz": ("data", lambda p: np.savez(p, X=np.ones((3, 2)), y=np.arange(3))),
    "data/empty.bin": ("not a model", lambda p: p.write_bytes(b"")),
    "data/features.npy": ("data", lambda p: np.save(p, np.arange(10.0))),
}


def _make(folder: Path, table: dict) -> None:
    for rel, (_, make) in table.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    _make(folder, ZOO_MODELS)
    _make(folder, ZOO_SKIPPED)
    return folder


# Payloads for the worker isolation tests: each file is live only with trust. A file's process may write
# only in its own temporary folder, so a payload shows it ran by what it does to its row (a crash, a hang)
# and by the processes it starts, each carrying the test's marker (``process_watch.Watch``).

def _exec(source: str):
    return Call(exec, source)


def project_function(seconds):
    """Stands for code of the project that saved a file: a global that is neither the standard library's nor a
    framework's, so the scan calls it suspicious, not unsafe."""
    time.sleep(seconds)


def bad_files(folder: Path, marker: str) -> dict[str, Path]:
    import ctypes

    return {
        "abort": _dump(folder / "bad/abort.pkl", Call(os.abort)),
        "segfault": _dump(folder / "bad/segfault.pkl", Call(ctypes.string_at, 0)),
        "hang": _dump(folder / "bad/hang.pkl", Call(time.sleep, 1000)),
        # a hang that leaves a child process behind: killing the file's processes must take the child too
        "hang with child": _dump(folder / "bad/hang_child.pkl", _exec(
            "import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', {marker!r}])\n"
            "time.sleep(1000)\n")),
        "huge allocation": _dump(folder / "bad/huge.pkl", Call(bytearray, 10 ** 11)),
        # shared memory is not capped by RLIMIT_DATA: the cgroup (or the supervisor's watch) must stop it
        "growing memory": _dump(folder / "bad/grow.pkl", _exec(
            "import mmap\nm = mmap.mmap(-1, 6 << 30)\nchunk = b'x' * (32 << 20)\n"
            "for i in range(0, 6 << 30, len(chunk)):\n    m[i:i + len(chunk)] = chunk\n")),  # 32 MB steps: past
        # the cap in well under a second even on a loaded machine, far before the timeout
    }


EXPECTED_LOSS = {"abort": ("crashed", "crash", "SIGABRT"), "segfault": ("crashed", "crash", "SIGSEGV"),
                 "hang": ("timeout", "timeout", "still running after 5 s"),
                 "hang with child": ("timeout", "timeout", "still running after 5 s"),
                 "huge allocation": ("out-of-memory", "out-of-memory", "memory"),
                 "growing memory": ("out-of-memory", "out-of-memory", "the cap")}


def _rows(report: AuditReport) -> dict:
    return {row.path: row for row in report.artifacts}


# -------------------------------------------------------------------------------------- static mode


def test_static_audit_of_a_mixed_folder(zoo):
    """One row per artifact (by content, recursively, a SavedModel folder as one), each non-model file
    counted with its reason, paths relative to the folder, no dynamic step."""
    seen = []
    report = audit([zoo], static=True, jobs=2, progress=lambda done, total, item: seen.append((done, total)))
    rows = _rows(report)
    assert set(rows) == set(ZOO_MODELS)
    assert {path: row.format for path, row in rows.items()} == {k: v[0] for k, v in ZOO_MODELS.items()}
    assert all(row.safety == "safe" for row in rows.values()), {p: r.findings for p, r in rows.items()}
    assert all(row.root == str(zoo) for row in rows.values())
    assert all(row.load is None and row.convert is None and row.check is None for row in rows.values())
    assert not any(k in row.to_dict() for row in rows.values() for k in ("load", "convert", "check"))
    assert rows["nested/deeper/notes.txt"].framework == "sklearn"
    assert rows["sklearn/breast_cancer.joblib"].saved_with["sklearn"]
    assert rows["torch/cnn_legacy.pt"].saved_with["torch_legacy_protocol"] == 1001
    assert rows["keras/two_inputs.keras"].saved_with["keras"]
    assert all(len(row.sha256) == 64 and row.size > 0 for row in rows.values())

    skipped = {s.path: s.reason for s in report.skipped}
    assert set(skipped) == set(ZOO_SKIPPED)
    for rel, (kind, _) in ZOO_SKIPPED.items():
        assert skipped[rel].split(":")[0] == kind, (rel, skipped[rel])
    assert "CSV" in skipped["data/train.csv"] and "empty" in skipped["data/empty.bin"]
    summary = report.summary
    assert summary["artifacts"] == len(ZOO_MODELS) and summary["skipped"] == len(ZOO_SKIPPED)
    assert summary["skipped_by_reason"] == {"not a model": 3, "data": 2}
    assert summary["safety"]["safe"] == len(ZOO_MODELS)
    assert not any(step in summary for step in ("load", "convert", "check"))
    assert report.exit_code == 0
    total = len(ZOO_MODELS) + len(ZOO_SKIPPED)
    assert sorted(seen) == [(n, total) for n in range(1, total + 1)]


def test_walk_takes_files_and_folders_and_skips_symlinks(zoo, tmp_path):
    (tmp_path / "link.joblib").symlink_to(zoo / "sklearn/breast_cancer.joblib")
    (tmp_path / "linked-dir").symlink_to(zoo / "torch", target_is_directory=True)
    shutil.copy(zoo / "onnx/relu.onnx", tmp_path / "own.onnx")
    # given as a relative path, and a file inside it given again: audited once, roots absolute throughout
    report = audit([os.path.relpath(tmp_path), zoo / "torch/cnn_script.pt", tmp_path / "own.onnx"], static=True,
                   jobs=1)
    rows = [(row.root, row.path) for row in report.artifacts]
    assert sorted(rows) == sorted([(str(tmp_path), "own.onnx"), (str(zoo / "torch"), "cnn_script.pt")])
    assert {(s.root, s.path, s.reason) for s in report.skipped} == {
        (str(tmp_path), "link.joblib", "symlink: not followed"), (str(tmp_path), "linked-dir", "symlink: not followed")}


# ------------------------------------------------------------------------- dynamic: the whole zoo


@pytest.mark.slow
def test_dynamic_audit_with_crashes_hangs_and_memory_hogs(zoo, tmp_path):
    """The issue's 'done when': a folder mixing every format plus payloads that crash (abort, segfault),
    hang, and eat memory (at once, and slowly) audits to one row per artifact under --trust. Each bad row is
    marked on its load step, the good rows are as they would be alone, the lost workers are replaced,
    and a child process a payload started dies with its worker."""
    folder = tmp_path / "mixed"
    shutil.copytree(zoo, folder, symlinks=True)
    with Watch() as watch:
        bad = bad_files(folder, watch.marker)
        report = audit([folder], trust=True, jobs=2, timeout=TIMEOUT, memory=MEMORY)
    survivors = watch.kill_survivors()
    rows = _rows(report)
    assert set(rows) == set(ZOO_MODELS) | {p.relative_to(folder).as_posix() for p in bad.values()}
    assert len(report.skipped) == len(ZOO_SKIPPED)
    for label, path in bad.items():
        row = rows[path.relative_to(folder).as_posix()]
        status, category, words = EXPECTED_LOSS[label]
        assert (row.load.status, row.load.category) == (status, category), (label, row.load)
        assert words in row.load.reason, (label, row.load.reason)
        assert row.convert.status == row.check.status == "skipped"
        # a bytearray is data (protocol 5 pickles carry them): only the memory cap stops a huge one
        assert row.safety in (("safe",) if label == "huge allocation" else ("unsafe", "suspicious"))
    assert watch.seen and not survivors  # with trust the payload really started its child, which died with it

    _assert_good_rows(rows)
    lost = sum(1 for label in EXPECTED_LOSS if label != "huge allocation")  # that one fails inside its process
    assert report.workers["lost"] == lost
    assert report.workers["processes"] >= len(rows)  # a process of its own for every file
    assert report.workers["slots"] == 2  # the files' processes were lost, never the slots that fork them
    assert report.exit_code == 1  # unsafe payloads


def _assert_good_rows(rows: dict) -> None:
    sk = rows["sklearn/breast_cancer.joblib"]
    assert (sk.load.status, sk.convert.status, sk.check.status) == ("ok", "ok", "pass"), (sk.load, sk.convert)
    assert "LogisticRegression" in sk.load.reason
    assert (rows["nested/deeper/notes.txt"].load.status, rows["nested/deeper/notes.txt"].check.status) == ("ok", "pass")
    state = rows["torch/mlp_state.pt"]
    import torch

    tensors = torch.load(FIXTURES / "torch/mlp_state.pt", weights_only=True)
    assert state.load.status == "weights"
    assert state.load.details["tensors"] == len(tensors)
    assert state.load.details["parameters"] == sum(t.numel() for t in tensors.values())
    assert state.load.details["dtypes"] == {"float32": len(tensors)}
    assert (state.convert.status, state.convert.category) == ("needs-input", "needs-input")
    assert "--model-class" in state.convert.reason
    checkpoint = rows["torch/lstm_checkpoint.pt"]
    assert checkpoint.load.status == "weights" and checkpoint.load.details["state_key"] == "model_state_dict"
    script = rows["torch/cnn_script.pt"]
    assert (script.load.status, script.convert.status) == ("ok", "needs-input"), (script.load, script.convert)
    onnx_row = rows["onnx/relu.onnx"]
    assert (onnx_row.load.status, onnx_row.convert.status) == ("ok", "not-needed")
    st = rows["weights/model.safetensors"]
    assert (st.load.status, st.load.details["tensors"], st.load.details["parameters"]) == ("weights", 3, 18)
    for rel in ("keras/two_inputs.keras", "keras/two_inputs.h5", "tf/scorer_module"):
        row = rows[rel]
        assert (row.load.status, row.convert.status, row.check.status) == ("ok", "ok", "pass"), (rel, row.load,
                                                                                               row.convert)
    config = rows["nested/config.pkl"]
    assert (config.load.status, config.convert.status) == ("ok", "unsupported")
    assert "dict of 2 items" in config.load.reason
    for row in rows.values():
        for step in ("load", "convert", "check"):
            assert row.outcome(step).status in STATUSES[step], (row.path, step, row.outcome(step))


def test_without_trust_payloads_are_refused_and_never_run(tmp_path):
    """The same payloads without --trust: the static verdict refuses them before any unpickling (the
    canary their payloads would create stays absent); a safe neighbour still loads."""
    folder = tmp_path / "bad"
    canary = tmp_path / "canary"
    with Watch() as watch:
        bad = bad_files(tmp_path, watch.marker)
        bad["touch"] = _dump(folder / "touch.pkl", Call(os.system, f"touch {canary}"))
        _dump(folder / "config.pkl", {"threshold": 0.5})
        report = audit([folder], jobs=2, timeout=TIMEOUT, memory=MEMORY)
    rows = _rows(report)
    assert len(rows) == len(bad) + 1
    for label, path in bad.items():
        row = rows[path.name]
        assert row.convert.status == row.check.status == "skipped"
        if label == "huge allocation":  # a bytearray is data: it loads, and the memory cap stops it
            assert row.safety == "safe" and row.load.status == "out-of-memory", row.load
            continue
        assert row.safety == "unsafe"  # os.abort, ctypes, exec, and time.sleep: the standard library off the allowlist
        assert (row.load.status, row.load.category) == ("refused", "unsafe"), row.load
    assert rows["config.pkl"].load.status == "ok"
    assert report.workers["lost"] == 0 and report.workers["slots"] == 2
    static = audit([folder], static=True, jobs=2)  # --static: verdicts only, nothing loaded or refused
    assert {r.path: r.safety for r in static.artifacts} == {p: r.safety for p, r in rows.items()}
    assert all(r.load is None and r.convert is None and r.check is None for r in static.artifacts)
    assert static.exit_code == 1
    assert not canary.exists() and not watch.seen
    assert report.exit_code == 1


# --------------------------------------------------------------------------------------- exit codes


def test_exit_codes_follow_strict(tmp_path):
    """0: nothing unsafe or unknown, nothing failed; 1: an unsafe or unknown artifact; with strict also a
    suspicious one or a failed load/convert/check."""
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    clean = tmp_path / "clean"
    _dump(clean / "model.pkl", LogisticRegression().fit(X, y))
    assert audit([clean], static=True, jobs=1).exit_code == 0
    assert audit([clean], static=True, jobs=1, strict=True).exit_code == 0

    suspicious = tmp_path / "suspicious"
    _dump(suspicious / "slow.pkl", Call(project_function, 1))  # a function of the project that saved it
    assert audit([suspicious], static=True, jobs=1).exit_code == 0
    strict = audit([suspicious], static=True, jobs=1, strict=True)
    assert strict.exit_code == 1 and strict.summary["exit_code"] == 1

    unsafe = tmp_path / "unsafe"
    _dump(unsafe / "boom.pkl", Call(os.system, "true"))
    assert audit([unsafe], static=True, jobs=1).exit_code == 1

    # fail closed: a pickle cut off inside its frame, which the scanner cannot read to its end, fails the
    # audit without --strict, as an unsafe one does
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "cut.pkl").write_bytes(pickle.dumps(LogisticRegression().fit(X, y), 4)[:300])
    cut = audit([unknown], static=True, jobs=1)
    assert cut.artifacts[0].safety == "unknown" and cut.exit_code == 1 and cut.summary["exit_code"] == 1

    # a safe file whose conversion fails: a fitted model with a coefficient table of the wrong shape
    broken = LogisticRegression().fit(X, y)
    broken.coef_ = np.ones((1, 2))
    failing = tmp_path / "failing"
    _dump(failing / "broken.pkl", broken)
    lenient = audit([failing], jobs=1, timeout=60)
    row = lenient.artifacts[0]
    assert row.safety == "safe" and row.load.status == "ok"
    assert (row.convert.status, row.check.status) == ("ok", "error"), (row.convert, row.check)
    assert row.failed
    assert lenient.exit_code == 0
    assert audit([failing], jobs=1, timeout=60, strict=True).exit_code == 1


def test_drift_compares_releases_but_not_older_onnx_levels():
    """An sklearn release other than the installed one is drift either way; an ONNX file at an older
    opset or IR version is what every runtime reads, so only a level above the installed one counts."""
    from compat.audits import drift

    installed = {"sklearn": "1.9.1", "onnx_opset": 25, "onnx_ir": 12}
    assert drift({"sklearn": "1.2.2"}, installed) == {"sklearn": "older"}
    assert drift({"sklearn": "1.10.0"}, installed) == {"sklearn": "newer"}
    assert drift({"onnx_opset": 13, "onnx_ir": 7}, installed) == {"onnx_opset": "supported", "onnx_ir": "supported"}
    assert drift({"onnx_opset": 26, "onnx_ir": 12}, installed) == {"onnx_opset": "newer", "onnx_ir": "same"}
