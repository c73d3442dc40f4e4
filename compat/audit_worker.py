"""One audit worker: reads tasks (JSON lines) from its supervisor, answers one message per stage.

Runs as ``python -m compat.audit_worker MEMORY_BYTES``. Before anything else it caps its own private
writable memory (RLIMIT_DATA: what it holds now plus MEMORY_BYTES, re-set before every artifact, see
``audit_steps.set_memory``), turns core dumps off, and moves the protocol off stdin/stdout so whatever
a library prints (TensorFlow's C++ logs, a payload's output under --trust) cannot corrupt it.
The steps themselves live in ``compat.audit_steps``.
"""

from __future__ import annotations

import json
import os
import sys


def _isolate(memory: int):
    """(protocol in, protocol out) after capping memory and detaching fds 0/1 from the pipes."""
    import resource

    from .audit_steps import set_memory

    set_memory(memory)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # stdout goes to the worker's log, as stderr does
    return proto_in, proto_out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    proto_in, proto_out = _isolate(int(argv[0]) if argv else 0)

    def send(message: dict) -> None:
        proto_out.write(json.dumps(message, default=str).encode() + b"\n")
        proto_out.flush()

    from .audit_steps import run_task

    for line in proto_in:
        if line.strip():
            run_task(json.loads(line), send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
