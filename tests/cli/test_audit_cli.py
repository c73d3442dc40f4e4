"""``modelport audit`` run the way users run it: a subprocess, exit codes, stdout/stderr, the files it writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_run import modelport

ROOT = Path(__file__).resolve().parents[2]
SKLEARN = ROOT / "fixtures" / "sklearn"


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def os_system_pickle(command: str) -> bytes:
    """Raw opcodes that call ``os.system(command)`` when unpickled."""
    arg = command.encode()
    return b"\x80\x04cos\nsystem\n\x8c" + bytes([len(arg)]) + arg + b"\x85R."


@pytest.fixture
def clean_folder(tmp_path):
    """A safe model, a suspicious one (a class the allowlist does not know) and a text file."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", folder)
    (folder / "custom.pkl").write_bytes(b"\x80\x02cmycorp.models\nScorer\n)\x81.")
    (folder / "README.txt").write_text("models for the scoring service\n")
    return folder


def test_help_teaches_verdicts_and_exit_codes():
    out = modelport("audit", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for words in ("exit codes", "0 nothing unsafe", "1 an unsafe artifact", "2 bad input or usage", "--strict",
                  "suspicious", "unknown", "--sarif", "--junit", "--html", "--json", "examples"):
        assert words in text, words
    top = modelport("--help")
    assert top.returncode == 0 and "audit" in top.stdout


def test_help_imports_no_framework():
    code = ("import sys\nfrom compat import cli\nfor argv in (['--help'], ['audit', '--help']):\n    try:\n"
            "        cli.main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'keras', 'sklearn', 'onnx', 'onnxruntime',"
            " 'compat.audits') if m in sys.modules))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stderr


def test_clean_folder_exits_0_and_writes_every_report(clean_folder, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = modelport("audit", clean_folder, "--static", "--jobs", "2", "--json", out_dir / "a.json",
                       "--html", out_dir / "a.html", "--sarif", out_dir / "a.sarif", "--junit", out_dir / "a.xml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "diabetes_gbr.joblib" in result.stdout and "custom.pkl" in result.stdout
    assert "exit 0" in result.stdout and result.stderr == ""
    data = json.loads((out_dir / "a.json").read_text())
    assert data["schema"] == "modelport.audit/1" and data["summary"]["safety"]["suspicious"] == 1
    assert data["skipped"][0]["path"] == "README.txt"
    assert json.loads((out_dir / "a.sarif").read_text())["runs"][0]["tool"]["driver"]["name"] == "modelport"
    assert ET.parse(out_dir / "a.xml").getroot().find("testsuite").get("name") == "modelport audit"
    assert "<table" in (out_dir / "a.html").read_text()
    # the rows as they finished, beside the JSON: a header, one line per row or skipped file, the summary
    journal = [json.loads(line) for line in (out_dir / "a.jsonl").read_text().splitlines()]
    assert journal[0]["schema"] == "modelport.audit-rows/1" and journal[-1]["exit_code"] == 0
    assert sorted(j["artifact"]["path"] for j in journal if "artifact" in j) == sorted(
        a["path"] for a in data["artifacts"])
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.html", "a.json", "a.jsonl", "a.sarif", "a.xml"]


def test_strict_fails_on_a_suspicious_file(clean_folder):
    result = modelport("audit", clean_folder, "--static", "--strict", "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exit 1" in result.stdout and "custom.pkl" in result.stdout
    assert "─" not in result.stdout  # --quiet: the summary, no table


def test_unsafe_file_exits_1_and_never_runs(clean_folder, tmp_path):
    canary = tmp_path / "CANARY"
    (clean_folder / "evil.pkl").write_bytes(os_system_pickle(f"touch {canary}"))
    result = modelport("audit", clean_folder, "--jobs", "2", "--timeout", "120")  # every step, for real
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "evil.pkl" in line]
    assert lines and "unsafe" in lines[0] and "refused" in lines[0]
    assert "pass" in next(line for line in result.stdout.splitlines() if "diabetes_gbr" in line)
    assert "exit 1: 1 unsafe artifact(s): evil.pkl" in result.stdout
    assert not canary.exists()


def test_a_file_the_scan_cannot_read_to_its_end_exits_1(clean_folder):
    """Fail closed: an unknown file fails a default audit (no --strict), and the last line says why."""
    (clean_folder / "cut.pkl").write_bytes(b"\x80\x04\x95\xff\x00\x00")  # ends inside a frame header
    result = modelport("audit", clean_folder, "--static", "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exit 1: 1 unknown (not read to its end) artifact(s): cut.pkl" in " ".join(result.stdout.split())


def test_missing_path_is_one_readable_line_and_exit_2(tmp_path):
    result = modelport("audit", tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"modelport: {tmp_path / 'nowhere'}: no such file or directory "
                                                  "(check the path)"]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs: must be at least 1"),
    (["--timeout", "-5"], "--timeout: must be a positive number"),
    (["--html", "no/such/folder/a.html"], "the folder for --html does not exist"),
])
def test_bad_options_exit_2_before_any_work(clean_folder, tmp_path, args, message):
    result = modelport("audit", clean_folder, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing audited


def _cgroups_of(pid: int) -> list[str]:
    """Cgroups an audit run by ``pid`` created (named modelport-audit-PID-...), in any hierarchy."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(top, d) for d in dirs if d.startswith(f"modelport-audit-{pid}-")]
        if top.count("/") > 6:
            dirs[:] = []
    return found


def test_a_killed_audit_leaves_its_finished_rows_and_no_temporary_folders(tmp_path):
    """Item 12: SIGKILL the audit while two trusted files hang (one has a grandchild in a session of its
    own). The .jsonl beside --json already holds every finished row; within seconds no process of the
    audit is left, and neither its temporary folder nor its cgroups."""
    import pickle
    import time

    from process_watch import Watch, marked

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", folder / "a_model.joblib")
    (folder / "b_config.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    journal = out / "audit.jsonl"
    with Watch() as watch:
        hang = (f"import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    os.execv(sys.executable, "
                f"[sys.executable, '-c', 'import time; time.sleep(1000)', {watch.marker!r}])\ntime.sleep(1000)\n")
        (folder / "c_daemon.pkl").write_bytes(pickle.dumps(Call(exec, hang)))
        (folder / "d_sleep.pkl").write_bytes(pickle.dumps(Call(time.sleep, 1000)))
        environ = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp), COLUMNS="120")
        proc = subprocess.Popen([sys.executable, "-m", "compat.cli", "audit", str(folder), "--trust", "--jobs", "2",
                                 "--timeout", "300", "--quiet", "--json", str(out / "audit.json")], env=environ,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = journal.read_text().count('{"artifact"') if journal.exists() else 0
                if done >= 2 and watch.alive():
                    break
                time.sleep(0.2)
            assert time.monotonic() < deadline, "the fast files never finished, or the hanging ones never started"
            assert [p.name for p in tmp.iterdir() if p.name.startswith("modelport-audit-")]
            assert marked(str(tmp))  # the audit's worker processes, running
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (watch.alive() or list(tmp.iterdir()) or _cgroups_of(proc.pid)
                                                   or marked(str(tmp))):
                time.sleep(0.2)
        finally:
            proc.kill()
    survivors = watch.kill_survivors()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["schema"] == "modelport.audit-rows/1"
    rows = {line["artifact"]["path"]: line["artifact"] for line in lines if "artifact" in line}
    assert set(rows) == {"a_model.joblib", "b_config.pkl"}
    assert rows["a_model.joblib"]["check"]["status"] == "pass"
    assert not any("summary" in line for line in lines)  # the audit did not end: the journal says so
    assert not (out / "audit.json").exists()
    assert not survivors
    assert marked(str(tmp)) == []  # the audit's own worker processes (they carry its folder in their environment)
    assert list(tmp.iterdir()) == []
    assert _cgroups_of(proc.pid) == []
