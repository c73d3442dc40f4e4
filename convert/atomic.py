"""Writing output files so that nothing is ever half written: a temporary file in the target directory,
fsync, then an atomic rename. Every writer (ONNX models, reports, records) goes through ``write_atomic``.

Three things can still go wrong, and each is handled here rather than by every caller:
- the folder cannot be written (read-only, ``/proc``, a full disk): one ``BadInputError`` naming the file;
- a writer is killed mid-write: its temporary file (``.NAME.XXXX.modelport-tmp``) stays behind. Each writer
  holds a lock on its temporary file while it lives, so the next write into that folder removes every one of
  ours whose lock is free (its writer is gone), and never one still being written;
- another process replaces the target while this one works (two converts racing to one ``-o``): a caller
  that took a ``snapshot`` of the target when it started passes it as ``unchanged_since``, and the rename
  happens only if the target is still what it was, checked and renamed under a lock on the folder.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so no sweeping of stale temporary files either
    fcntl = None

TEMP_SUFFIX = ".modelport-tmp"
_NAME_ROOM = 120  # of the target's name kept in a temporary file's name (file names stop at 255 bytes)


@dataclass(frozen=True)
class Snapshot:
    """What a file was at one moment: None when absent, else (device, inode, size, mtime in ns). A rename
    over it changes the inode; a write in place changes the size or mtime."""

    identity: tuple | None

    @property
    def exists(self) -> bool:
        return self.identity is not None


def snapshot(path: str | Path) -> Snapshot:
    try:
        st = os.stat(path)
    except OSError:
        return Snapshot(None)
    return Snapshot((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str, *, unchanged_since: Snapshot | None = None) -> Path:
    """Write ``data`` to ``path`` atomically. With ``unchanged_since``, refuse (BadInputError, nothing written)
    when the target is no longer what that snapshot saw."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise BadInputError("output directory does not exist", path=directory, hint="create it first")
    sweep(directory)
    tmp = None
    try:
        fd, tmp = _locked_temp(directory, path.name)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give it
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            with _folder_lock(directory):
                if unchanged_since is not None and snapshot(path) != unchanged_since:
                    raise BadInputError("changed while this run was working (another process wrote it); "
                                        "not overwritten", path=path, hint="run again, or choose another output")
                os.replace(tmp, path)
                tmp = None
    except OSError as exc:
        raise unwritable(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def check_writable(path: str | Path) -> None:
    """Fail now, not after an hour of work, when ``path`` could not be written: its folder must exist and take
    a new file (tried with a temporary file of ours, removed at once)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise BadInputError("output directory does not exist", path=directory, hint="create it first")
    if path.is_dir():
        raise BadInputError("is a directory, not a file", path=path, hint="name a file in it")
    try:
        fd, tmp = _locked_temp(directory, path.name)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise unwritable(path, exc) from None


def unwritable(path: str | Path, exc: OSError) -> BadInputError:
    """The one-line error for an output that the system refused to write (read-only, ``/proc``, disk full)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    reason = exc.strerror or type(exc).__name__
    hint = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a folder you can write to"
    return BadInputError(f"cannot be written: {folder} refuses it ({reason})", path=path, hint=hint)


def _locked_temp(directory: Path, name: str) -> tuple[int, str]:
    """A new temporary file beside the target, locked for as long as this process holds it open."""
    import tempfile

    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:_NAME_ROOM]}.", suffix=TEMP_SUFFIX, dir=directory)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)  # a sweep took it between mkstemp and the lock: take another


@contextmanager
def _folder_lock(directory: Path):
    """Serializes the check-and-rename of writers into one folder (a lock on the folder itself: no lock
    file is left anywhere)."""
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sweep(directory: str | Path) -> list[str]:
    """Remove the temporary files of writers that are gone (killed mid-write) from ``directory``; return their
    names. A file whose lock is held belongs to a live writer and stays. Best effort: a folder that cannot be
    listed or written is left as it is."""
    if fcntl is None:
        return []
    removed = []
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return []
    for entry in entries:
        try:
            fd = os.open(entry.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(entry.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:  # locked by a live writer, or gone already
            pass
        finally:
            os.close(fd)
    return removed
