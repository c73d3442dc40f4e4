"""The static pass of an audit runs no file's code, so it runs where it costs least: in the audit's own process
(no worker process, no framework, no onnx), or in processes forked from it when there are many files. Either
way every file costs one row, whatever it does to the scanner: a file that stalls the scan is stopped at the
timeout, a forked scanner that crashes costs the file it was reading, and the rest of the audit goes on."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from canary import Canary
from compat.audits import audit
from compat.audits.static import FORK_MIN
from tiny_models import tiny_onnx

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "tensorflow", "keras", "sklearn", "skl2onnx", "tf2onnx", "onnx", "onnxruntime", "onnxscript",
         "numpy", "scipy", "joblib", "h5py", "pandas")


def _real_folder(folder: Path, canary: Canary) -> Path:
    """A scikit-learn model as joblib and as pickle, a torch state dict, an ONNX model, a .npy array, a config
    pickle and a payload, each written by its own library."""
    import joblib
    import torch
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(40, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    joblib.dump(model, folder / "model.joblib")
    (folder / "model.pkl").write_bytes(pickle.dumps(model, 4))
    torch.save(torch.nn.Linear(4, 2).state_dict(), folder / "weights.pt")
    tiny_onnx(folder / "model.onnx")
    np.save(folder / "features.npy", x)
    (folder / "config.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    (folder / "payload.pkl").write_bytes(pickle.dumps(canary.payload(), 2))
    return folder


def _slow_pickle(path: Path, items: int) -> Path:
    """A valid protocol-4 pickle of a list of ``items`` one-key dicts: real opcodes, one walk of which takes
    about a second per 600,000 items (written directly: building the objects would cost more)."""
    item = b"}\x8c\x01aK\x00s"  # EMPTY_DICT, SHORT_BINUNICODE 'a', BININT1 0, SETITEM
    data = b"\x80\x04](" + item * items + b"e."
    assert pickle.loads(data[:2 + 2 + len(item) * 3] + b"e.") == [{"a": 0}] * 3  # what the bytes mean
    path.write_bytes(data)
    return path


def _rows(report) -> dict:
    return {r.path: r for r in report.artifacts}


def _facts(report) -> dict:
    """Each row without the time it took."""
    return {r.path: {k: v for k, v in r.to_dict().items() if k not in ("seconds", "peak_rss_mb")}
            for r in report.artifacts}


# ---------------------------------------------------------------------------------- the fixed cost


# runs ``modelport audit`` in this process and says which modules it imported
_CLI = """
import json, runpy, sys
out = sys.argv.pop(1)
code = 0
try:
    runpy.run_module("compat.cli", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
json.dump({"code": code, "modules": sorted(sys.modules)}, open(out, "w"))
"""


def test_a_static_audit_imports_no_framework_and_starts_no_process(tmp_path):
    """``modelport audit --static``: no framework, no onnx/onnxruntime, not even numpy is imported, and no
    worker process is started (the report counts none); the verdicts are the scanner's as ever."""
    canary = Canary(tmp_path / "canary")
    folder = _real_folder(tmp_path / "models", canary)
    seen, report = tmp_path / "modules.json", tmp_path / "audit.json"
    run = subprocess.run([sys.executable, "-c", _CLI, str(seen), "audit", str(folder), "--static", "--json",
                          str(report), "--quiet"], env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=300)
    result = json.loads(seen.read_text())
    assert result["code"] == 1, run.stdout + run.stderr  # the payload is unsafe
    imported = {m.split(".")[0] for m in result["modules"]}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    data = json.loads(report.read_text())
    assert {k: data["workers"][k] for k in ("processes", "lost", "slots")} == {"processes": 0, "lost": 0, "slots": 0}
    assert data["confinement"] == {}  # no file's code ran: nothing needed confining
    rows = {r["path"]: r for r in data["artifacts"]}
    assert set(rows) == {"model.joblib", "model.pkl", "weights.pt", "model.onnx", "config.pkl", "payload.pkl"}
    assert {p: r["safety"] for p, r in rows.items()} == {
        "model.joblib": "safe", "model.pkl": "safe", "weights.pt": "safe", "model.onnx": "safe",
        "config.pkl": "safe", "payload.pkl": "unsafe"}
    assert (rows["model.onnx"]["saved_with"]["onnx_opset"], rows["model.onnx"]["drift"]["onnx_opset"]) == (17,
                                                                                                        "supported")
    assert rows["model.joblib"]["saved_with"]["sklearn"] and rows["weights.pt"]["format"] == "torch-zip"
    assert [s["path"] for s in data["skipped"]] == ["features.npy"]
    assert not canary.fired()


def test_a_native_parser_runs_in_a_forked_process(tmp_path):
    """An HDF5 file goes to h5py, native code outside the standard library: it is scanned in a process forked
    for it (a crash there would cost its row, not the audit), and the audit's own process never imports h5py."""
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "models"
    folder.mkdir()
    with h5py.File(folder / "data.h5", "w") as f:
        f["x"] = np.arange(10.0)
    (folder / "config.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    seen, report = tmp_path / "modules.json", tmp_path / "audit.json"
    subprocess.run([sys.executable, "-c", _CLI, str(seen), "audit", str(folder), "--static", "--json", str(report),
                    "--quiet", "--jobs", "1"], env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                   timeout=300)
    assert "h5py" not in {m.split(".")[0] for m in json.loads(seen.read_text())["modules"]}
    data = json.loads(report.read_text())
    assert {k: data["workers"][k] for k in ("processes", "lost", "slots")} == {"processes": 1, "lost": 0, "slots": 0}
    assert {r["path"]: r["format"] for r in data["artifacts"]} == {"config.pkl": "pickle"}
    assert [s["path"] for s in data["skipped"]] == ["data.h5"]
    assert data["skipped"][0]["reason"].startswith("data: an HDF5 file")  # h5py read it: not a Keras model


# -------------------------------------------------------------------------------- one row per file


def test_a_file_that_stalls_the_scan_costs_one_row(tmp_path):
    """Scanned in the audit's own process, a file whose walk outlasts the timeout is stopped there: its row is
    ``unknown`` (fail closed), the files after it are scanned as usual, and SIGALRM is handed back as it was."""
    canary = Canary(tmp_path / "canary")
    folder = _real_folder(tmp_path / "models", canary)
    _slow_pickle(folder / "b_slow.pkl", 3_000_000)
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    report = audit([folder], static=True, jobs=1, timeout=0.5)
    assert time.monotonic() - t0 < 30
    assert signal.getsignal(signal.SIGALRM) is before
    rows = _rows(report)
    slow = rows["b_slow.pkl"]
    assert slow.safety == "unknown" and "still running after 0.5 s" in slow.findings[0]["what"], slow.findings
    assert rows["payload.pkl"].safety == "unsafe" and rows["model.joblib"].safety == "safe"
    assert len(report.artifacts) == 7 and report.exit_code == 1
    assert report.workers == {"processes": 0, "lost": 1, "slots": 0}
    assert not canary.fired()


def test_many_files_are_scanned_in_forked_processes_with_the_same_rows(tmp_path):
    """Past ``FORK_MIN`` files and with two jobs the files are shared out to two forked processes in batches;
    the rows are those of the scan in the audit's own process, one per file."""
    canary = Canary(tmp_path / "canary")
    folder = _real_folder(tmp_path / "models", canary)
    for i in range(FORK_MIN):
        (folder / f"config_{i:02d}.pkl").write_bytes(pickle.dumps({"threshold": i / 100, "name": f"run {i}"}, 4))
    here = audit([folder], static=True, jobs=1)
    forked = audit([folder], static=True, jobs=2)
    assert here.workers["processes"] == 0 and forked.workers == {"processes": 2, "lost": 0, "slots": 0}
    assert _facts(forked) == _facts(here) and len(forked.artifacts) == FORK_MIN + 6
    assert forked.summary == here.summary and forked.exit_code == 1
    assert not canary.fired()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
                kids.append(int(entry))
    return kids


def test_a_forked_scanner_that_crashes_or_overruns_costs_its_file_one_row(tmp_path):
    """The forked process reading a file is killed by a signal mid-scan (as a native parser's segfault would
    kill it): the file goes to a new process once; when that one dies on it too, the file's row says so
    (``unknown``), the files queued behind it go to a new process, and the audit ends with every row. A file
    that outlasts the timeout there is killed the same way, and not tried again."""
    canary = Canary(tmp_path / "canary")
    folder = _real_folder(tmp_path / "models", canary)
    _slow_pickle(folder / "a_slow.pkl", 6_000_000)  # first: its process gets it, then a batch of small ones
    for i in range(FORK_MIN):
        (folder / f"config_{i:02d}.pkl").write_bytes(pickle.dumps({"threshold": i / 100}, 4))
    out = tmp_path / "audit.json"
    proc = subprocess.Popen([sys.executable, "-m", "compat.cli", "audit", str(folder), "--static", "--jobs", "2",
                             "--json", str(out), "--quiet"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 120
        first_seen: dict[int, float] = {}
        while time.monotonic() < deadline and proc.poll() is None and len(killed) < 2:
            kids = _children(proc.pid)
            now = time.monotonic()
            for kid in kids:
                first_seen.setdefault(kid, now)
            # alone and busy for a second: the other one finished its small files, this one reads a_slow.pkl
            if len(kids) == 1 and kids[0] not in killed and now - first_seen[kids[0]] > 1.0:
                os.kill(kids[0], signal.SIGSEGV)
                killed.append(kids[0])
            time.sleep(0.05)
        assert len(killed) == 2, f"killed {killed}: the scanning processes were not seen as expected"
        assert proc.wait(timeout=120) == 1
    finally:
        proc.kill()
    data = json.loads(out.read_text())
    rows = {r["path"]: r for r in data["artifacts"]}
    assert len(rows) == FORK_MIN + 7
    slow = rows["a_slow.pkl"]
    assert slow["safety"] == "unknown", slow
    assert "crashed (SIGSEGV), 2 times on this file" in slow["findings"][0]["what"], slow["findings"]
    assert all(rows[f"config_{i:02d}.pkl"]["safety"] == "safe" for i in range(FORK_MIN))
    assert rows["payload.pkl"]["safety"] == "unsafe"
    assert data["workers"]["lost"] == 1 and data["workers"]["processes"] >= 4  # new ones after each death

    report = audit([folder], static=True, jobs=2, timeout=1)
    rows = _rows(report)
    assert rows["a_slow.pkl"].safety == "unknown"
    assert "still running after 1 s" in rows["a_slow.pkl"].findings[0]["what"]
    assert len(rows) == FORK_MIN + 7 and report.workers["lost"] == 1
    assert all(rows[f"config_{i:02d}.pkl"].safety == "safe" for i in range(FORK_MIN))
    assert not canary.fired()
