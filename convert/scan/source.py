"""Bytes for the scanners: a forward-only buffered reader whose buffer the opcode machine borrows, regions of
it read as files, joblib's decompressors (streamed, in bounded steps), and files read with CRLF restored.
Errors here say where a stream breaks: ``Corrupt`` (the unpickler would fail), ``Truncated``, ``Halt`` (the
scan cannot follow faithfully: fail closed)."""

from __future__ import annotations

import zlib

CHUNK = 1 << 20  # bytes read from the file at a time

LOOK = 300  # lookahead kept in the buffer, so any one-byte-length argument is already there

LINE_MAX = 1 << 16  # text-protocol arguments longer than this are skipped

SKIP_CHUNK = 4 << 20  # read-and-drop block when a stream cannot seek

_PAD = bytes(16)


class Corrupt(Exception):
    """The stream is structurally broken: the unpickler would fail here."""

    def __init__(self, message: str, at: int = -1):
        super().__init__(message)
        self.at = at


class Truncated(Corrupt):
    pass


class Halt(Exception):
    """The scan cannot follow the stream faithfully from here (fail-closed: ``unknown``)."""


class Source:
    """A forward-only buffered reader. The machine borrows ``buf``/``pos`` for its hot loop and hands
    them back before anything else reads."""

    __slots__ = ("f", "buf", "pos", "base", "eof", "size", "fence", "_scratch", "_padded", "_padded_for", "_taken")

    def __init__(self, f, size: int | None = None):
        self.f = f
        self.buf = b""
        self.pos = 0
        self.base = 0  # file offset of buf[0]
        self.eof = f is None
        self.size = size  # total length when known: lets skip() seek instead of reading
        self.fence = -1  # file offset where the current pickle FRAME ends (-1: none open)
        self._scratch = None
        self._padded = self._padded_for = None
        self._taken = 0  # bytes read from ``f`` so far

    def borrow(self):
        """(buffer, pos, base, n, lim) for the machine's loop. At the end of the data the buffer is padded,
        so fixed-size argument reads never raise; the loop checks ``pos`` against ``n`` itself. ``lim`` also
        stops the loop's fast path at an open frame's end, where the machine checks that an opcode ends there."""
        buf = self.buf
        n = len(buf)
        if not self.eof:
            lim = n - LOOK
        else:
            if self._padded_for is not buf:
                self._padded, self._padded_for = buf + _PAD, buf
            buf, lim = self._padded, n - 1
        if self.fence >= 0 and self.fence - self.base - 1 < lim:
            lim = self.fence - self.base - 1
        return buf, self.pos, self.base, n, lim

    @classmethod
    def of_bytes(cls, data) -> "Source":
        src = cls(None, len(data))
        src.buf = bytes(data)
        return src

    def _read(self, n: int) -> bytes:
        if self.size is not None:  # ask for no more than is left (and one byte to see the end): a request for a
            n = min(n, max(self.size - self._taken, 0) + 1)  # megabyte costs a megabyte's allocation
        try:
            data = self.f.read(n)
        except Exception as exc:  # decompressors and zip members report corrupt data in many ways
            raise Corrupt(f"unreadable data near byte {self.base + len(self.buf)}: {exc}") from None
        self._taken += len(data)
        return data

    def fill(self, need: int) -> None:
        """Make ``need`` bytes available from ``pos`` (fewer only at the end of the data)."""
        have = len(self.buf) - self.pos
        if have >= need or self.eof:
            return
        parts = [self.buf[self.pos:]]
        self.base += self.pos
        self.pos = 0
        while have < need:
            chunk = self._read(max(CHUNK, need - have))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)

    def offset(self) -> int:
        return self.base + self.pos

    def at_end(self) -> bool:
        self.fill(1)
        return self.pos >= len(self.buf)

    def peek(self, n: int) -> bytes:
        self.fill(n)
        return self.buf[self.pos:self.pos + n]

    def take(self, n: int) -> bytes:
        self.fill(n)
        end = self.pos + n
        if end > len(self.buf):
            raise Truncated(f"ends inside a {n}-byte argument at byte {self.offset()}", self.offset())
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, buffer first (used by region readers)."""
        if self.pos >= len(self.buf):
            if self.eof:
                return b""
            self.base += len(self.buf)
            self.buf, self.pos = b"", 0
            chunk = self._read(n)
            if not chunk:
                self.eof = True
            self.base += len(chunk)
            return chunk
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def skip(self, n: int) -> None:
        """Move ``n`` bytes forward without holding them; raise Truncated past the end."""
        have = len(self.buf) - self.pos
        if n <= have:
            self.pos += n
            return
        start = self.offset()
        n -= have
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        if self.size is not None and self.f is not None:
            if self.base + n > self.size:
                raise Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
            try:
                self.f.seek(n, 1)
            except Exception as exc:
                raise Corrupt(f"cannot skip {n} bytes at byte {start}: {exc}", start) from None
            self.base += n
            self._taken += n
            return
        if self.eof:
            raise Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
        readinto = getattr(self.f, "readinto", None)
        if readinto is not None and self._scratch is None:
            self._scratch = memoryview(bytearray(SKIP_CHUNK))
        while n:
            step = min(n, SKIP_CHUNK)
            try:
                got = readinto(self._scratch[:step]) if readinto is not None else len(self.f.read(step))
            except Exception as exc:
                raise Corrupt(f"unreadable data near byte {self.base}: {exc}", self.base) from None
            if not got:
                self.eof = True
                raise Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
            n -= got
            self.base += got
            self._taken += got

    def line(self) -> bytes | None:
        """Bytes through the next newline; None when the line is longer than LINE_MAX (it is skipped)."""
        i = self.buf.find(b"\n", self.pos)
        while i < 0:
            seen = len(self.buf) - self.pos
            if seen > LINE_MAX:
                return self._skip_line()
            if self.eof:
                raise Truncated(f"ends inside a text argument at byte {self.offset()}", self.offset())
            self.fill(seen + CHUNK)
            i = self.buf.find(b"\n", self.pos + seen)
        data = self.buf[self.pos:i + 1]
        self.pos = i + 1
        return data

    def _skip_line(self) -> None:
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                self.pos = i + 1
                return None
            self.base += len(self.buf)
            self.buf, self.pos = b"", 0
            if self.eof:
                raise Truncated(f"ends inside a text argument at byte {self.base}", self.base)
            self.fill(CHUNK)


class Region:
    """The next ``n`` bytes of a source as a file: a long constant scanned without holding it."""

    def __init__(self, src: Source, n: int):
        self.src, self.left = src, n

    def read(self, k=-1):
        if self.left <= 0:
            return b""
        k = self.left if k is None or k < 0 else min(k, self.left)
        data = self.src.read_some(k)
        self.left -= len(data)
        return data

    def drain(self):
        if self.left > 0:
            self.src.skip(self.left)
            self.left = 0


class ZlibReader:
    """joblib's zlib container (a bare zlib stream), decompressed as it is read, in bounded steps."""

    def __init__(self, raw, first: bytes = b""):
        self.raw = raw
        self.dec = zlib.decompressobj(zlib.MAX_WBITS)
        self.pending = b""
        self.first = first

    def read(self, n=-1):
        n = CHUNK if n is None or n < 0 else n
        parts, have = [self.pending], len(self.pending)
        while have < n and not self.dec.eof:
            data = self.dec.unconsumed_tail or self.first or self.raw.read(1 << 16)
            self.first = b""
            if not data:
                raise EOFError("compressed data ends early")
            piece = self.dec.decompress(data, n - have)
            parts.append(piece)
            have += len(piece)
        data = b"".join(parts)
        self.pending = data[n:]
        return data[:n]


def _lz4_open(raw):
    try:
        import lz4.frame
    except ImportError:
        raise Halt("lz4-compressed, and the lz4 module is not installed (pip install lz4)") from None
    return lz4.frame.LZ4FrameFile(raw, "rb")


def _zfile_open(raw):
    """joblib < 0.10 ``ZF`` files: ``ZF``, the length in hex padded to 19 bytes, maybe a space, zlib data."""
    raw.read(2 + 19)
    first = raw.read(1)
    return ZlibReader(raw, b"" if first == b" " else first)


# the decompressors are imported by the file that needs one: a scan of plain pickles never does
def _gzip_open(raw):
    import gzip

    return gzip.GzipFile(fileobj=raw, mode="rb")


def _bz2_open(raw):
    import bz2

    return bz2.BZ2File(raw, "rb")


def _lzma_open(raw, alone: bool = False):
    import lzma

    return lzma.LZMAFile(raw, "rb", format=lzma.FORMAT_ALONE if alone else lzma.FORMAT_AUTO)


# compression name -> opener taking the raw file (magic numbers: convert.magic.COMPRESSION_MAGIC)
OPENERS = {
    "zlib": ZlibReader,
    "gzip": _gzip_open,
    "bz2": _bz2_open,
    "xz": _lzma_open,
    "lzma": lambda raw: _lzma_open(raw, alone=True),
    "lz4": _lz4_open,
    "zfile": _zfile_open,
}


def open_compressed(raw, compression: str):
    return OPENERS[compression](raw)


class CRLFRestored:
    """A file read with every CRLF turned back into LF (undoing a text-mode conversion), streamed."""

    def __init__(self, raw):
        self.raw, self.held = raw, b""

    def read(self, n=-1):
        data = self.held + self.raw.read(CHUNK if n is None or n < 0 else max(n, 2))
        self.held = b""
        if data.endswith(b"\r"):
            more = self.raw.read(1)
            if more:
                data += more
                if not data.endswith(b"\r\n"):
                    self.held, data = data[-1:], data[:-1]
        return data.replace(b"\r\n", b"\n")
