"""What a file loaded with --trust can reach in the audit: payloads built here, run in the audit for real.

Each test builds its payload, audits it with ``trust=True`` and asserts the row, the exit code and that
nothing the payload aimed at happened: no connection reached the test's listener, no secret of the
caller's reached a file or the report, no process it started outlived the audit, no file grew past the
cap, and no other file's row changed. Where the failure of a payload could be its own bug, a live control
runs the same bytes unconfined in a throwaway process and shows they do what they aim at.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from compat.audits import audit
from compat.audits.sandbox.confine import LAYERS, process_limit
from process_watch import Watch

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures"


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payload(path: Path, source: str) -> Path:
    """A pickle that runs ``source`` when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Call(exec, textwrap.dedent(source)), 4))
    return path


def live(path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Positive control: unpickle ``path`` in a throwaway process, unconfined."""
    return subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
                           str(path)], capture_output=True, text=True, timeout=120, env=env)


def only_row(report):
    assert len(report.artifacts) == 1, [r.path for r in report.artifacts]
    return report.artifacts[0]


class Listener:
    """A TCP listener on every interface of this machine, counting the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def count(self, expect: int, timeout: float = 2.0) -> int:
        """Connections accepted, once ``expect`` have been or ``timeout`` has passed: a connection completes in the
        kernel's backlog before this listener's thread accepts it, so a count read at once can miss the last one."""
        deadline = time.monotonic() + timeout
        while self.accepted < expect and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.accepted

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


# ------------------------------------------------------------------------------------------ item 5


FORGER = """
import json, os, sys, time
fake = (json.dumps({"stage": "static", "safety": "safe", "findings": [], "flagged": []}) + "\\n"
        + json.dumps({"stage": "load", "load": {"status": "ok", "reason": "forged"}}) + "\\n"
        + json.dumps({"stage": "check", "check": {"status": "pass", "reason": "forged"}}) + "\\n").encode()
while True:
    for fd in range(3, 64):
        try:
            os.write(fd, fake)
        except OSError:
            pass
    time.sleep(0.05)
"""


def patcher_source(marker: str) -> str:
    """Patch everything a reused worker would run for the next files so that they read safe and pass, forge
    results on every descriptor from a thread and from a process in a session of its own, and poison
    sys.modules."""
    return f"""
        import os, sys, threading, time, subprocess
        import convert
        import compat.audits.steps as steps

        def safe_facts(artifact):
            return {{"format": "pickle", "framework": None, "size": 1, "sha256": "0" * 64, "saved_with": {{}},
                    "safety": "safe", "findings": [], "flagged": []}}

        def all_pass(artifact, trust):
            yield "load", {{"status": "ok", "reason": "patched", "seconds": 0}}
            yield "convert", {{"status": "ok", "reason": "patched", "seconds": 0}}
            yield "check", {{"status": "pass", "reason": "patched", "seconds": 0}}

        steps.static_facts, steps.steps = safe_facts, all_pass
        real = convert.inspect
        def inspect(path, *args, **kwargs):
            artifact = real(path, *args, **kwargs)
            object.__setattr__(artifact, "safety", "safe")
            return artifact
        convert.inspect = inspect
        sys.modules["compat.audits.diagnose"] = None
        forger = {FORGER!r}
        threading.Thread(target=exec, args=(forger,), daemon=True).start()
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, [sys.executable, "-c", forger, {marker!r}])
        time.sleep(0.5)  # let the forgers write while the file is still being loaded
    """


def failing_model(path: Path) -> Path:
    """A safe, fitted LogisticRegression whose coefficient table has the wrong shape: it loads and converts,
    and its check errors."""
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 4))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    model.coef_ = np.ones((1, 2))
    path.write_bytes(pickle.dumps(model, 4))
    return path


def test_a_file_that_patches_its_worker_cannot_change_another_files_row(tmp_path):
    """Item 5. The first file (loaded with --trust) patches the inspect and step functions to report safe and
    pass, poisons sys.modules, and forges results from a thread and a setsid process. The files after it
    (one slot: they would have run in the same worker) keep their own verdicts, its own safety verdict stays
    unsafe (the static facts are taken before its code runs), the exit code is 1, and no forger outlives
    the audit. A process running the file's code can say what it likes about that file's own steps: that
    is why its verdict, not its steps, decides."""
    folder = tmp_path / "models"
    canary = tmp_path / "CANARY"
    with Watch() as watch:
        payload(folder / "a_patcher.pkl", patcher_source(watch.marker))
        (folder / "b_unsafe.pkl").write_bytes(pickle.dumps(Call(os.system, f"touch {canary}"), 4))
        failing_model(folder / "c_failing.pkl")
        shutil.copy(FIXTURES / "sklearn/diabetes_gbr.joblib", folder / "d_good.joblib")
        report = audit([folder], trust=True, jobs=1, timeout=60, memory=1 << 30)
    survivors = watch.kill_survivors()
    rows = {r.path: r for r in report.artifacts}
    assert rows["a_patcher.pkl"].safety == "unsafe"  # the forged "static" line was not believed
    assert rows["b_unsafe.pkl"].safety == "unsafe" and rows["b_unsafe.pkl"].flagged
    failing = rows["c_failing.pkl"]
    assert failing.safety == "safe" and (failing.load.status, failing.convert.status, failing.check.status) == (
        "ok", "ok", "error"), (failing.load, failing.convert, failing.check)
    good = rows["d_good.joblib"]
    assert (good.load.status, good.convert.status, good.check.status) == ("ok", "ok", "pass")
    assert "GradientBoostingRegressor" in good.load.reason
    others = json.dumps([r.to_dict() for r in report.artifacts if r.path != "a_patcher.pkl"])
    assert "patched" not in others and "forged" not in others  # (its own steps' outcomes are its own to forge)
    assert report.exit_code == 1
    assert report.workers["slots"] == 1 and report.workers["processes"] >= 4  # one slot, a process per file
    assert watch.seen, "the patcher's forging process never started: the test proves nothing"
    assert not survivors
    assert not canary.exists()  # the unsafe file ran (with --trust), but could not write outside its folder


# ----------------------------------------------------------------------------------------- item 11


def test_no_network_from_a_trusted_file(tmp_path):
    """(a) A file that connects to a listener on loopback and on this machine's outward address: no
    connection arrives, the row says the load failed, and the same bytes unconfined do connect."""
    listener = Listener()
    try:
        targets = [("127.0.0.1", listener.port)]
        outward = outward_address()
        if outward:
            targets.append((outward, listener.port))
        path = payload(tmp_path / "models/net.pkl", f"""
            import socket
            errors = []
            for host, port in {targets!r}:
                try:
                    socket.create_connection((host, port), timeout=3).close()
                    errors.append(host + " connected")
                except OSError as exc:
                    errors.append(host + ": " + (exc.strerror or type(exc).__name__))
            raise RuntimeError("NETPROBE " + "; ".join(errors))
        """)
        report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=512 << 20)
        row = only_row(report)
        assert listener.count(expect=1, timeout=1.0) == 0  # any connection that got through has been accepted
        assert row.safety == "unsafe" and row.load.status == "failed", row.load
        assert "NETPROBE" in row.load.reason and "connected" not in row.load.reason, row.load.reason
        assert report.exit_code == 1
        assert report.confinement["network"]["in_force"]
        control = live(path)
        assert "NETPROBE" in control.stderr, control.stderr[-2000:]
        assert all(f"{host} connected" in control.stderr for host, _ in targets), control.stderr[-2000:]
        assert listener.count(expect=len(targets)) == len(targets)  # the payload works: only confinement stopped it
    finally:
        listener.close()


def test_no_credentials_from_the_callers_environment(tmp_path, monkeypatch):
    """(b) The caller holds secrets in its environment. A file reads its own environment and every process's
    /proc/*/environ it can see, and tries to write what it finds next to the audit and into its row: the
    secret reaches neither, and the same bytes unconfined do find it."""
    secret = "canary-" + os.urandom(8).hex()
    for name in ("AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "HF_TOKEN", "SSH_AUTH_SOCK"):
        monkeypatch.setenv(name, secret)
    stolen = tmp_path / "stolen.txt"
    path = payload(tmp_path / "models/env.pkl", f"""
        import os
        found = [k for k, v in os.environ.items() if {secret!r} in v]
        for pid in os.listdir("/proc"):
            try:
                if {secret!r}.encode() in open("/proc/" + pid + "/environ", "rb").read():
                    found.append("pid " + pid)
            except OSError:
                pass
        if found:
            try:
                open({str(stolen)!r}, "w").write({secret!r})
            except OSError:
                pass
        raise RuntimeError("ENVPROBE " + repr(found) + " " + ("{secret}" if found else ""))
    """)
    report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=512 << 20)
    row = only_row(report)
    assert row.load.status == "failed" and "ENVPROBE []" in row.load.reason, row.load.reason
    assert secret not in report.to_json()
    assert not stolen.exists()
    assert report.exit_code == 1
    assert report.confinement["environment"]["in_force"]
    control = live(path, env=dict(os.environ))
    assert "AWS_SECRET_ACCESS_KEY" in control.stderr and secret in control.stderr, control.stderr[-2000:]
    assert stolen.read_text() == secret  # unconfined, the same bytes steal it


def test_a_forked_child_holding_memory_is_killed(tmp_path):
    """(c) A file forks a child that maps 1.5 GB of shared memory (not counted by RLIMIT_DATA) and sleeps;
    the file itself only sleeps. The memory of the whole tree is what counts: the row is out-of-memory,
    long before the timeout, and neither process outlives the audit."""
    with Watch() as watch:
        path = payload(tmp_path / "models/fork_hog.pkl", f"""
            import os, sys, time
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c",
                         "import mmap, time\\nm = mmap.mmap(-1, 1536 << 20)\\n"
                         "for i in range(0, len(m), 1 << 20): m[i:i + (1 << 20)] = bytes(1 << 20)[:-1] + b'x'\\n"
                         "time.sleep(1000)", {watch.marker!r}])
            time.sleep(1000)
        """)
        report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=384 << 20)
    survivors = watch.kill_survivors()
    row = only_row(report)
    assert (row.load.status, row.load.category) == ("out-of-memory", "out-of-memory"), row.load
    assert row.load.seconds < 60
    assert watch.seen and not survivors
    assert report.exit_code == 1


def test_a_setsid_grandchild_does_not_outlive_the_audit(tmp_path):
    """(d) A file double-forks a grandchild into a session of its own, which sleeps, and loads fine: the
    grandchild is gone when the audit returns."""
    with Watch() as watch:
        path = payload(tmp_path / "models/daemon.pkl", f"""
            import os, sys, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(1000)", {watch.marker!r}])
                os._exit(0)
            os.wait()
            time.sleep(0.5)
        """)
        report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=512 << 20)
        during = set(watch.seen)
    survivors = watch.kill_survivors()
    row = only_row(report)
    assert row.load.status == "ok", row.load
    assert during, "the grandchild never started: the test proves nothing"
    assert not survivors
    assert report.exit_code == 1


def test_a_file_cannot_write_past_the_size_cap_or_outside_its_folder(tmp_path):
    """(e) A file writes as much as it can into its own temporary folder, and a file next to the audit: the
    first stops at the cap (RLIMIT_FSIZE), the second is never created (Landlock)."""
    outside = tmp_path / "outside.bin"
    cap = 96 << 20
    path = payload(tmp_path / "models/filler.pkl", f"""
        import os
        notes = []
        try:
            open({str(outside)!r}, "wb").write(b"x")
            notes.append("outside written")
        except OSError as exc:
            notes.append("outside: " + exc.strerror)
        target = os.path.join(os.environ["TMPDIR"], "big.bin")
        chunk = b"x" * (1 << 20)
        with open(target, "wb", buffering=0) as fh:
            try:
                for _ in range({3 * cap >> 20}):
                    fh.write(chunk)
                notes.append("wrote everything")
            except OSError as exc:
                notes.append("stopped at " + str(os.path.getsize(target)) + ": " + exc.strerror)
        raise RuntimeError("FILEPROBE " + "; ".join(notes))
    """)
    report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=cap)
    row = only_row(report)
    assert row.load.status == "failed", row.load
    assert f"stopped at {cap}: File too large" in row.load.reason, row.load.reason
    assert "outside written" not in row.load.reason and not outside.exists()
    assert report.exit_code == 1
    assert report.confinement["file-size"]["in_force"] and report.confinement["filesystem"]["in_force"]


def test_a_process_flood_stops_at_the_cap(tmp_path):
    """(f) A file starts processes until the system refuses: it gets no more than the per-file cap, and none
    of them outlives the audit."""
    wanted = process_limit() + 100
    with Watch() as watch:
        path = payload(tmp_path / "models/flood.pkl", f"""
            import os
            started, why = 0, "no refusal"
            for _ in range({wanted}):
                try:
                    pid = os.fork()
                except OSError as exc:
                    why = exc.strerror
                    break
                if pid == 0:
                    try:
                        os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 1000; :", {watch.marker!r}])
                    finally:
                        os._exit(0)
                started += 1
            raise RuntimeError("FLOODPROBE started " + str(started) + ": " + why)
        """)
        report = audit([path.parent], trust=True, jobs=1, timeout=120, memory=1 << 30)
    survivors = watch.kill_survivors()
    row = only_row(report)
    assert row.load.status == "failed" and "FLOODPROBE" in row.load.reason, row.load
    started = int(row.load.reason.split("FLOODPROBE started ")[1].split(":")[0])
    assert 10 < started < process_limit(), row.load.reason
    assert watch.seen and not survivors
    assert report.exit_code == 1


# ------------------------------------------------------------------------------------ the report


def test_every_report_names_the_layers_in_force(tmp_path):
    """The closing note: every layer is listed, with what put it in force or why it is missing; where this
    machine allows a network namespace (checked here with unshare(1)), the network layer is in force."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    report = audit([tmp_path / "m"], jobs=1)  # loaded: its process is confined (a static audit runs no file)
    assert list(report.confinement) == list(LAYERS)
    for layer, c in report.confinement.items():
        assert c["in_force"] == bool(c["by"]), (layer, c)
        assert c["by"] or c["missing"], layer
    assert report.confinement["fresh-process"]["in_force"] and report.confinement["environment"]["in_force"]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        assert any("network namespace" in how for how in report.confinement["network"]["by"])
    data = json.loads(report.to_json())
    assert data["confinement"] == report.confinement


# ----------------------------------------------------------------------------------------- item 12


def test_a_lost_files_folder_is_removed_before_the_next_file_starts(tmp_path, monkeypatch):
    """A file that fills its temporary folder and hangs is killed at the timeout; the next file in the same
    slot finds no trace of it, and nothing of the audit is left in the temporary directory afterwards."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    folder = tmp_path / "models"
    payload(folder / "a_hang.pkl", """
        import os, time
        open(os.path.join(os.environ["TMPDIR"], "left-behind"), "w").write("x" * 1000)
        time.sleep(1000)
    """)
    payload(folder / "b_look.pkl", """
        import os
        mine = os.environ["TMPDIR"]
        others = sorted(set(os.listdir(os.path.dirname(mine))) - {os.path.basename(mine)})
        raise RuntimeError("LOOKPROBE " + repr(others) + " mine: " + repr(os.listdir(mine)))
    """)
    report = audit([folder], trust=True, jobs=1, timeout=4, memory=512 << 20)
    rows = {r.path: r for r in report.artifacts}
    assert rows["a_hang.pkl"].load.status == "timeout"
    assert "LOOKPROBE [] mine: []" in rows["b_look.pkl"].load.reason, rows["b_look.pkl"].load.reason
    assert list(tmp.iterdir()) == []


def test_folders_left_by_a_dead_audit_are_swept(tmp_path, monkeypatch):
    """A temporary folder of an audit whose process is gone (its reaper killed too) is removed by the next
    audit; one whose owner still runs is left alone."""
    import tempfile

    from compat.audits.sandbox.proctree import PREFIX

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp / f"{PREFIX}{gone.pid}-abc"
    (stale / "slot-1").mkdir(parents=True)
    (stale / "slot-1/junk").write_text("x")
    running = tmp / f"{PREFIX}{os.getpid()}-xyz"
    running.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    audit([tmp_path / "m"], jobs=1)
    assert not stale.exists() and running.exists()


# ------------------------------------------------------------------------- where layers are refused

# Runs ``modelport`` as on a machine that allows less: no namespaces (unshare refused, as a container's
# seccomp profile does), no Landlock (an older kernel), no writable cgroups (hidden under an empty tmpfs in
# a mount namespace of the test's own, entered before the refusals).
LESS = """
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
assert libc.unshare(0x00020000) == 0
assert libc.mount(None, b"/", None, (1 << 14) | (1 << 18), None) == 0
assert libc.mount(b"none", b"/sys/fs/cgroup", b"tmpfs", 0, None) == 0
import pyseccomp as sc
f = sc.SyscallFilter(sc.ALLOW)
f.add_rule(sc.ERRNO(errno.EPERM), "unshare")
f.add_rule(sc.ERRNO(errno.ENOSYS), "landlock_create_ruleset")
f.load()
from compat.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="building the lesser machine needs a mount namespace (root)")
def test_where_the_kernel_refuses_layers_the_rest_still_hold_and_the_report_says_which(tmp_path):
    """Without namespaces, Landlock or cgroups: the network is still cut (seccomp), a forked memory hog is
    still found and killed (the slot's descendants in /proc), a setsid grandchild still dies (the slot is
    a subreaper), the processes of the audit and of the other files are in sight but out of reach, and
    the report names what was not in force."""
    listener = Listener()
    folder = tmp_path / "models"
    try:
        with Watch() as watch:
            payload(folder / "a_net.pkl", f"""
                import socket
                try:
                    socket.create_connection(("127.0.0.1", {listener.port}), timeout=3).close()
                    raise RuntimeError("NETPROBE connected")
                except OSError as exc:
                    raise RuntimeError("NETPROBE " + (exc.strerror or type(exc).__name__))
            """)
            payload(folder / "b_hog.pkl", f"""
                import os, sys, time
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c",
                             "import mmap, time\\nm = mmap.mmap(-1, 1536 << 20)\\n"
                             "for i in range(0, len(m), 1 << 20): m[i:i + (1 << 20)] = bytes(1 << 20)[:-1] + b'x'\\n"
                             "time.sleep(1000)", {watch.marker!r}])
                time.sleep(1000)
            """)
            payload(folder / "c_daemon.pkl", f"""
                import os, sys
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(1000)",
                                                  {watch.marker!r}])
                    os._exit(0)
                os.wait()
            """)
            # another file's process, running while the others do: named, so that the peeker can say it saw it
            payload(folder / "0_victim.pkl", """
                import ctypes, time
                ctypes.CDLL(None).prctl(15, b"mpvictim", 0, 0, 0)
                time.sleep(8)
            """)
            payload(folder / "d_peek.pkl", """
                import os, time
                opened, victim = set(), False
                deadline = time.time() + 5
                while time.time() < deadline:
                    for pid in os.listdir("/proc"):
                        if not pid.isdigit() or int(pid) == os.getpid():
                            continue
                        try:
                            if not open("/proc/" + pid + "/cmdline", "rb").read():
                                continue  # a kernel thread
                            victim |= open("/proc/" + pid + "/comm").read().strip() == "mpvictim"
                        except OSError:
                            continue
                        for what, mode in (("mem", os.O_RDWR), ("environ", os.O_RDONLY)):
                            try:
                                os.close(os.open("/proc/" + pid + "/" + what, mode))
                                opened.add(pid + "/" + what)
                            except OSError:
                                pass
                    time.sleep(0.2)
                raise RuntimeError("PEEKPROBE " + repr(sorted(opened)) + " victim seen: " + str(victim))
            """)
            out = tmp_path / "audit.json"
            run = subprocess.run([sys.executable, "-c", LESS, "audit", str(folder), "--trust", "--jobs", "2",
                                  "--timeout", "60", "--memory", "384", "--json", str(out)], capture_output=True,
                                 text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200"))
        survivors = watch.kill_survivors()
        assert run.returncode == 1, run.stdout + run.stderr
        data = json.loads(out.read_text())
        rows = {a["path"]: a for a in data["artifacts"]}
        assert listener.count(expect=1, timeout=1.0) == 0  # any connection that got through has been accepted
        net = rows["a_net.pkl"]["load"]
        assert net["status"] == "failed" and "NETPROBE" in net["reason"] and "connected" not in net["reason"], net
        assert rows["b_hog.pkl"]["load"]["status"] == "out-of-memory", rows["b_hog.pkl"]["load"]
        assert rows["c_daemon.pkl"]["load"]["status"] == "ok", rows["c_daemon.pkl"]["load"]
        assert watch.seen and not survivors
        # every other process is in sight, yet none can be written to or read from: the slots and the other
        # files' processes are undumpable, and the audit's own process holds capabilities the files lack
        assert "PEEKPROBE [] victim seen: True" in rows["d_peek.pkl"]["load"]["reason"], rows["d_peek.pkl"]["load"]
        assert rows["0_victim.pkl"]["load"]["status"] == "ok"
        layers = data["confinement"]
        assert layers["network"]["in_force"] and layers["network"]["by"] == ["seccomp: AF_UNIX sockets only"]
        assert any(m.startswith("network namespace") for m in layers["network"]["missing"])
        assert [m.split(" (")[0] for m in layers["process-tree"]["by"]] == ["subreaper"]
        assert not layers["filesystem"]["in_force"] and not layers["hidden-processes"]["in_force"]
        text = " ".join(run.stdout.split())
        assert "not in force: " in text and "filesystem (landlock: not in this kernel" in text, text
    finally:
        listener.close()


def test_a_file_cannot_lift_its_limits_or_leave_its_confinement(tmp_path):
    """The limits are hard and the namespaces final: a file that tries to raise its rlimits, make new
    namespaces or ptrace the process that forked it is refused each time."""
    cap = 200 << 20
    path = payload(tmp_path / "models/lift.pkl", """
        import ctypes, os, resource
        notes = []
        for name in ("RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CORE"):
            which = getattr(resource, name)
            hard = resource.getrlimit(which)[1]
            try:
                resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                notes.append(name + " lifted")
            except (ValueError, OSError):
                notes.append(name + " held at " + str(hard))
        libc = ctypes.CDLL(None, use_errno=True)
        for flag, name in ((0x40000000, "network"), (0x10000000, "user"), (0x20000000, "pid")):
            notes.append(name + (" namespace made" if libc.unshare(flag) == 0 else " namespace refused"))
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        notes.append("ptrace " + ("attached" if libc.ptrace(16, os.getppid(), None, None) == 0 else "refused"))
        raise RuntimeError("LIFTPROBE " + "; ".join(notes))
    """)
    report = audit([path.parent], trust=True, jobs=1, timeout=60, memory=cap)
    reason = only_row(report).load.reason
    assert "LIFTPROBE" in reason, reason
    assert "lifted" not in reason and "made" not in reason and "attached" not in reason, reason
    assert f"RLIMIT_FSIZE held at {cap}" in reason and "RLIMIT_CORE held at 0" in reason, reason
    assert report.exit_code == 1


# ----------------------------------------------------------------------------------------- item 13


def test_a_failed_allocation_is_out_of_memory_not_corrupt(tmp_path):
    """A safe pickle that decompresses to 1.5 GB (7 MB on disk) under a 256 MB cap: the allocation is
    refused at the cap and the row says out-of-memory. A file's process that dies of a failed native
    allocation (C++ prints bad_alloc, then aborts) is out-of-memory too, not a crash or a corrupt file."""
    import gzip

    folder = tmp_path / "models"
    folder.mkdir()
    size = 1536 << 20
    with gzip.open(folder / "inflates.pkl.gz", "wb", compresslevel=1) as fh:
        fh.write(b"\x80\x04\x8e" + size.to_bytes(8, "little"))  # BINBYTES8 of 1.5 GB, then STOP
        chunk = bytes(1 << 24)
        for _ in range(size >> 24):
            fh.write(chunk)
        fh.write(b".")
    payload(folder / "bad_alloc.pkl", """
        import os
        os.write(2, b"terminate called after throwing an instance of 'std::bad_alloc'\\n  what():  std::bad_alloc\\n")
        os.abort()
    """)
    report = audit([folder], trust=True, jobs=1, timeout=60, memory=256 << 20)
    rows = {r.path: r for r in report.artifacts}
    inflates = rows["inflates.pkl.gz"]
    assert inflates.safety == "safe"
    assert (inflates.load.status, inflates.load.category) == ("out-of-memory", "out-of-memory"), inflates.load
    aborted = rows["bad_alloc.pkl"]
    assert (aborted.load.status, aborted.load.category) == ("out-of-memory", "out-of-memory"), aborted.load
    assert "bad_alloc" in aborted.load.reason
    assert report.exit_code == 1  # the unsafe payload
