"""One audit worker slot: a confined process that forks a fresh child for every file and never reads one.

Runs as ``main([SUPERVISOR_PID, CONTROL_FD])`` in a fresh interpreter (``proctree.launcher``: the
working directory is not on sys.path). First it confines itself (``confine.enter_slot``: namespaces,
capabilities, seccomp; it becomes the init of its pid namespace), then answers the supervisor on the
control socket (SOCK_SEQPACKET, one JSON message each):

- ``fork`` (with two fds: the write end of the child's result pipe, the read end of its task pipe): fork a
  child, answer ``forked``. The child waits for its task on the task pipe (the supervisor first puts it in
  its cgroup), confines itself (``confine.enter_artifact``) and runs ``steps.run_task``, writing one
  JSON line per stage to the result pipe. Whatever the file does happens in that child and its descendants.
- ``reap``: kill every process left (the child, what it started, ``setsid`` or not: the slot is their
  init, or their subreaper) and answer with the child's wait status.
- ``warm`` (a framework name from ``steps``' table): import that framework's modules, so that later
  children start with it imported (seconds each: scikit-learn, torch, TensorFlow). The slot never imports
  anything a file names.

A file's code can change its own process only: the next file gets a new one, forked from a slot it cannot
write to (non-dumpable, ptrace denied, Landlock).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path


PROGRAM = "compat.audits.steps"  # the module whose warm_static, warm_framework and run_task a slot runs
steps = None  # that module, once imported in main()


def _send(ctl: socket.socket, message: dict) -> None:
    ctl.send(json.dumps(message).encode())


def _stdio() -> None:
    """Nothing reads stdin; stdout goes to the slot's log like stderr, so what a library or a payload prints
    lands there."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    supervisor, ctl_fd = int(argv[0]), int(argv[1])
    program = argv[2] if len(argv) > 2 else PROGRAM
    ctl = socket.socket(fileno=ctl_fd)
    from . import confine

    confine.die_with_parent(supervisor)
    mechanisms, pid_ns = confine.enter_slot(lambda pid: _send(ctl, {"init": pid}))
    alone = any(m.layer == "hidden-processes" and m.in_force for m in mechanisms)
    _stdio()
    import convert  # noqa: F401 -- every child needs it: import once, here

    global steps
    steps = importlib.import_module(program)  # what each child runs, named by the pool: this room imports no job
    steps.warm_static(Path.cwd())
    try:
        import landlock  # noqa: F401 -- every child confines itself with it
    except ImportError:
        pass
    gc.freeze()  # what the slot holds stays out of the children's collections (fewer pages copied on write)
    _send(ctl, {"ready": [m.to_dict() for m in mechanisms]})
    child = 0
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 4)
        except OSError:
            break
        if not data:
            break
        op = json.loads(data).get("op")
        if op == "fork":
            child = os.fork()
            if child == 0:
                _artifact(ctl, fds, alone)
            for fd in fds:
                os.close(fd)
            _send(ctl, {"forked": child})
        elif op == "reap":
            _send(ctl, {"reaped": _reap(child, pid_ns)})
            child = 0
        elif op == "warm":
            steps.warm_framework(json.loads(data).get("framework", ""))
            gc.freeze()
            _send(ctl, {"warmed": True})
        else:
            for fd in fds:
                os.close(fd)
    _reap(child, pid_ns)
    return 0


def _reap(child: int, pid_ns: bool) -> int | None:
    """Kill every process but the slot; the child's wait status (None if it was not reaped here)."""
    from .proctree import kill_descendants

    if pid_ns:
        try:
            os.kill(-1, signal.SIGKILL)  # from a pid namespace's init: every other process in it
        except ProcessLookupError:
            pass
    else:
        kill_descendants(os.getpid())
    status = None
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            status = st
    return status


def _artifact(ctl: socket.socket, fds: list[int], alone: bool) -> None:
    """The child: wait for the task, confine, audit one file, exit. Never returns."""
    code = 0
    try:
        result_fd, task_fd = fds
        ctl.close()
        from .confine import die_with_parent

        die_with_parent(0)  # without a pid namespace to do it, the slot's death still ends the file's process
        low, high = sorted((result_fd, task_fd))  # keep nothing of the slot's but the two pipes
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 20)
        with os.fdopen(task_fd, "rb") as fh:
            line = fh.readline()
        if not line.strip():
            os._exit(0)  # the supervisor gave up on this task
        task = json.loads(line)
        from . import confine

        mechanisms = confine.enter_artifact(task["tmp"], int(task.get("memory") or 0), alone)
        out = os.fdopen(result_fd, "wb")

        def send(message: dict) -> None:
            out.write(json.dumps(message, default=str).encode() + b"\n")
            out.flush()

        send({"stage": "confined", "mechanisms": [m.to_dict() for m in mechanisms]})
        steps.run_task(task, send)
    except BaseException:  # noqa: BLE001 -- a payload's SystemExit too: say what ended it, on stderr
        traceback.print_exc()
        code = 70
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
