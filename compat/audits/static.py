"""The static pass of an audit, run where it costs least. It runs no file's code (``convert.inspect`` reads bytes
and never unpickles or imports anything a file names), so it needs none of what the confined worker slots of the
dynamic steps cost (``pool``): no interpreter to start, no framework to import, no namespaces, no cgroups.

- inline: in this process, one file after another (a small audit, or ``jobs=1``);
- forked: ``jobs`` processes forked from this one, which has the scanner imported already, when there are many
  files and more than one job. Each is fed batches of files through a pipe and answers one line per file.
  Files whose bytes go to a native parser outside the standard library (HDF5 through h5py, 7-Zip through
  py7zr's codecs) are always scanned in a forked process, however few there are.

One row per file, fail closed: whatever the scanner raises (a bug, MemoryError) is that file's ``unknown`` row
(``steps.run_task``); a scan that outlasts ``timeout`` is stopped (inline: SIGALRM, which also interrupts a long
regular-expression match; forked: the process is killed); a file whose forked process dies (a segfault in a
native parser) is given to a new one once, and a file that kills two is reported ``unknown`` with the reason.
The rest of the audit goes on, in new processes if needed (in this one, should three in a row die before
they are ready to read a file).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

from convert.magic import HDF5_SIGNATURE, SEVENZIP_MAGIC

from .steps import run_task

BATCH = 16  # files handed to a forked process at a time; two batches in flight keep it busy
FORK_MIN = 2 * BATCH  # fewer files than this are scanned inline: forking would cost more than it saves
POLL = 0.1  # seconds between deadline checks of forked processes
STRIKES = 2  # forked processes a file may kill before it is reported (the first may have died of something else)
STARTS = 3  # forked processes in a row that die before they are ready: the rest is scanned here
OUTBOX_MAX = 32 << 10  # bytes of tasks queued for one forked process (paths are long at worst)
NATIVE = (HDF5_SIGNATURE, SEVENZIP_MAGIC)  # first bytes of files parsed by native code outside the stdlib


class ScanTimeout(BaseException):
    """Raised into an inline scan that outlasted its time (a BaseException: no scanner handler catches it)."""


def scan(task: dict) -> dict:
    """The static facts of one file (the ``static`` message of ``steps.run_task``), plus ``seconds``."""
    result: dict = {}

    def send(message: dict) -> None:
        if message.get("stage") == "static":
            result.update((k, v) for k, v in message.items() if k != "stage")

    t0 = time.perf_counter()
    try:
        run_task({"path": task["path"], "static": True}, send)
    except Exception as exc:  # noqa: BLE001 -- outside run_task's own guard (its facts): still one row
        result = lost(task, f"the static scan failed ({type(exc).__name__}: {str(exc)[:200]})")
    result["seconds"] = time.perf_counter() - t0
    return result


def lost(task: dict, reason: str) -> dict:
    """The row of a file whose static scan did not finish: fail closed (``unknown``)."""
    try:
        path = Path(task["path"])
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        size = 0
    return {"format": None, "framework": None, "size": size, "sha256": "", "saved_with": {}, "safety": "unknown",
            "findings": [{"what": f"static scan did not finish: {reason}", "severity": "unknown",
                          "where": "static pass"}], "flagged": []}


def native(path: str) -> bool:
    """Whether the file's bytes go to a native parser outside the standard library (see ``NATIVE``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # unreadable: the scan says so
        return False
    try:
        head = os.read(fd, 8)
    except OSError:  # a folder (SavedModel): the scan reads its files
        return False
    finally:
        os.close(fd)
    return head.startswith(NATIVE)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class StaticScan:
    """``with StaticScan(jobs, timeout) as scanner: for task, result in scanner.run(tasks): ...`` (the face of
    ``pool.Pool``); ``stats()`` counts the processes forked and the files lost, ``confinement()`` is empty: no
    file's code runs, so nothing is confined."""

    def __init__(self, jobs: int, timeout: float):
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.forked = 0
        self.lost = 0
        self._workers: list[_Worker] = []

    def stats(self) -> dict:
        return {"processes": self.forked, "lost": self.lost, "slots": 0}

    def confinement(self) -> dict:
        return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for w in list(self._workers):
            w.kill()
        self._workers.clear()

    def run(self, tasks):
        """Yield (task, result) as files finish."""
        tasks = list(tasks)
        if self.jobs > 1 and len(tasks) >= FORK_MIN and cores() > 1:
            yield from self._forked(tasks, self.jobs)
            return
        here = []
        elsewhere = []
        for task in tasks:
            (elsewhere if native(task["path"]) else here).append(task)
        if elsewhere:
            yield from self._forked(elsewhere, 1)
        yield from self._inline(here)

    # ------------------------------------------------------------------------------------------ inline

    def _inline(self, tasks):
        import threading

        alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        armed = [False]

        def fire(signum, frame):
            if armed[0]:  # a signal that arrives after the file finished is ignored
                armed[0] = False
                raise ScanTimeout

        previous = signal.signal(signal.SIGALRM, fire) if alarm else None
        try:
            for task in tasks:
                t0 = time.perf_counter()
                try:
                    try:
                        if alarm:
                            armed[0] = True
                            signal.setitimer(signal.ITIMER_REAL, self.timeout)
                        result = scan(task)
                    finally:
                        armed[0] = False
                        if alarm:
                            signal.setitimer(signal.ITIMER_REAL, 0)
                except ScanTimeout:
                    self.lost += 1
                    result = lost(task, f"still running after {self.timeout:g} s; stopped")
                    result["seconds"] = time.perf_counter() - t0
                yield task, result
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    # ------------------------------------------------------------------------------------------ forked

    def _forked(self, tasks: list[dict], jobs: int):
        selectors = _events()
        pending = deque(range(len(tasks)))
        sel = selectors.DefaultSelector()
        workers = self._workers
        want = min(jobs, -(-len(tasks) // BATCH))
        strikes: dict[int, int] = {}
        silent = 0  # processes in a row that died before they were ready to read a file
        try:
            while pending or workers:
                while len(workers) < want and pending:
                    worker = self._fork(sel) if silent < STARTS else None
                    if worker is None:  # the system refuses a process, or they die at once: the rest here
                        if not workers:
                            yield from self._inline([tasks[i] for i in pending])
                            pending.clear()
                        want = len(workers)
                        break
                for w in workers:
                    while pending and len(w.queue) < 2 * BATCH and len(w.outbox) < OUTBOX_MAX:
                        i = pending.popleft()
                        w.give(i, tasks[i]["path"])
                    w.flush(sel)
                if not workers:
                    continue
                for key, events in sel.select(POLL):
                    w, what = key.data
                    if not w.alive:
                        continue
                    if what == "out":
                        w.flush(sel)
                        continue
                    for i, result in w.read():
                        yield tasks[i], result
                    if w.eof:
                        silent = 0 if w.ready else silent + 1
                        why = w.death(sel)
                        if w.queue:
                            strikes[w.queue[0]] = strikes.get(w.queue[0], 0) + 1
                        if w.queue and strikes[w.queue[0]] < STRIKES:
                            pending.extendleft(reversed(w.queue))  # once more, in a new process
                            w.queue.clear()
                        yield from self._end(w, sel, tasks, pending, f"{why}, {STRIKES} times on this file")
                now = time.monotonic()
                for w in list(workers):
                    if w.queue and now - w.since > self.timeout:
                        yield from self._end(w, sel, tasks, pending,
                                             f"still running after {self.timeout:g} s; its process was killed")
                workers[:] = [w for w in workers if w.alive]
                if not pending:
                    for w in list(workers):
                        if not w.queue:
                            w.close(sel)
                    workers[:] = [w for w in workers if w.alive]
        finally:
            for w in workers:
                w.kill()
            workers.clear()
            sel.close()

    def _end(self, w: "_Worker", sel, tasks: list[dict], pending: deque, reason: str):
        """A forked process that died or overran: the file it was reading gets one row, the rest go back."""
        w.kill(sel)
        if w.queue:
            i, *rest = w.queue
            self.lost += 1
            result = lost(tasks[i], reason)
            result["seconds"] = time.monotonic() - w.since
            pending.extendleft(reversed(rest))
            w.queue.clear()
            yield tasks[i], result

    def _fork(self, sel) -> "_Worker | None":
        try:
            worker = _Worker.start()
        except OSError:
            return None
        self.forked += 1
        self._workers.append(worker)
        sel.register(worker.results, _events().EVENT_READ, (worker, "in"))
        return worker


def _events():
    import selectors  # imported when forking: an inline scan (one file, jobs=1) has no use for it

    return selectors


class _Worker:
    """A process forked to scan files: tasks (``[index, path]`` lines) in, results (``[index, result]`` lines) out,
    after ``[-1, {}]`` once it is ready."""

    def __init__(self, pid: int, tasks: int, results: int):
        self.pid, self.tasks, self.results = pid, tasks, results
        self.queue: list[int] = []  # indexes handed over and not answered yet, in order: queue[0] is being read
        self.since = time.monotonic()  # when queue[0] started (as far as the supervisor can tell)
        self.outbox = bytearray()
        self.ready = False  # it said so before reading any file
        self.buf = b""
        self.eof = False
        self.alive = True
        self.status: int | None = None
        self.writing = False

    @classmethod
    def start(cls) -> "_Worker":
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for fd in (task_r, task_w, result_r, result_w):
                os.close(fd)
            raise
        if pid == 0:  # the child never returns
            _child(parent, task_r, result_w)
        os.close(task_r)
        os.close(result_w)
        os.set_blocking(task_w, False)
        os.set_blocking(result_r, False)
        return cls(pid, task_w, result_r)

    def give(self, i: int, path: str) -> None:
        if not self.queue:
            self.since = time.monotonic()
        self.queue.append(i)
        self.outbox += json.dumps([i, path]).encode() + b"\n"

    def flush(self, sel) -> None:
        """Write what the pipe takes now; wait for it to take the rest."""
        while self.outbox and self.alive:
            try:
                n = os.write(self.tasks, self.outbox)
            except BlockingIOError:
                break
            except OSError:  # the process is gone: its results pipe says so
                self.outbox.clear()
                break
            del self.outbox[:n]
        wants = bool(self.outbox) and self.alive
        if wants != self.writing:
            if wants:
                sel.register(self.tasks, _events().EVENT_WRITE, (self, "out"))
            else:
                sel.unregister(self.tasks)
            self.writing = wants

    def read(self):
        """(index, result) for every whole line the process wrote so far."""
        while True:
            try:
                chunk = os.read(self.results, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                i, result = json.loads(line)
            except ValueError:
                continue
            if i == -1:
                self.ready = True
            elif self.queue and i == self.queue[0] and isinstance(result, dict):
                self.queue.pop(0)
                self.since = time.monotonic()
                yield i, result

    def death(self, sel) -> str:
        """Why the process ended (it was reading ``queue[0]``)."""
        self.kill(sel)
        code = os.waitstatus_to_exitcode(self.status) if self.status is not None else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the scanning process crashed ({name})"
        return f"the scanning process exited (code {code})"

    def close(self, sel) -> None:
        """No more work: close its task pipe (it exits) and reap it."""
        self.kill(sel, graceful=True)

    def kill(self, sel=None, graceful: bool = False) -> None:
        if not self.alive:
            return
        self.alive = False
        if sel is not None:
            for fd in (self.results, self.tasks) if self.writing else (self.results,):
                try:
                    sel.unregister(fd)
                except (KeyError, ValueError):
                    pass
            self.writing = False
        for fd in (self.tasks, self.results):
            try:
                os.close(fd)
            except OSError:
                pass
        if not graceful:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, self.status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _child(parent: int, task_fd: int, result_fd: int) -> None:
    """A forked scanner: read ``[index, path]`` lines, answer ``[index, result]`` lines, exit at the end of its
    input. Never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        low, high = sorted((task_fd, result_fd))  # nothing of the parent's but its stdio and our two pipes
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 16)
        # new stdio objects: a thread of the parent may have held the old ones' locks when it forked
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
        from .sandbox.confine import die_with_parent

        die_with_parent(parent)
        os.write(result_fd, b"[-1, {}]\n")  # ready
        with os.fdopen(task_fd, "rb") as inbox:
            for line in inbox:
                i, path = json.loads(line)
                data = json.dumps([i, scan({"path": path})], default=str).encode() + b"\n"
                view = memoryview(data)
                while view:
                    view = view[os.write(result_fd, view):]
    except BaseException:  # noqa: BLE001 -- whatever ended it, the supervisor sees the pipe close
        code = 70
    os._exit(code)
