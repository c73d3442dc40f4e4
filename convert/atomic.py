"""Writing output files so that nothing is ever half written: a temporary file in the target directory,
fsync, then an atomic rename. Every writer (ONNX models, reports, records) goes through ``write_atomic``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import BadInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise BadInputError("output directory does not exist", path=directory, hint="create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give it
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
