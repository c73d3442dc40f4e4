"""Zip members read the way torch's loader reads them, not the way Python's ``zipfile`` would.

torch (miniz, in ``PyTorchStreamReader``) takes a member's name, size and method from the central directory,
finds its data after the *local* header's own name and extra fields, and does not refuse a member whose flags
claim encryption or patched data, whose CRC is wrong, or whose local header names another file. Python's
``zipfile`` refuses each of those, so a scanner built on it would skip exactly what torch goes on to unpickle.
This reader serves the bytes torch would see and reports each such anomaly to the caller instead of refusing.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zipfile
import zlib
from collections.abc import Callable

# what zipfile raises on damaged or hostile archives, besides BadZipFile (RuntimeError covers encrypted
# members and NotImplementedError for unknown methods/versions; bad offsets surface as ValueError)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError, struct.error,
              OverflowError, KeyError, IndexError, zlib.error, lzma.LZMAError)
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature, version, flags, method, time, date, crc, sizes, name/extra
_LOCAL_SIG = b"PK\x03\x04"
_RAW_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2)
CHUNK = 1 << 20

# general-purpose flag bits no writer of model files sets, which Python's zipfile refuses and torch ignores
_FLAGS = {0x1: "claims to be encrypted", 0x20: "claims to hold patched data", 0x40: "claims strong encryption",
          0x2000: "claims an encrypted central directory"}


def anomalies(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[str]:
    """What about this member's headers Python's zipfile would refuse (empty for an ordinary member)."""
    found = [what for bit, what in _FLAGS.items() if info.flag_bits & bit]
    local = _local_header(zf, info)
    if local is None:
        found.append("has no local header where the central directory points")
        return found
    name = local[-1]
    if name != info.orig_filename.encode("utf-8") and name != info.orig_filename.encode("cp437", "replace"):
        found.append(f"names itself {name.decode('utf-8', 'replace')!r} in its local header")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        found.append(f"uses compression method {info.compress_type}, which neither torch nor Python's zipfile reads")
    return found


def open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, report: Callable[[str], None] | None = None):
    """A buffered, seekable file of the member's bytes as torch reads them. ``report`` hears of a CRC that does not
    match the bytes (known once they have all been read in order). Methods torch cannot read (LZMA, ...) are left
    to Python's zipfile, the only reader that would read them."""
    if info.compress_type not in _RAW_METHODS:
        return zf.open(info)
    return io.BufferedReader(_Member(zf, info, report), buffer_size=CHUNK)


def _local_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    fp = zf.fp
    fp.seek(info.header_offset)
    raw = fp.read(_LOCAL.size)
    if len(raw) < _LOCAL.size or raw[:4] != _LOCAL_SIG:
        return None
    fields = _LOCAL.unpack(raw)
    name = fp.read(fields[9])
    return (*fields, name)


class _Member(io.RawIOBase):
    """The member's data, from the offset the local header gives, ``compress_size`` bytes long (central
    directory), decompressed by its central-directory method."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, report):
        super().__init__()
        local = _local_header(zf, info)
        if local is None:
            raise zipfile.BadZipFile(f"no local header for {info.filename} at byte {info.header_offset}")
        self.fp = zf.fp
        self.start = info.header_offset + _LOCAL.size + local[9] + local[10]
        self.length = info.compress_size
        self.method = info.compress_type
        self.crc, self.size = info.CRC, info.file_size
        self.report = report
        self._restart()

    def _restart(self) -> None:
        self.raw_pos = 0  # compressed bytes consumed
        self.pos = 0  # decompressed bytes served
        self.pending = b""
        self.running_crc = 0
        self.in_order = True  # every byte so far was read, none skipped: the CRC can be checked at the end
        self.checked = False
        self.dec = {zipfile.ZIP_DEFLATED: lambda: zlib.decompressobj(-15),
                    zipfile.ZIP_BZIP2: bz2.BZ2Decompressor}.get(self.method, lambda: None)()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def _raw(self, n: int) -> bytes:
        n = min(n, self.length - self.raw_pos)
        if n <= 0:
            return b""
        self.fp.seek(self.start + self.raw_pos)
        data = self.fp.read(n)
        self.raw_pos += len(data)
        if not data:
            raise EOFError("the archive ends inside a member")
        return data

    def readinto(self, b) -> int:
        n = len(b)
        if self.dec is None:
            data = self._raw(n)
        else:
            data = self._inflate(n)
        k = len(data)
        b[:k] = data
        self.pos += k
        if self.in_order:
            self.running_crc = zlib.crc32(data, self.running_crc)
            if not k:
                self._check()
        return k

    def _inflate(self, n: int) -> bytes:
        out, have = [self.pending], len(self.pending)
        while have < n and not getattr(self.dec, "eof", False):
            raw = self._raw(CHUNK)
            if not raw and self.method == zipfile.ZIP_DEFLATED:
                tail = self.dec.flush()
                out.append(tail)
                have += len(tail)
                break
            if not raw:
                break
            piece = self.dec.decompress(raw)
            out.append(piece)
            have += len(piece)
        data = b"".join(out)
        self.pending = data[n:]
        return data[:n]

    def _check(self) -> None:
        if self.checked or self.report is None:
            return
        self.checked = True
        if self.pos != self.size:
            self.report(f"holds {self.pos} bytes where its headers declare {self.size}")
        elif self.running_crc != self.crc:
            self.report("has a CRC that does not match its bytes")

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.pos
        elif whence == 2:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        if offset < self.pos:
            self._restart()
            self.in_order = False
        if offset > self.pos:
            self.in_order = False
            if self.dec is None:
                self.raw_pos = min(offset, self.length)
                self.pos = self.raw_pos
            else:
                while self.pos < offset:
                    chunk = self._inflate(min(CHUNK, offset - self.pos))
                    if not chunk:
                        break
                    self.pos += len(chunk)
        return self.pos
