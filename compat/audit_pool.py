"""The audit's supervisor: persistent worker processes, each with a timeout and a memory cap per task.

Workers (``python -m compat.audit_worker``) stay alive between artifacts, so a framework imported for one
file (scikit-learn, torch, TensorFlow: seconds each) serves the next. A worker that overruns its task's
deadline, grows past the memory cap, or dies (a segfault in native code, an abort) is killed with its
whole process group and replaced; the task it held gets an outcome that says so, and the audit goes on.

Memory is capped two ways: the supervisor polls each busy worker's resident set in /proc (10 times a
second) and kills it above the cap; and the worker sets RLIMIT_DATA on itself to what it holds plus the cap
before each artifact (a huge allocation fails at once with MemoryError instead of racing the poll; relative,
because frameworks reserve private ranges they never touch). A worker that dies of an allocation failure
in native code (OpenBLAS exits, C++ aborts on bad_alloc) is reported out-of-memory, not crashed.

Protocol: one JSON object per line. The supervisor writes a task; the worker answers with one message per
stage (``static``, ``load``, ``convert``, ``check``) and a final ``done``, so a crash mid-task is pinned
on the step that was running. ``clock`` messages bracket a framework import: the task's deadline stops
meanwhile (the import gets its own, of at least IMPORT_TIMEOUT), and the import is not counted in the
task's ``seconds``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

POLL = 0.1  # seconds between deadline and memory checks
IMPORT_TIMEOUT = 600.0  # seconds a framework import may take (TensorFlow on a cold disk), whatever the timeout
RECYCLE_AT = 0.7  # a worker whose resident set stays above this share of the cap after a task is replaced
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ORDER = ("static", "load", "convert", "check")


class _Worker:
    def __init__(self, number: int, memory: int, workdir: Path, threads: int):
        self.number = number
        self.log_path = workdir / f"worker-{number}.log"
        self.log = open(self.log_path, "w+b")  # noqa: SIM115 -- lives as long as the process
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env.update(PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(workdir), TF_CPP_MIN_LOG_LEVEL="3",
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compat.audit_worker", str(memory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, cwd=workdir, env=env, start_new_session=True)
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.task: dict | None = None
        self.result: dict = {}
        self.started = 0.0
        self.deadline = 0.0
        self.peak = 0
        self.paused: tuple[float, float, str] | None = None  # (time left, paused at, what is imported)
        self.importing = 0.0  # seconds of this task spent importing frameworks

    def start(self, task: dict, timeout: float) -> None:
        self.task, self.result, self.peak = task, {}, 0
        self.paused, self.importing = None, 0.0
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.log_mark = self.log.tell() if not self.log.closed else 0
        self.proc.stdin.write(json.dumps(task).encode() + b"\n")
        self.proc.stdin.flush()

    def messages(self) -> tuple[list[dict], bool]:
        """Complete messages available now, and whether the worker's end of the pipe closed."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return [], False
        if not data:
            return [], True
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()], False

    def clock(self, message: dict) -> None:
        """Stop the task's deadline while the worker imports a framework; restart it after."""
        now = time.monotonic()
        if message.get("paused"):
            if self.paused is None:
                self.paused = (self.deadline - now, now, str(message.get("importing", "")))
                self.deadline = now + max(IMPORT_TIMEOUT, self.timeout)
        elif self.paused is not None:
            left, since, _ = self.paused
            self.importing += now - since
            self.deadline = now + left
            self.paused = None

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0

    def kill(self) -> int | None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
        self.log.close()

    def crash_note(self) -> str:
        """The last meaningful line the worker wrote to stderr (a fatal error, a traceback's last line)."""
        try:
            self.log.flush()
            with open(self.log_path, "rb") as fh:
                fh.seek(max(self.log_mark, os.path.getsize(self.log_path) - 8192))
                lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        fatal = [ln for ln in lines if ln.startswith(("Fatal Python error", "terminate called", "Killed"))]
        memory = [ln for ln in lines if _OUT_OF_MEMORY.search(ln)]
        errors = [ln for ln in lines if _ERROR_LINE.match(ln)]  # an uncaught exception's last line
        return (memory or fatal or errors[-1:] or [""])[0][:200]


class Pool:
    """``with Pool(jobs, timeout, memory) as pool: for task, result in pool.run(tasks): ...``"""

    def __init__(self, jobs: int, timeout: float, memory: int):
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.memory = memory
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self.workdir = Path(tempfile.mkdtemp(prefix="modelport-audit-"))
        self.workers: list[_Worker] = []
        self.started = 0  # workers spawned, replacements included
        self.lost = 0  # workers killed or dead mid-task (crash, timeout, memory)
        self.recycled = 0  # workers retired after a task on purpose (ran untrusted code, near the memory cap)
        self.sel = selectors.DefaultSelector()

    def stats(self) -> dict:
        return {"started": self.started, "lost": self.lost, "recycled": self.recycled}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for w in self.workers:
            self._retire(w, graceful=True)
        self.sel.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self) -> _Worker:
        self.started += 1
        w = _Worker(self.started, self.memory, self.workdir, self.threads)
        self.workers.append(w)
        self.sel.register(w.fd, selectors.EVENT_READ, w)
        return w

    def _retire(self, w: _Worker, graceful: bool = False) -> None:
        try:
            self.sel.unregister(w.fd)
        except (KeyError, ValueError):
            pass
        if w in self.workers:
            self.workers.remove(w)
        if graceful:
            w.stop()
        else:
            w.kill()
            w.log.close()

    def run(self, tasks):
        """Yield (task, result) as tasks finish, in completion order. ``result`` merges the worker's stage
        messages, plus ``seconds`` and ``peak_rss_mb``; a lost worker's task is completed here."""
        pending = deque(tasks)
        while pending or any(w.task is not None for w in self.workers):
            while pending and (len(self.workers) < self.jobs or any(w.task is None for w in self.workers)):
                idle = next((w for w in self.workers if w.task is None), None) or self._spawn()
                try:
                    idle.start(pending[0], self.timeout)
                except (BrokenPipeError, OSError):  # died while idle: replace it, keep the task
                    self._retire(idle)
                    continue
                pending.popleft()
            for key, _ in self.sel.select(timeout=POLL):
                w = key.data
                messages, closed = w.messages()
                for m in messages:
                    stage = m.pop("stage")
                    if stage == "clock":
                        w.clock(m)
                        continue
                    if stage == "done":
                        yield w.task, self._finish(w, None)
                        if m.get("recycle") or w.rss() > self.memory * RECYCLE_AT:
                            self.recycled += 1
                            self._retire(w, graceful=True)
                        break
                    w.result.update(m)
                    w.result.setdefault("_stages", []).append(stage)
                if closed and w in self.workers:
                    code = w.kill()
                    if w.task is not None:
                        self.lost += 1
                        yield w.task, self._finish(w, _death(code, w.crash_note()))
                    self._retire(w)
            now = time.monotonic()
            for w in [w for w in self.workers if w.task is not None]:
                rss = w.rss()
                w.peak = max(w.peak, rss)
                if rss > self.memory:
                    w.kill()
                    self.lost += 1
                    yield w.task, self._finish(w, ("out-of-memory", "out-of-memory",
                                                   f"resident memory {rss >> 20} MB passed the cap of "
                                                   f"{self.memory >> 20} MB; the worker was killed"))
                    self._retire(w)
                elif now > w.deadline:
                    w.kill()
                    self.lost += 1
                    if w.paused is not None:
                        why = (f"importing {w.paused[2] or 'a framework'} took more than "
                               f"{max(IMPORT_TIMEOUT, self.timeout):g} s; the worker was killed")
                    else:
                        why = f"still running after {self.timeout:g} s; the worker was killed"
                    yield w.task, self._finish(w, ("timeout", "timeout", why))
                    self._retire(w)

    def _finish(self, w: _Worker, lost: tuple[str, str, str] | None) -> dict:
        """The task's result; when the worker was lost (``(status, category, reason)``), the step that was
        running gets that outcome and the later ones are marked not reached."""
        result = dict(w.result)
        stages = result.pop("_stages", [])
        w.clock({"paused": False})  # an import cut short still counts as import time
        result["seconds"] = max(0.0, time.monotonic() - w.started - w.importing)
        if w.importing:
            result["import_seconds"] = w.importing
        result["peak_rss_mb"] = w.peak / (1 << 20)
        if lost is not None:
            status, category, reason = lost
            running = next((s for s in _ORDER if s not in stages), None)
            if running == "static":
                result.update(_lost_static(reason))
            if running is not None and not w.task.get("static"):
                for step in _ORDER[max(1, _ORDER.index(running)):]:
                    if step == running:
                        result[step] = {"status": status, "reason": f"{reason} (during {step})", "category": category,
                                        "seconds": result["seconds"]}
                    else:
                        result[step] = {"status": "skipped", "reason": f"not reached: the worker was lost during "
                                        f"{'the static pass' if running == 'static' else running}"}
        w.task = None
        w.result = {}
        return result


# what native code prints when an allocation fails before it gives up (OpenBLAS, C++, glibc, Python)
_OUT_OF_MEMORY = re.compile(r"[Mm]emory allocation .*failed|std::bad_alloc|Cannot allocate memory|^MemoryError\b|"
                            r"[Oo]ut of memory")
_ERROR_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


def _death(code: int | None, note: str) -> tuple[str, str, str]:
    """(status, category, reason) for a worker that exited mid-task."""
    if note and _OUT_OF_MEMORY.search(note):
        return "out-of-memory", "out-of-memory", f"the worker died of a failed allocation: {note}"
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return "out-of-memory", "out-of-memory", "the worker was killed (SIGKILL: the kernel's out-of-memory killer?)"
        return "crashed", "crash", f"the worker crashed ({name})" + (f": {note}" if note else "")
    return "crashed", "crash", f"the worker exited (code {code})" + (f": {note}" if note else "")


def _lost_static(reason: str) -> dict:
    """Static facts for a file whose static pass killed the worker: fail closed (``unknown``)."""
    return {"format": None, "framework": None, "safety": "unknown", "saved_with": {},
            "findings": [{"what": f"static scan did not finish: {reason}", "severity": "unknown",
                          "where": "static pass"}], "flagged": []}
