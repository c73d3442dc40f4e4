"""7-Zip archives, member by member, for the static scan: py7zr decompresses each member into a bounded spool,
and the caller reads it as soon as it is complete. Nothing is extracted to the archive's folder, nothing runs.

Anything this cannot read to the end (py7zr missing, an encrypted archive, a member larger than declared, more
data than the bound) is reported as an error, which the scan turns into ``unknown``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

IN_MEMORY = 64 << 20  # a member larger than this spills to a temporary file while it is scanned
TOTAL_MAX = 8 << 30  # uncompressed bytes read from one archive, at most


class SevenZipError(Exception):
    """The archive (or one member) cannot be read to its end."""


def names(fh) -> list[str]:
    """Member names of a 7-Zip archive (its header only)."""
    py7zr = _py7zr()
    try:
        with py7zr.SevenZipFile(fh, "r") as archive:
            return [i.filename for i in archive.list() if not i.is_directory]
    except Exception as exc:  # py7zr reports damaged and encrypted headers in many ways
        raise SevenZipError(f"unreadable 7-Zip header: {exc}") from None


def walk(fh, visit: Callable[[str, int, object], None]) -> None:
    """Call ``visit(name, size, file)`` for every member as soon as it is decompressed; ``file`` is readable and
    seekable from its start and is discarded afterwards. Raises SevenZipError for what cannot be read."""
    py7zr = _py7zr()
    try:
        archive = py7zr.SevenZipFile(fh, "r")
    except Exception as exc:
        raise SevenZipError(f"unreadable 7-Zip archive: {exc}") from None
    with archive:
        if archive.needs_password():
            raise SevenZipError("an encrypted 7-Zip archive: its members cannot be read without the password")
        infos = [i for i in archive.list() if not i.is_directory]
        total = sum(i.uncompressed or 0 for i in infos)
        if total > TOTAL_MAX:
            raise SevenZipError(f"the 7-Zip archive holds {total} bytes uncompressed, more than the scan reads "
                                f"({TOTAL_MAX})")
        declared = {i.filename: i.uncompressed or 0 for i in infos}
        factory = _factory(py7zr, declared, visit)
        try:
            archive.extract(factory=factory)
        except SevenZipError:
            raise
        except Exception as exc:  # CRC errors, unsupported filters, truncated streams
            raise SevenZipError(f"cannot decompress the 7-Zip archive: {exc}") from None
        missing = sorted(n for n, size in declared.items() if size and n not in factory.seen)
        if missing:
            raise SevenZipError(f"7-Zip members never decompressed: {', '.join(missing[:5])}")


def _py7zr():
    try:
        import py7zr
    except ImportError:
        raise SevenZipError("a 7-Zip archive, and py7zr is not installed (pip install 'modelport[scan]')") from None
    return py7zr


def _factory(py7zr, declared: dict, visit):
    """A py7zr WriterFactory whose products spool one member and hand it to ``visit`` when py7zr closes it."""

    class Spool(py7zr.io.Py7zIO):
        def __init__(self, name: str):
            self.name = name
            self.file = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)
            self.written = 0
            self.limit = declared.get(name, 0)

        def write(self, s) -> int:
            self.written += len(s)
            if self.written > self.limit:
                raise SevenZipError(f"7-Zip member {self.name} holds more than the {self.limit} bytes it declares")
            return self.file.write(s)

        def read(self, size=None) -> bytes:
            return self.file.read(-1 if size is None else size)

        def seek(self, offset: int, whence: int = 0) -> int:
            return self.file.seek(offset, whence)

        def flush(self) -> None:
            self.file.flush()

        def size(self) -> int:
            return self.written

        def close(self) -> None:
            if self.file.closed:
                return
            try:
                self.file.seek(0)
                factory.seen.add(self.name)
                visit(self.name, self.written, self.file)
            finally:
                self.file.close()

    class Factory(py7zr.io.WriterFactory):
        def __init__(self):
            self.seen: set = set()

        def create(self, filename: str):
            return Spool(filename)

    factory = Factory()
    return factory
