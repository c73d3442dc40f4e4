"""The audit's supervisor: a fresh confined process per file, with a timeout and a memory cap on the
whole tree of processes it starts.

``jobs`` worker slots (``compat.audits.sandbox.worker``, see there) confine themselves and fork one
child per file; the slot keeps the frameworks it imported, the child is thrown away with everything the
file's code did to it. Before a child reads its file the supervisor puts it into a cgroup of its own
(``proctree``: memory limit, pids limit, accounting and one-write kill for every process it starts,
``setsid`` or not), or, where cgroups cannot be written, watches the slot's descendants in /proc. A child
that overruns its deadline, whose processes together pass the memory cap, or that dies (a segfault, an
abort, the kernel's out-of-memory killer) costs its file one row: the slot kills every process left and
the next file gets a new child. A slot that dies is replaced.

Protocol: the child writes one JSON line per stage (``confined`` first, with the confinement it put in
force, then ``static``, ``load``, ``convert``, ``check``, ``done``) to a pipe the supervisor reads. What it
sends is believed only as far as the file could not have forged it: the static facts are taken from the
first ``static`` line (written before anything is loaded), each step once and in order. ``clock`` messages
bracket a framework import in the child: the deadline stops meanwhile and the import is not counted in
the task's ``seconds``; a ``warm`` request (before loading) has the slot import the framework and the file
start again in a child that has it.

If the supervisor itself is killed, every slot dies with it (a parent-death signal; the slot is the init
of its pid namespace, so what the files started dies too) and a reaper started in a session of its own
removes the audit's cgroups and temporary folder (``proctree.start_reaper``).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from . import proctree
from .confine import Mechanism, process_limit, summarize

POLL = 0.1  # seconds between deadline and memory checks
IMPORT_TIMEOUT = 600.0  # seconds a framework import may take (TensorFlow on a cold disk), whatever the timeout
SLOT_TIMEOUT = 120.0  # seconds a slot may take to start, fork or reap before it is replaced
MAX_PROTOCOL = 16 << 20  # bytes of result messages one file's process may send
_ORDER = ("static", "load", "convert", "check")
_STARTS = 3  # a slot that dies this many times in a row before it is ready: the audit cannot run here
_END = object()


class _Run:
    """One file in one child process: what it reported, its clock, its process tree."""

    def __init__(self, task: dict, number: int, timeout: float):
        self.task = task
        self.number = number
        self.timeout = timeout
        self.result: dict = {}
        self.stages: list[str] = []
        self.mechanisms: list = []
        self.buf = b""
        self.received = 0
        self.data_fd = -1
        self.go_fd = -1
        self.pid = 0  # the child, as the supervisor sees it
        self.group = None  # proctree.ArtifactGroup, where cgroups are available
        self.tmp: Path | None = None
        self.started = 0.0
        self.deadline = float("inf")
        self.paused: tuple[float, float, str] | None = None  # (time left, paused at, what is imported)
        self.importing = 0.0
        self.peak = 0
        self.done = False
        self.restart: str | None = None  # a framework the slot should import before the file starts again
        self.lost: tuple[str, str, str] | None = None  # (status, category, reason) when it was cut short
        self.lost_step: str | None = None
        self.log_mark = 0

    def start(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout

    def clock(self, message: dict) -> None:
        """Stop the deadline while the child imports a framework; restart it after."""
        now = time.monotonic()
        if message.get("paused"):
            if self.paused is None:
                self.paused = (self.deadline - now, now, str(message.get("importing", ""))[:200])
                self.deadline = now + max(IMPORT_TIMEOUT, self.timeout)
        elif self.paused is not None:
            left, since, _ = self.paused
            self.importing += now - since
            self.deadline = now + left
            self.paused = None

    def take(self, message) -> None:
        """One message from the child, believed only where the file could not have forged it: the static facts
        from the first ``static`` line (sent before the file's code can run), each step once, in order."""
        if not isinstance(message, dict):
            return
        stage = message.get("stage")
        if stage == "confined" and not self.stages and not self.mechanisms:
            self.mechanisms = [m for m in message.get("mechanisms", []) if isinstance(m, dict)]
        elif stage == "clock":
            self.clock(message)
        elif stage == "static" and not self.stages:
            self.result.update({k: v for k, v in message.items() if k != "stage"})
            self.stages.append("static")
        elif stage == "warm" and self.stages == ["static"] and isinstance(message.get("framework"), str):
            if message["framework"] not in self.task.get("warmed", ()):
                self.restart = message["framework"][:40]
        elif stage in _ORDER[1:] and len(self.stages) < len(_ORDER) and stage == _ORDER[len(self.stages)]:
            outcome = message.get(stage)
            if isinstance(outcome, dict) and isinstance(outcome.get("status"), str):
                self.result[stage] = outcome
                self.stages.append(stage)
        elif stage == "done" and self.stages:
            self.done = True

    def running(self) -> str | None:
        return next((s for s in _ORDER if s not in self.stages), None)

    def finish(self) -> dict:
        """The task's result; when the child was lost (``self.lost``), the step that was running gets that
        outcome and the later ones are marked not reached."""
        result = dict(self.result)
        self.clock({"paused": False})  # an import cut short still counts as import time
        end = time.monotonic()
        result["seconds"] = max(0.0, end - self.started - self.importing) if self.started else 0.0
        if self.importing:
            result["import_seconds"] = self.importing
        result["peak_rss_mb"] = self.peak / (1 << 20)
        if self.lost is None:
            return result
        status, category, reason = self.lost
        result["lost"] = status  # a lost process: the result cache keeps it only for what the limits decide
        running = self.lost_step or self.running()
        if running == "static":
            result.update(_lost_static(reason))
        if running is not None and not self.task.get("static"):
            for step in _ORDER[max(1, _ORDER.index(running)):]:
                if step == running:
                    result[step] = {"status": status, "reason": f"{reason} (during {step})", "category": category,
                                    "seconds": result["seconds"]}
                else:
                    result[step] = {"status": "skipped", "reason": f"not reached: the file's process was lost "
                                    f"during {'the static pass' if running == 'static' else running}"}
        return result


class _Slot:
    """A worker slot process and its control socket."""

    def __init__(self, number: int, pool: "Pool"):
        self.number = number
        self.home = pool.workdir / f"slot-{number}"
        self.home.mkdir()
        self.log_path = pool.workdir / f"slot-{number}.log"
        self.log = open(self.log_path, "w+b")  # noqa: SIM115 -- lives as long as the slot
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl = ours
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", proctree.launcher("compat.audits.sandbox.worker", "main"), str(os.getpid()),
                 str(theirs.fileno()), pool.program],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, pass_fds=(theirs.fileno(),),
                cwd=self.home, env=pool.environment(self.home), start_new_session=True)
        finally:
            theirs.close()
        self.ctl.setblocking(False)
        self.init = 0  # the process that forks the children (the slot, or its pid namespace's init)
        self.state = "starting"  # -> idle -> forking -> running -> reaping -> idle (or warming -> idle)
        self.since = time.monotonic()
        self.warmed: set[str] = set()
        self.run: _Run | None = None
        self.next: dict | None = None  # a task to start on this slot as soon as it is idle (after a warm)
        self.mechanisms: list = []

    def send(self, message: dict, fds=()) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.ctl, [data], list(fds))
        else:
            self.ctl.send(data)
        self.since = time.monotonic()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.init:
            proctree.kill_descendants(self.init)
            try:
                os.kill(self.init, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """Close the control socket (the slot reaps and exits), then make sure."""
        try:
            self.ctl.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        self.log.close()

    def child_pid(self) -> int:
        """The child the slot just forked, as this process sees it (the slot forks nothing else)."""
        for _ in range(200):
            kids = proctree.descendants(self.init) if self.init else []
            if kids:
                return kids[0]
            time.sleep(0.005)
        return 0

    def crash_note(self, mark: int) -> str:
        """The last meaningful line the slot's log got since ``mark`` (a fatal error, a traceback's last line)."""
        try:
            self.log.flush()
            with open(self.log_path, "rb") as fh:
                fh.seek(max(mark, os.path.getsize(self.log_path) - 8192))
                lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        fatal = [ln for ln in lines if ln.startswith(("Fatal Python error", "terminate called", "Killed"))]
        memory = [ln for ln in lines if _OUT_OF_MEMORY.search(ln)]
        errors = [ln for ln in lines if _ERROR_LINE.match(ln)]  # an uncaught exception's last line
        return (memory or fatal or errors[-1:] or [""])[0][:200]

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0


class Pool:
    """``with Pool(jobs, timeout, memory) as pool: for task, result in pool.run(tasks): ...``;
    ``pool.confinement()`` says which layers were in force."""

    def __init__(self, jobs: int, timeout: float, memory: int, program: str = "compat.audits.steps"):
        self.program = program  # the module each slot runs (``worker.PROGRAM``), named, not imported, here
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.memory = memory
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        proctree.sweep(Path(tempfile.gettempdir()))  # what audits killed with their reaper left behind
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{proctree.PREFIX}{os.getpid()}-"))
        self.cgroups = proctree.Cgroups(self.workdir.name)
        try:
            self.reaper, self._reaper_pipe = proctree.start_reaper(self.workdir, self.cgroups.paths())
        except OSError:
            self.reaper, self._reaper_pipe = None, -1
        self.slots: list[_Slot] = []
        self.sel = selectors.DefaultSelector()
        self.forks = 0  # children forked: one per file (and one more for a file whose slot had to warm up)
        self.lost = 0  # children killed or dead mid-task (crash, timeout, memory)
        self.spawned = 0  # slots started, replacements included
        self.failed_starts = 0
        self.mechanisms: set[Mechanism] = set(self._own_mechanisms())

    # ----------------------------------------------------------------------------------- public face

    def stats(self) -> dict:
        return {"processes": self.forks, "lost": self.lost, "slots": self.spawned}

    def confinement(self) -> dict:
        return summarize(self.mechanisms)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for slot in list(self.slots):
            if slot.run is not None:
                self._cleanup(slot.run)
            self._drop(slot, graceful=True)
        self.sel.close()
        self.cgroups.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.reaper is not None:
            os.close(self._reaper_pipe)
            try:
                self.reaper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def environment(self, home: Path) -> dict:
        """What a slot (and every child) sees: nothing of the caller's but the locale, PATH and PYTHONPATH."""
        keep = {k: v for k, v in os.environ.items()
                if k in ("PATH", "LANG", "LANGUAGE", "TZ", "KERAS_BACKEND") or k.startswith("LC_")}
        import compat  # the folder holding the compat and convert packages

        root = str(Path(compat.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        n = str(self.threads)
        keep.setdefault("PATH", os.defpath)
        keep.update(HOME=str(home), TMPDIR=str(home), PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1",
                    PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=n,
                    MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, **{proctree.MARKER: str(self.workdir)})
        return keep

    def run(self, tasks, wake: int | None = None):
        """Yield (task, result) as tasks finish, in completion order. ``result`` merges the child's stage
        messages, plus ``seconds`` and ``peak_rss_mb``; a lost child's task is completed here.

        ``tasks`` is read as slots come free, so it may be a feed: an item ``None`` means "nothing ready yet,
        ask again", and ``wake`` (a file descriptor the feeder writes a byte to) ends the wait at once."""
        pending: deque = deque()
        source = iter(tasks)
        more = True
        if wake is not None:
            self.sel.register(wake, selectors.EVENT_READ, (None, "wake"))
        try:
            while True:
                busy = sum(s.run is not None or s.next is not None or s.state == "warming" for s in self.slots)
                while more and len(pending) < self.jobs - busy:
                    task = next(source, _END)
                    if task is _END:
                        more = False
                    elif task is None:
                        break
                    else:
                        pending.append(task)
                if not (more or pending or any(s.run is not None or s.next is not None for s in self.slots)):
                    return
                while len(self.slots) < min(self.jobs, busy + len(pending)):
                    self._spawn()
                for slot in self.slots:
                    if slot.state == "idle":
                        if slot.next is not None:
                            task, slot.next = slot.next, None
                            self._fork(slot, task, pending)
                        elif pending:
                            self._fork(slot, pending.popleft(), pending)
                for key, _ in self.sel.select(timeout=POLL):
                    slot, kind = key.data
                    if kind == "wake":
                        try:
                            os.read(wake, 1 << 12)
                        except BlockingIOError:
                            pass
                        continue
                    if slot not in self.slots:
                        continue
                    if kind == "ctl":
                        yield from self._control(slot, pending)
                    else:
                        self._data(slot)
                yield from self._watch(pending)
        finally:
            if wake is not None:
                self.sel.unregister(wake)

    # ------------------------------------------------------------------------------------- slots

    def _own_mechanisms(self):
        yield Mechanism("fresh-process", "a forked process per file", True,
                        "from a slot that never reads a file and is thrown away with all it started")
        yield Mechanism("environment", "minimal environment", True,
                        "PATH, LANG/LC_*, PYTHONPATH, thread counts; HOME and TMPDIR in a private folder")
        if self.cgroups:
            yield Mechanism("process-tree", "cgroup per file", True, f"{self.cgroups.describe()}: every process it "
                            "starts, setsid or not")
            yield Mechanism("memory", "cgroup memory limit", True, f"the kernel's, at {self.memory * 5 // 4 >> 20} MB")
            yield Mechanism("processes", "cgroup pids.max", True, f"{process_limit()} processes and threads")
        else:
            for layer in ("process-tree", "memory", "processes"):
                yield Mechanism(layer, "cgroup", False, self.cgroups.why)
        yield Mechanism("memory", "supervisor's watch", True,
                        f"{self.memory >> 20} MB over the file's whole process tree, {POLL:g} s apart")

    def _spawn(self) -> _Slot:
        self.spawned += 1
        slot = _Slot(self.spawned, self)
        self.slots.append(slot)
        self.sel.register(slot.ctl, selectors.EVENT_READ, (slot, "ctl"))
        return slot

    def _drop(self, slot: _Slot, graceful: bool = False) -> None:
        try:
            self.sel.unregister(slot.ctl)
        except (KeyError, ValueError):
            pass
        if slot.run is not None and slot.run.data_fd >= 0:
            self._close_data(slot.run)
        if slot in self.slots:
            self.slots.remove(slot)
        if graceful:
            slot.stop()
        else:
            slot.kill()
            try:
                slot.ctl.close()
            except OSError:
                pass
            slot.log.close()

    def _control(self, slot: _Slot, pending: deque):
        """A message from a slot (or its end of the socket closing)."""
        try:
            data = slot.ctl.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            yield from self._slot_died(slot, pending)
            return
        try:
            message = json.loads(data)
        except ValueError:
            message = {}
        if "init" in message:
            slot.init = int(message["init"])
        elif "ready" in message:
            slot.mechanisms = [Mechanism(**m) for m in message["ready"]]
            self.mechanisms.update(slot.mechanisms)
            slot.state = "idle"
            self.failed_starts = 0
        elif "forked" in message and slot.state == "forking":
            self._go(slot)
        elif "reaped" in message and slot.state == "reaping":
            yield from self._reaped(slot, message["reaped"])
        elif "warmed" in message and slot.state == "warming":
            slot.state = "idle"

    def _slot_died(self, slot: _Slot, pending: deque):
        run = slot.run
        state = slot.state
        self._drop(slot)
        if state == "starting":
            self.failed_starts += 1
            if self.failed_starts >= _STARTS:
                from convert.errors import EnvironmentProblem

                note = slot.crash_note(0) if not slot.log.closed else _tail(slot.log_path)
                raise EnvironmentProblem(f"audit worker processes do not start here: {note or 'no message'}",
                                         hint="run with --static, or see the worker log")
        if slot.next is not None:
            pending.appendleft(slot.next)
        if run is None:
            return
        if state == "forking" and not run.task.get("retried"):
            self._cleanup(run)
            pending.appendleft(dict(run.task, retried=True))  # nothing of the file was read: once more elsewhere
            return
        if run.lost is None and not run.done:
            run.lost = ("crashed", "crash", "the worker slot died" + (f": {_tail(slot.log_path)}"
                                                                       if slot.log_path.exists() else ""))
        if run.lost is not None:
            self.lost += 1
        self._cleanup(run)
        yield run.task, run.finish()

    # -------------------------------------------------------------------------------------- a file

    def _fork(self, slot: _Slot, task: dict, pending: deque) -> None:
        run = _Run(task, self.forks + 1, self.timeout)
        data_r, data_w = os.pipe()
        go_r, go_w = os.pipe()
        try:
            slot.send({"op": "fork"}, fds=(data_w, go_r))
        except OSError:
            for fd in (data_r, go_w):
                os.close(fd)
            pending.appendleft(task)
            return
        finally:
            os.close(data_w)
            os.close(go_r)
        self.forks += 1
        run.data_fd, run.go_fd = data_r, go_w
        os.set_blocking(data_r, False)
        run.log_mark = slot.log_size()
        slot.run = run
        slot.state = "forking"

    def _go(self, slot: _Slot) -> None:
        """The child exists: put it in its cgroup, give it its folder and its task, start its clock."""
        run = slot.run
        run.pid = slot.child_pid()
        run.tmp = slot.home / f"file-{run.number}"
        run.tmp.mkdir()
        if self.cgroups and run.pid:
            group = self.cgroups.child(f"file-{run.number}", self.memory, process_limit())
            try:
                group.create()
                group.add(run.pid)
                run.group = group
            except OSError as exc:
                group.remove()
                self.mechanisms.add(Mechanism("process-tree", "cgroup per file", False, f"refused once: {exc}"))
        task = dict(run.task, tmp=str(run.tmp), memory=self.memory,
                    warmed=sorted(set(run.task.get("warmed", ())) | slot.warmed))
        try:
            os.write(run.go_fd, json.dumps(task).encode() + b"\n")
        except OSError:
            pass  # the child is gone already: its end shows it
        os.close(run.go_fd)
        run.go_fd = -1
        run.start()
        self.sel.register(run.data_fd, selectors.EVENT_READ, (slot, "data"))
        slot.state = "running"

    def _data(self, slot: _Slot) -> None:
        """Read what the child wrote so far; on its end (done, lost, or the pipe closed) have it reaped."""
        run = slot.run
        if run is None or run.data_fd < 0:
            return
        closed = False
        while not (run.done or run.lost):
            try:
                chunk = os.read(run.data_fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                closed = True
                break
            run.received += len(chunk)
            run.buf += chunk
            *lines, run.buf = run.buf.split(b"\n")
            for line in lines:
                if line.strip() and not run.done:
                    try:
                        run.take(json.loads(line))
                    except ValueError:
                        pass
            if run.received > MAX_PROTOCOL and not run.done:
                run.lost = ("crashed", "crash", f"the file's process wrote more than {MAX_PROTOCOL >> 20} MB of "
                            "results; it was killed")
        if (closed or run.done or run.lost) and slot.state == "running":
            self._close_data(run)
            self._end(slot)

    def _close_data(self, run: _Run) -> None:
        try:
            self.sel.unregister(run.data_fd)
        except (KeyError, ValueError):
            pass
        os.close(run.data_fd)
        run.data_fd = -1

    def _end(self, slot: _Slot) -> None:
        """The file is finished, lost or cut short: kill what it left, and ask the slot to reap it."""
        run = slot.run
        if run.group is not None:
            run.group.kill(wait=False)  # the slot kills the rest and reaps; ``_cleanup`` waits for the group
        try:
            slot.send({"op": "reap"})
        except OSError:
            pass
        slot.state = "reaping"

    def _watch(self, pending: deque):
        """Deadlines and memory of running files; slots that stopped answering."""
        now = time.monotonic()
        for slot in list(self.slots):
            run = slot.run
            if slot.state == "running" and run is not None:
                self._measure(run, slot)
                if slot.state != "running":
                    continue
                if run.lost is None and now > run.deadline:
                    if run.paused is not None:
                        why = (f"importing {run.paused[2] or 'a framework'} took more than "
                               f"{max(IMPORT_TIMEOUT, self.timeout):g} s; the file's processes were killed")
                    else:
                        why = f"still running after {self.timeout:g} s; the file's processes were killed"
                    run.lost = ("timeout", "timeout", why)
                if run.lost is not None:
                    self._close_data(run)
                    self._end(slot)
            limit = IMPORT_TIMEOUT if slot.state == "warming" else SLOT_TIMEOUT
            if slot.state in ("starting", "forking", "reaping", "warming") and now - slot.since > limit:
                if run is not None and run.lost is None and slot.state == "reaping" and not run.done:
                    run.lost = ("crashed", "crash", "the worker slot stopped answering")
                yield from self._slot_died(slot, pending)

    def _measure(self, run: _Run, slot: _Slot) -> None:
        if run.group is not None:
            usage = run.group.usage()
            if run.group.oom_kills() and run.lost is None:
                run.lost = _killed_by_kernel(self.memory)
        else:
            usage = sum(proctree.private_memory(p) for p in proctree.descendants(slot.init))
        run.peak = max(run.peak, usage)
        if run.pid and not proctree.alive(run.pid) and not run.done:
            self._data(slot)  # what it wrote before it died; a process it started may hold the pipe open
            if slot.state == "running":
                self._close_data(run)
                self._end(slot)
            return
        if usage > self.memory and run.lost is None:
            run.lost = ("out-of-memory", "out-of-memory", f"the file's processes held {usage >> 20} MB, past the cap "
                        f"of {self.memory >> 20} MB; they were killed")

    def _reaped(self, slot: _Slot, status):
        run = slot.run
        slot.run = None
        slot.state = "idle"
        if run.group is not None and run.lost is None and run.group.oom_kills():
            run.lost = _killed_by_kernel(self.memory)
            run.lost_step = next((s for s in reversed(run.stages) if run.result.get(s, {}).get("status") != "skipped"
                                  and s != "static"), None) or run.running()
        if run.lost is None and not run.done:
            run.lost = _death(status, slot.crash_note(run.log_mark), killed_by_kernel=None if run.group is None
                              else bool(run.group.oom_kills()))
        self.mechanisms.update(_mechanisms(run.mechanisms))
        self._cleanup(run)
        if run.lost is not None:
            self.lost += 1
        elif run.restart and run.restart not in slot.warmed:
            slot.warmed.add(run.restart)
            slot.next = dict(run.task, warmed=sorted(set(run.task.get("warmed", ())) | {run.restart}))
            try:
                slot.send({"op": "warm", "framework": run.restart})
                slot.state = "warming"
            except OSError:
                pass
            return
        yield run.task, run.finish()

    def _cleanup(self, run: _Run) -> None:
        if run.data_fd >= 0:
            self._close_data(run)
        if run.go_fd >= 0:
            os.close(run.go_fd)
            run.go_fd = -1
        if run.group is not None:
            run.group.remove()
        if run.tmp is not None:
            shutil.rmtree(run.tmp, ignore_errors=True)


def _mechanisms(reported: list) -> list[Mechanism]:
    out = []
    for m in reported:
        try:
            out.append(Mechanism(str(m["layer"]), str(m["name"]), bool(m["in_force"]), str(m.get("note", ""))))
        except (KeyError, TypeError):
            continue
    return out


def _killed_by_kernel(memory: int) -> tuple[str, str, str]:
    return ("out-of-memory", "out-of-memory", "the kernel's out-of-memory killer stopped a process of this file at "
            f"the cap (its cgroup's limit: {memory >> 20} MB and a quarter); the file's processes were killed")


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text("utf-8", "replace").splitlines()[-20:] if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


# what native code prints when an allocation fails before it gives up (OpenBLAS, C++, glibc, Python)
_OUT_OF_MEMORY = re.compile(r"[Mm]emory allocation .*failed|std::bad_alloc|Cannot allocate memory|^MemoryError\b|"
                            r"[Oo]ut of memory")
_ERROR_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


def _death(status, note: str, killed_by_kernel: bool | None) -> tuple[str, str, str]:
    """(status, category, reason) for a child that ended mid-task. ``killed_by_kernel``: whether its cgroup
    saw the out-of-memory killer (None: no cgroup to ask)."""
    code = os.waitstatus_to_exitcode(status) if isinstance(status, int) else None
    if note and _OUT_OF_MEMORY.search(note):
        return "out-of-memory", "out-of-memory", f"the file's process died of a failed allocation: {note}"
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL and killed_by_kernel is not False:
            return "out-of-memory", "out-of-memory", ("the file's process was killed (SIGKILL: the kernel's "
                                                      "out-of-memory killer?)")
        return "crashed", "crash", f"the file's process crashed ({name})" + (f": {note}" if note else "")
    return "crashed", "crash", f"the file's process exited (code {code})" + (f": {note}" if note else "")


def _lost_static(reason: str) -> dict:
    """Static facts for a file whose static pass was cut short: fail closed (``unknown``)."""
    return {"format": None, "framework": None, "safety": "unknown", "saved_with": {},
            "findings": [{"what": f"static scan did not finish: {reason}", "severity": "unknown",
                          "where": "static pass"}], "flagged": []}
