"""Static scan of pickle streams: which globals a file would import, decided without importing anything.

A small symbolic machine walks the opcodes the way the unpickler would (stack, marks, memo), so a
``STACK_GLOBAL`` whose module and name arrive through the memo is resolved, joblib's raw array blocks are
skipped exactly where ``joblib.load`` skips them (a payload after them is still seen), and several
streams in one file are all read. Memory stays bounded whatever the file size: long constants are
skipped rather than held, the memo keeps only what later opcodes can need once it grows large, and huge
stack frames are trimmed from the bottom.

The verdict is fail-closed: a stream that cannot be followed to its end is ``unknown``, never ``safe``.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import gzip
import io
import json
import lzma
import pickletools
import re
import struct
import zipfile
import zlib
from pathlib import Path

from .artifact import Finding, GlobalRef, PickleScan, worst
from .pickle_policy import ALLOWLIST_PATH, classify_global, is_allowed  # noqa: F401 -- the public face
from .pickle_policy import canonical, rules, verdict
from .sevenzip import MAGIC as _SEVENZIP_MAGIC

CHUNK = 1 << 20  # bytes read from the file at a time
LOOK = 300  # lookahead kept in the buffer, so any one-byte-length argument is already there
INLINE_MAX = 1 << 20  # longer constants are skipped (or streamed through a nested scan), never held
LINE_MAX = 1 << 16  # text-protocol arguments longer than this are skipped
SKIP_CHUNK = 4 << 20  # read-and-drop block when a stream cannot seek
MEMO_BUDGET = 300_000  # memo values kept unconditionally; past that only the ones later opcodes need
STACK_CAP = 100_000  # items kept in one stack frame; older ones are trimmed (they are only counted)
DICT_CAP = 256  # string keys kept per dict (plus the keys the scan reads)
LIST_CAP = 64  # items kept per list
NEST_MIN = 16  # shortest constant worth checking for an embedded pickle
NEST_DEPTH = 4  # embedded pickles followed this deep
PROBE_WINDOW = 64 << 10  # bytes of a joblib array block checked for what a plain pickle.load would run
PROBE_TAIL = 4 << 10  # and of the stream after it, where that reading must land back on joblib's
ZIP_DEPTH = 3  # archives inside archives followed this deep

# what zipfile raises on damaged or hostile archives, besides BadZipFile (RuntimeError covers encrypted
# members and NotImplementedError for unknown methods/versions; bad offsets surface as ValueError)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError, struct.error,
              OverflowError, KeyError, IndexError, zlib.error, lzma.LZMAError)

_PAD = bytes(16)
_I4 = struct.Struct("<i").unpack_from
_U4 = struct.Struct("<I").unpack_from
_U8 = struct.Struct("<Q").unpack_from
_F8 = struct.Struct(">d").unpack_from

_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
_IDENT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+\Z")
_B64 = re.compile(rb"[A-Za-z0-9+/_\-\s]+={0,2}\s*\Z")

# keys whose values the scan reads (joblib array wrappers, sklearn's version stamp): always kept
_TEXT_OPS = frozenset(b"ciILFSVgpP")  # GLOBAL INST INT LONG FLOAT STRING UNICODE GET PUT PERSID
_KEEP_KEYS = frozenset(
    ("_sklearn_version", "subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes",
     "filename")
)


# -------------------------------------------------------------------------------- errors and values


class _Corrupt(Exception):
    """The stream is structurally broken: the unpickler would fail here."""

    def __init__(self, message: str, at: int = -1):
        super().__init__(message)
        self.at = at


class _Truncated(_Corrupt):
    pass


class _Halt(Exception):
    """The scan cannot follow the stream faithfully from here (fail-closed: ``unknown``)."""


class _Ref:
    """A global the stream imports: the class or function object, held symbolically."""

    __slots__ = ("module", "name", "kind", "verdict", "why", "where", "count")

    def __init__(self, module, name, kind="", verdict="safe", why="", where=""):
        self.module, self.name, self.kind = module, name, kind
        self.verdict, self.why, self.where, self.count = verdict, why, where, 0


class _Obj:
    """What calling a global produced. Only the kinds the scan reads carry arguments and state."""

    __slots__ = ("kind", "args", "attrs", "state")

    def __init__(self, kind="", args=None, attrs=None):
        self.kind, self.args, self.attrs, self.state = kind, args, attrs, None


class _Marker:
    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what

    def __repr__(self):
        return f"<{self.what}>"


_RESULT = _Obj()  # any call result the scan need not tell apart
_ARRAY = _Obj("array")
_EVICTED = _Marker("memo value not kept")
_BIG = _Marker("long constant, skipped")
_TRIMMED = _Marker("trimmed stack items")
_OPAQUE = _Marker("opaque value")
_DYNAMIC = _Ref("<dynamic>", "<dynamic>", verdict="unsafe")

# which globals the machine must follow (by full dotted path, so attribute spellings match too)
_KIND_BY_PATH = {
    "joblib.numpy_pickle.NumpyArrayWrapper": "wrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": "wrapper",
    "joblib.numpy_pickle.NDArrayWrapper": "ndwrapper",
    "joblib.numpy_pickle.ZNDArrayWrapper": "ndwrapper",
    "joblib.numpy_pickle_compat.NDArrayWrapper": "ndwrapper",
    "joblib.numpy_pickle_compat.ZNDArrayWrapper": "ndwrapper",
    "sklearn.externals.joblib.numpy_pickle.NDArrayWrapper": "ndwrapper",
    "sklearn.externals.joblib.numpy_pickle.ZNDArrayWrapper": "ndwrapper",
    "sklearn.externals.joblib.numpy_pickle_compat.NDArrayWrapper": "ndwrapper",
    "sklearn.externals.joblib.numpy_pickle_compat.ZNDArrayWrapper": "ndwrapper",
    "numpy.dtype": "dtype",
    "numpy.core.multiarray.dtype": "dtype",
    "numpy._core.multiarray.dtype": "dtype",
    "numpy._core._internal._convert_to_stringdtype_kwargs": "strdtype",
    "numpy.core._internal._convert_to_stringdtype_kwargs": "strdtype",
    "copyreg._reconstructor": "reconstructor",
    "copyreg.__newobj__": "newobj",
    "copyreg.__newobj_ex__": "newobj",
    "functools.partial": "partial",
}
_WRAPPER_NAMES = ("NumpyArrayWrapper", "NDArrayWrapper", "ZNDArrayWrapper")
_WRAPPER_KINDS = ("wrapper", "ndwrapper", "wrapper?")


def _kind_of(module: str, name: str) -> str:
    cm, cn = canonical(module, name)
    kind = _KIND_BY_PATH.get(f"{cm}.{cn}", "")
    if not kind and cn.rsplit(".", 1)[-1] in _WRAPPER_NAMES:
        kind = "wrapper?"  # an array wrapper under a spelling the scan does not follow: fail closed
    return kind


def _precious(value) -> bool:
    """Memo values kept even past the budget: the ones later opcodes resolve globals and arrays with."""
    t = type(value)
    return t is _Ref or (t is _Obj and value.kind != "") or (t is str and value in _KEEP_KEYS)


# ------------------------------------------------------------------------------------------ source


class _Source:
    """A forward-only buffered reader. The machine borrows ``buf``/``pos`` for its hot loop and hands
    them back before anything else reads."""

    __slots__ = ("f", "buf", "pos", "base", "eof", "size", "fence", "_scratch", "_padded", "_padded_for")

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
    def of_bytes(cls, data) -> "_Source":
        src = cls(None, len(data))
        src.buf = bytes(data)
        return src

    def _read(self, n: int) -> bytes:
        try:
            return self.f.read(n)
        except Exception as exc:  # decompressors and zip members report corrupt data in many ways
            raise _Corrupt(f"unreadable data near byte {self.base + len(self.buf)}: {exc}") from None

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
            raise _Truncated(f"ends inside a {n}-byte argument at byte {self.offset()}", self.offset())
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
        """Move ``n`` bytes forward without holding them; raise _Truncated past the end."""
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
                raise _Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
            try:
                self.f.seek(n, 1)
            except Exception as exc:
                raise _Corrupt(f"cannot skip {n} bytes at byte {start}: {exc}", start) from None
            self.base += n
            return
        if self.eof:
            raise _Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
        readinto = getattr(self.f, "readinto", None)
        if readinto is not None and self._scratch is None:
            self._scratch = memoryview(bytearray(SKIP_CHUNK))
        while n:
            step = min(n, SKIP_CHUNK)
            try:
                got = readinto(self._scratch[:step]) if readinto is not None else len(self.f.read(step))
            except Exception as exc:
                raise _Corrupt(f"unreadable data near byte {self.base}: {exc}", self.base) from None
            if not got:
                self.eof = True
                raise _Truncated(f"ends inside a block of {n + have} bytes that starts at byte {start}", start)
            n -= got
            self.base += got

    def line(self) -> bytes | None:
        """Bytes through the next newline; None when the line is longer than LINE_MAX (it is skipped)."""
        i = self.buf.find(b"\n", self.pos)
        while i < 0:
            seen = len(self.buf) - self.pos
            if seen > LINE_MAX:
                return self._skip_line()
            if self.eof:
                raise _Truncated(f"ends inside a text argument at byte {self.offset()}", self.offset())
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
                raise _Truncated(f"ends inside a text argument at byte {self.base}", self.base)
            self.fill(CHUNK)


class _Region:
    """The next ``n`` bytes of a source as a file: a long constant scanned without holding it."""

    def __init__(self, src: _Source, n: int):
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


# ---------------------------------------------------------------------------------------- collector


class _Collector:
    """What one scan found, across streams, archive members and embedded pickles."""

    def __init__(self, context: str = ""):
        self.context = context
        self.refs: dict[tuple[str, str], _Ref] = {}
        self.findings: list[Finding] = []
        self.meta: dict = {}
        self.streams = 0
        self.calls = 0
        self.storages: dict = {}
        self.corrupt: str | None = None
        self.partial_wraps: set = set()  # what functools.partial objects wrap that is not an allowlisted global
        self.jumps: list = []  # (end, at, where): joblib array bytes that a plain pickle.load reads as a constant
        # ending at byte ``end``, in a stream whose length was not known then

    def finding(self, severity: str, what: str, where: str = "") -> None:
        if len(self.findings) < 1000:
            self.findings.append(Finding(what, severity, where))

    def merge(self, other: "_Collector", nested: bool = False) -> None:
        for key, ref in other.refs.items():
            mine = self.refs.get(key)
            if mine is None:
                self.refs[key] = ref
            else:
                mine.count += ref.count
        for f in other.findings:
            self.finding(f.severity, f.what, f.where)
        for k, v in other.meta.items():
            if k in ("joblib_arrays", "persistent_ids", "nested_pickles"):
                self.meta[k] = self.meta.get(k, 0) + v
            elif k == "_sklearn_versions":
                seen = self.meta.setdefault(k, [])
                seen.extend(x for x in v if x not in seen)
            else:
                self.meta.setdefault(k, v)
        self.storages.update(other.storages)
        self.partial_wraps |= other.partial_wraps
        if nested:
            self.meta["nested_pickles"] = self.meta.get("nested_pickles", 0) + 1


# ------------------------------------------------------------------------------------------ machine


class _Machine:
    """Walks one pickle stream (and whatever it embeds), recording into a collector."""

    def __init__(self, out: _Collector, depth: int = 0, probe: bool = False):
        self.out = out
        self.depth = depth
        self.probe = probe  # an embedded candidate: only well-formed globals count
        self.label = ""
        self.mkeys = None
        self.ring: list = [None] * 16  # (index, string) of the latest memo strings not kept
        self.protocol = None

    # -- the hot loop ------------------------------------------------------------------------------

    def run(self, src: _Source, label: str, joblib: bool = True):
        """Walk one stream to STOP and return its value; raise _Corrupt / _Halt."""
        self.label = label
        self.mkeys, self.ring = None, [None] * 16
        ring = self.ring
        contig = True  # memo keys are exactly 0..mlen-1 (self.mkeys is None)
        self.protocol = None
        out = self.out
        stack: list = []
        metastack: list = []
        push = stack.append
        memo: dict = {}
        mlen = 0
        mfree = MEMO_BUDGET
        src.fence = -1
        binput = False
        I4, U4, U8, F8 = _I4, _U4, _U8, _F8
        src.fill(LOOK)
        buf, pos, base, n, lim = src.borrow()
        try:
            while True:
                if pos > lim:
                    src.pos = pos
                    if src.fence >= 0 and base + pos >= src.fence:
                        self._frame_end(src, base + pos)
                    if pos >= n and src.eof:
                        what = "without STOP" if pos == n else "inside an argument"
                        raise _Truncated(f"ends {what} at byte {base + n}", base + n)
                    src.fill(LOOK)
                    if len(stack) > STACK_CAP:
                        _trim(stack)
                    buf, pos, base, n, lim = src.borrow()
                    if pos >= n:
                        raise _Truncated(f"ends without STOP at byte {base + n}", base + n)
                op = buf[pos]
                pos += 1
                if op == 0x94:  # MEMOIZE
                    if contig:
                        if mfree > 0:
                            memo[mlen] = stack[-1]
                            mfree -= 1
                        else:  # past the budget: keep only what later opcodes need
                            v = stack[-1]
                            t = type(v)
                            if t is str:
                                if v in _KEEP_KEYS:
                                    memo[mlen] = v
                                else:
                                    ring[mlen & 15] = (mlen, v)
                            elif t is _Ref or t is _Obj and v.kind:
                                memo[mlen] = v
                        mlen += 1
                    else:
                        mlen, mfree = self._put(memo, mlen, mfree, mlen, stack[-1])
                elif op == 0x8C:  # SHORT_BINUNICODE
                    k = buf[pos]
                    e = pos + 1 + k
                    if e > n:
                        raise _Truncated(f"ends inside a string at byte {base + pos}", base + pos)
                    s = buf[pos + 1:e].decode("utf-8", "surrogatepass")
                    pos = e
                    if k >= NEST_MIN:
                        self._consider(s, base + pos)
                    push(s)
                    if buf[e] == 0x94 and contig:  # MEMOIZE right after, as protocol 4+ writes it: fused
                        if mfree > 0:
                            memo[mlen] = s
                            mfree -= 1
                        elif s in _KEEP_KEYS:
                            memo[mlen] = s
                        else:
                            ring[mlen & 15] = (mlen, s)
                        mlen += 1
                        pos = e + 1
                elif op == 0x68:  # BINGET
                    k = buf[pos]
                    pos += 1
                    v = memo.get(k, _EVICTED)
                    push(v if v is not _EVICTED else self._miss(mlen, k))
                elif op == 0x4B:  # BININT1
                    push(buf[pos])
                    pos += 1
                elif op == 0x47:  # BINFLOAT
                    push(F8(buf, pos)[0])
                    pos += 8
                elif op == 0x71:  # BINPUT
                    k = buf[pos]
                    pos += 1
                    binput = True
                    if contig and mfree > 0 and k <= mlen:
                        memo[k] = stack[-1]
                        mfree -= 1
                        if k == mlen:
                            mlen += 1
                    else:
                        mlen, mfree = self._put(memo, mlen, mfree, k, stack[-1])
                        contig = self.mkeys is None
                elif op == 0x28:  # MARK
                    metastack.append(stack)
                    stack = []
                    push = stack.append
                elif op == 0x65:  # APPENDS
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    t = stack[-1]
                    if type(t) is list and len(t) < LIST_CAP:
                        t.extend(items[:LIST_CAP - len(t)])
                elif op == 0x75:  # SETITEMS
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    if len(items) & 1:
                        raise _Corrupt(f"odd number of items for SETITEMS at byte {base + pos - 1}", base + pos)
                    t = stack[-1]
                    if type(t) is dict:
                        _setitems(t, items)
                elif op == 0x7D:  # EMPTY_DICT
                    push({})
                elif op == 0x5D:  # EMPTY_LIST
                    push([])
                elif op == 0x86:  # TUPLE2
                    v = stack.pop()
                    stack[-1] = (stack[-1], v)
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
                elif op == 0x87:  # TUPLE3
                    v = stack.pop()
                    w = stack.pop()
                    stack[-1] = (stack[-1], w, v)
                elif op == 0x4E:  # NONE
                    push(None)
                elif op == 0x4A:  # BININT
                    push(I4(buf, pos)[0])
                    pos += 4
                elif op == 0x88:  # NEWTRUE
                    push(True)
                elif op == 0x89:  # NEWFALSE
                    push(False)
                elif op == 0x4D:  # BININT2
                    push(buf[pos] | (buf[pos + 1] << 8))
                    pos += 2
                elif op == 0x29:  # EMPTY_TUPLE
                    push(())
                elif op == 0x43 or op == 0x55:  # SHORT_BINBYTES, SHORT_BINSTRING
                    k = buf[pos]
                    e = pos + 1 + k
                    if e > n:
                        raise _Truncated(f"ends inside a string at byte {base + pos}", base + pos)
                    v = buf[pos + 1:e]
                    pos = e
                    if op == 0x55:
                        v = v.decode("latin-1")
                    if k >= NEST_MIN:
                        self._consider(v, base + pos)
                    push(v)
                elif op == 0x62:  # BUILD
                    state = stack.pop()
                    inst = stack[-1]
                    out.calls += 1
                    t = type(inst)
                    if t is _Obj:
                        if type(state) is dict:
                            if "_sklearn_version" in state:
                                self._sklearn(state["_sklearn_version"])
                        elif type(state) is tuple and len(state) == 2 and type(state[0]) is dict:
                            if "_sklearn_version" in state[0]:
                                self._sklearn(state[0]["_sklearn_version"])
                        if inst.kind:
                            kind = inst.kind
                            if kind == "dtype":
                                inst.state = state
                            elif kind == "partial":
                                self._partial_wraps(state[0] if type(state) is tuple and state else None)
                            elif kind in _WRAPPER_KINDS:
                                _apply_state(inst, state)
                                if joblib:
                                    src.pos = pos
                                    self._joblib_array(src, inst)
                                    buf, pos, base, n, lim = src.borrow()
                                    stack[-1] = _ARRAY
                    elif t is _Ref:
                        self._note("suspicious", f"BUILD sets attributes on the imported {_qual(inst)} itself",
                                   base + pos)
                elif op == 0x52:  # REDUCE
                    args = stack.pop()
                    func = stack[-1]
                    out.calls += 1
                    if type(func) is _Ref and func.kind:
                        stack[-1] = self._call(func, args)
                    else:
                        stack[-1] = _RESULT
                elif op == 0x61:  # APPEND
                    v = stack.pop()
                    t = stack[-1]
                    if type(t) is list and len(t) < LIST_CAP:
                        t.append(v)
                elif op == 0x73:  # SETITEM
                    v = stack.pop()
                    k = stack.pop()
                    t = stack[-1]
                    if type(t) is dict and type(k) is str and (len(t) < DICT_CAP or k in _KEEP_KEYS):
                        t[k] = v
                elif op == 0x93:  # STACK_GLOBAL
                    name = stack.pop()
                    module = stack[-1]
                    if type(name) is str and type(module) is str:
                        if mfree <= 0:
                            self._promote(memo, module, name)
                        stack[-1] = self._global(module, name, base + pos - 1)
                    else:
                        stack[-1] = self._dynamic(module, name, base + pos - 1)
                elif op == 0x81:  # NEWOBJ
                    args = stack.pop()
                    cls = stack[-1]
                    out.calls += 1
                    if type(cls) is _Ref and cls.kind == "partial":
                        stack[-1] = self._call(cls, args)
                    else:
                        stack[-1] = _new(cls)
                elif op == 0x58 or op == 0x42:  # BINUNICODE, BINBYTES
                    k = U4(buf, pos)[0]
                    pos += 4
                    if k <= INLINE_MAX and pos + k <= n:
                        v = buf[pos:pos + k]
                        pos += k
                    else:
                        src.pos = pos
                        v = self._long(src, k)
                        buf, pos, base, n, lim = src.borrow()
                    if v is not _BIG:
                        if op == 0x58:
                            v = v.decode("utf-8", "surrogatepass")
                        if k >= NEST_MIN:
                            self._consider(v, base + pos)
                    push(v)
                elif op == 0x8D or op == 0x8E or op == 0x96:  # BINUNICODE8, BINBYTES8, BYTEARRAY8
                    k = U8(buf, pos)[0]
                    pos += 8
                    if k <= INLINE_MAX and pos + k <= n:
                        v = buf[pos:pos + k]
                        pos += k
                    else:
                        src.pos = pos
                        v = self._long(src, k)
                        buf, pos, base, n, lim = src.borrow()
                    if v is not _BIG:
                        if op == 0x8D:
                            v = v.decode("utf-8", "surrogatepass")
                        if k >= NEST_MIN:
                            self._consider(v, base + pos)
                    push(v)
                elif op == 0x95:  # FRAME
                    k = U8(buf, pos)[0]
                    pos += 8
                    if src.fence >= 0:
                        self._diverge(f"a FRAME starts at byte {base + pos - 9}, before the frame open since then "
                                      f"ends (byte {src.fence})", base + pos - 9)
                    src.fence = base + pos + k
                    if src.fence - base - 1 < lim:
                        lim = src.fence - base - 1
                elif op == 0x2E:  # STOP
                    value = stack.pop()
                    src.pos = pos
                    if src.fence >= 0:
                        if base + pos < src.fence:
                            self._diverge(f"STOP at byte {base + pos - 1} inside a FRAME that declares "
                                          f"{src.fence - base - pos} more bytes", base + pos - 1)
                        src.fence = -1
                    if self.protocol is None:
                        self.protocol = 1 if binput else 0
                    return value
                elif op == 0x80:  # PROTO
                    p = buf[pos]
                    pos += 1
                    if p > 5:
                        raise _Corrupt(f"unsupported pickle protocol {p} at byte {base + pos - 2}", base + pos - 2)
                    if self.protocol is None:
                        self.protocol = p
                elif op == 0x30:  # POP
                    if stack:
                        stack.pop()
                    else:
                        stack = metastack.pop()
                        push = stack.append
                elif op == 0x31:  # POP_MARK
                    stack = metastack.pop()
                    push = stack.append
                elif op == 0x32:  # DUP
                    push(stack[-1])
                elif op == 0x74 or op == 0x6C or op == 0x64 or op == 0x91:  # TUPLE, LIST, DICT, FROZENSET
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    if op == 0x74:
                        push(tuple(items))
                    elif op == 0x6C:
                        push(items[:LIST_CAP])
                    elif op == 0x64:
                        if len(items) & 1:
                            raise _Corrupt(f"odd number of items for DICT at byte {base + pos - 1}", base + pos)
                        d = {}
                        _setitems(d, items)
                        push(d)
                    else:
                        push(_OPAQUE)
                elif op == 0x8F:  # EMPTY_SET
                    push(_OPAQUE)
                elif op == 0x90:  # ADDITEMS
                    stack = metastack.pop()
                    push = stack.append
                    stack[-1]  # noqa: B018 -- the target must exist, as for the unpickler
                elif op == 0x6A or op == 0x72:  # LONG_BINGET, LONG_BINPUT
                    k = U4(buf, pos)[0]
                    pos += 4
                    if op == 0x6A:
                        v = memo.get(k, _EVICTED)
                        push(v if v is not _EVICTED else self._miss(mlen, k))
                    elif contig and mfree > 0 and k <= mlen:
                        binput = True
                        memo[k] = stack[-1]
                        mfree -= 1
                        if k == mlen:
                            mlen += 1
                    else:
                        binput = True
                        mlen, mfree = self._put(memo, mlen, mfree, k, stack[-1])
                        contig = self.mkeys is None
                elif op == 0x8A:  # LONG1
                    k = buf[pos]
                    e = pos + 1 + k
                    if e > n:
                        raise _Truncated(f"ends inside an integer at byte {base + pos}", base + pos)
                    push(int.from_bytes(buf[pos + 1:e], "little", signed=True))
                    pos = e
                elif op == 0x8B or op == 0x54:  # LONG4, BINSTRING (signed lengths)
                    k = I4(buf, pos)[0]
                    pos += 4
                    if k < 0:
                        raise _Corrupt(f"negative length at byte {base + pos - 5}", base + pos - 5)
                    src.pos = pos
                    v = self._long(src, k) if k > INLINE_MAX else src.take(k)
                    buf, pos, base, n, lim = src.borrow()
                    if v is not _BIG:
                        if op == 0x8B:
                            v = int.from_bytes(v, "little", signed=True)
                        else:
                            v = v.decode("latin-1")
                            if k >= NEST_MIN:
                                self._consider(v, base + pos)
                    push(v)
                elif op == 0x51:  # BINPERSID
                    push(self._persistent(stack.pop()))
                elif op == 0x6F:  # OBJ
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    out.calls += 1
                    cls = items[0]
                    push(self._instantiate(cls, items[1:]))
                elif op in _TEXT_OPS:
                    src.pos = pos
                    v = self._text_op(op, src, stack, memo, mlen)
                    buf, pos, base, n, lim = src.borrow()
                    if op == 0x70:  # PUT
                        mlen, mfree = self._put(memo, mlen, mfree, v, stack[-1])
                        contig = self.mkeys is None
                    elif op == 0x69:  # INST
                        items = stack
                        stack = metastack.pop()
                        push = stack.append
                        out.calls += 1
                        push(self._instantiate(v, items))
                    else:
                        push(v)
                elif op == 0x92:  # NEWOBJ_EX
                    stack.pop()
                    args = stack.pop()
                    cls = stack[-1]
                    out.calls += 1
                    if type(cls) is _Ref and cls.kind == "partial":
                        stack[-1] = self._call(cls, args)
                    else:
                        stack[-1] = _new(cls)
                elif op == 0x82 or op == 0x83 or op == 0x84:  # EXT1, EXT2, EXT4
                    size = 1 if op == 0x82 else 2 if op == 0x83 else 4
                    code = int.from_bytes(buf[pos:pos + size], "little")
                    if pos + size > n:
                        raise _Truncated(f"ends inside an EXT code at byte {base + pos}", base + pos)
                    pos += size
                    if code <= 0:
                        raise _Corrupt(f"EXT code {code} at byte {base + pos}", base + pos)
                    self._note("suspicious", f"EXT opcode imports the global registered as extension code {code} "
                               "(copyreg.add_extension); the scan cannot tell which", base + pos)
                    push(_DYNAMIC)
                elif op == 0x97:  # NEXT_BUFFER
                    out.meta["out_of_band_buffers"] = out.meta.get("out_of_band_buffers", 0) + 1
                    push(_OPAQUE)
                elif op == 0x98:  # READONLY_BUFFER
                    stack[-1]  # noqa: B018
                else:
                    raise _Corrupt(f"unknown opcode 0x{op:02x} at byte {base + pos - 1}", base + pos - 1)
        except IndexError:  # the buffer is padded, so this is the stack
            raise _Corrupt(f"stack underflow or missing MARK near byte {base + pos - 1}", base + pos - 1) from None
        except struct.error:
            raise _Truncated(f"ends inside an argument at byte {base + pos}", base + pos) from None
        except UnicodeDecodeError:
            raise _Corrupt(f"invalid UTF-8 string before byte {base + pos}", base + pos) from None
        except (ValueError, OverflowError) as exc:
            raise _Corrupt(f"bad argument before byte {base + pos}: {exc}", base + pos) from None

    # -- frames ------------------------------------------------------------------------------------

    def _frame_end(self, src: _Source, at: int) -> None:
        """The first opcode at or past an open frame's end starts at ``at``: it must start exactly there."""
        if at > src.fence:
            self._diverge(f"an opcode runs across the end of its FRAME (byte {src.fence}) up to byte {at}", src.fence)
        src.fence = -1

    def _diverge(self, what: str, at: int) -> None:
        """Frames that do not match the opcodes: pickle's C unpickler ignores frame bounds, Python's unpickler
        (which joblib.load uses) enforces them and reads the rest from elsewhere. Two loaders, two readings."""
        self.out.meta["frame_mismatches"] = self.out.meta.get("frame_mismatches", 0) + 1
        self._note("unsafe", f"parser divergence: {what}; pickle.load and joblib.load would read different "
                   "opcodes from here", at)

    # -- text protocol (0/1) opcodes ---------------------------------------------------------------

    def _text_op(self, op: int, src: _Source, stack: list, memo: dict, mlen: int):
        """Opcodes with newline-terminated arguments. Returns the value to push (or the PUT index)."""
        at = src.offset() - 1
        line = src.line()
        if op == 0x63 or op == 0x69:  # GLOBAL, INST
            second = src.line()
            if line is None or second is None:
                raise _Halt(f"global name longer than {LINE_MAX} bytes at byte {at}")
            codec = "utf-8" if op == 0x63 else "ascii"
            module, name = line[:-1].decode(codec), second[:-1].decode(codec)
            return self._global(module, name, at)
        if line is None:
            if op in (0x53, 0x56):  # STRING, UNICODE
                return _BIG
            raise _Corrupt(f"text argument longer than {LINE_MAX} bytes at byte {at}", at)
        body = line[:-1]
        if op == 0x49:  # INT
            return False if line == b"00\n" else True if line == b"01\n" else int(line, 0)
        if op == 0x4C:  # LONG
            return int(body[:-1] if body.endswith(b"L") else body, 0)
        if op == 0x46:  # FLOAT
            return float(body)
        if op == 0x53:  # STRING
            if len(body) < 2 or body[0] != body[-1] or body[:1] not in (b"'", b'"'):
                raise _Corrupt(f"STRING argument not quoted at byte {at}", at)
            value = codecs.escape_decode(body[1:-1])[0].decode("latin-1")
            if len(value) >= NEST_MIN:
                self._consider(value, at)
            return value
        if op == 0x56:  # UNICODE
            value = str(body, "raw-unicode-escape")
            if len(value) >= NEST_MIN:
                self._consider(value, at)
            return value
        if op == 0x67:  # GET
            k = int(body)
            v = memo.get(k, _EVICTED)
            return v if v is not _EVICTED else self._miss(mlen, k)
        if op == 0x70:  # PUT
            k = int(body)
            if k < 0:
                raise _Corrupt(f"negative PUT index at byte {at}", at)
            return k
        if op == 0x50:  # PERSID
            return self._persistent(body.decode("ascii"))
        raise _Corrupt(f"unknown opcode 0x{op:02x} at byte {at}", at)

    # -- memo beyond the fast path -----------------------------------------------------------------

    def _put(self, memo: dict, mlen: int, mfree: int, k: int, value) -> tuple[int, int]:
        """A memo write off the fast path (irregular indexes, or past the budget). Returns the new
        (len(memo), budget left)."""
        keys = self.mkeys
        if keys is None and k > mlen:
            if mlen > 1_000_000:
                raise _Halt("memo indexes too irregular to follow")
            keys = self.mkeys = set(range(mlen))
        if keys is None:
            new = k == mlen
        else:
            new = k not in keys
            if new:
                keys.add(k)
        if new:
            mlen += 1
        if mfree > 0 or _precious(value):
            memo[k] = value
            mfree -= 1
        else:
            memo.pop(k, None)
            if type(value) is str:
                self.ring[k & 15] = (k, value)
        return mlen, mfree

    def _miss(self, mlen: int, k: int):
        exists = (0 <= k < mlen) if self.mkeys is None else (k in self.mkeys)
        if exists:
            return _EVICTED
        raise _Corrupt(f"memo key {k} read before it was stored", -1)

    def _promote(self, memo: dict, module: str, name: str) -> None:
        """Keep strings just used as a global's module/name: later opcodes fetch them from the memo."""
        for entry in self.ring:
            if entry is not None and (entry[1] is module or entry[1] is name):
                memo[entry[0]] = entry[1]

    # -- globals and calls -------------------------------------------------------------------------

    def _where(self, at: int) -> str:
        return f"{self.label} @ byte {at}"

    def _note(self, severity: str, what: str, at: int) -> None:
        self.out.finding(severity, what, self._where(at))

    def _global(self, module: str, name: str, at: int, label: str | None = None) -> _Ref:
        out = self.out
        key = (module, name)
        ref = out.refs.get(key)
        if ref is None:
            if self.probe and not (_IDENT_PATH.match(module) and _IDENT_PATH.match(name)):
                raise _Corrupt("not a module path", at)
            verdict_, why = verdict(module, name, out.context)
            where = f"{label} @ byte {at}" if label else self._where(at)
            ref = _Ref(module, name, _kind_of(module, name), verdict_, why, where)
            out.refs[key] = ref
        ref.count += 1
        return ref

    def _dynamic(self, module, name, at: int) -> _Ref:
        if module is _EVICTED or name is _EVICTED:
            raise _Halt(f"a global at byte {at} takes its name from a memo value the scan did not keep")
        self._note("unsafe", "STACK_GLOBAL with operands that are not plain strings (dynamic global: "
                   f"{type(module).__name__}, {type(name).__name__})", at)
        return _DYNAMIC

    def _call(self, func: _Ref, args):
        """REDUCE of a global the scan follows (dtypes, array wrappers, copyreg helpers)."""
        kind = func.kind
        if type(args) is not tuple:
            return _RESULT
        if kind == "dtype":
            return _Obj("dtype", args)
        if kind == "strdtype":
            return _Obj("strdtype", args)
        if kind == "wrapper":
            if not 4 <= len(args) <= 6:
                return _RESULT  # the constructor would raise
            names = ("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes")
            attrs = {"allow_mmap": False, "numpy_array_alignment_bytes": 16}
            attrs.update(zip(names, args))
            return _Obj("wrapper", None, attrs)
        if kind == "ndwrapper":
            return _Obj("ndwrapper", None, dict(zip(("filename", "subclass", "allow_mmap"), args)))
        if kind == "wrapper?":
            return _Obj("wrapper?", None, {})
        if kind == "newobj" and args and type(args[0]) is _Ref and args[0].kind == "partial":
            return self._call(args[0], args[1:])  # copyreg.__newobj__(partial, func, ...)
        if kind in ("reconstructor", "newobj") and args:
            return _new(args[0])
        if kind == "partial":
            self._partial_wraps(args[0] if args else None)
            return _Obj("partial")
        return _RESULT

    def _partial_wraps(self, func) -> None:
        """functools.partial is safe in a file only while everything it wraps is an allowlisted global."""
        if not (type(func) is _Ref and func.verdict == "safe" and func.kind != "partial"):
            self.out.partial_wraps.add(_qual(func) if type(func) is _Ref else f"a computed {type(func).__name__}")

    def _instantiate(self, cls, args: list):
        """OBJ / INST: ``cls(*args)`` when there are arguments, else ``cls.__new__(cls)``."""
        if type(cls) is _Ref and cls.kind:
            return self._call(cls, tuple(args)) if args else _new(cls)
        return _RESULT

    def _persistent(self, pid):
        out = self.out
        out.meta["persistent_ids"] = out.meta.get("persistent_ids", 0) + 1
        if type(pid) is tuple and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            storage_type, key, numel = pid[1], pid[2], pid[4]
            if type(key) in (str, bytes) and type(numel) is int and len(out.storages) < 1_000_000:
                tname = storage_type.name if type(storage_type) is _Ref else ""
                out.storages[key] = (tname, numel)
        return _OPAQUE

    def _sklearn(self, version) -> None:
        if type(version) is str:
            seen = self.out.meta.setdefault("_sklearn_versions", [])
            if version not in seen and len(seen) < 16:
                seen.append(version)

    # -- long constants and embedded pickles -------------------------------------------------------

    def _long(self, src: _Source, k: int):
        """A constant of ``k`` bytes: held when small, else skipped (scanned in passing if it starts
        like a pickle)."""
        if k <= INLINE_MAX:
            return src.take(k)
        at = src.offset()
        head = src.peek(2)
        if len(head) == 2 and head[0] == 0x80 and head[1] <= 5 and self.depth < NEST_DEPTH:
            region = _Region(src, k)
            self._nested(_Source(region), f"long constant at byte {at}", at)
            region.drain()
        else:
            src.skip(k)
        return _BIG

    def _consider(self, value, at: int) -> None:
        """Scan a constant that is, or hex/base64-decodes to, a pickle stream."""
        if type(value) is str:
            if "\n" not in value and "\x93" not in value and (len(value) < 24 or " " in value):
                return
            try:
                data = value.encode("latin-1")
            except UnicodeEncodeError:
                data = value.encode("utf-8", "surrogatepass")
        else:
            data = bytes(value)
        for how, payload in _decodings(data):
            if payload[0] in _OPCODES and (b"\n" in payload or b"\x93" in payload):
                if self.depth >= NEST_DEPTH:
                    self._note("unknown", f"a pickle nested more than {NEST_DEPTH} deep was not scanned", at)
                    return
                self._nested(_Source.of_bytes(payload), f"{how} constant before byte {at}", at)

    def _nested(self, src: _Source, what: str, at: int) -> None:
        """Probe an embedded candidate; keep what it imports if it really is a pickle (it reaches STOP,
        or calls something before it breaks, as a real unpickler would have)."""
        child = _Collector(self.out.context)
        machine = _Machine(child, self.depth + 1, probe=True)
        label = f"nested pickle ({what}, {self.label})"
        try:
            machine.run(src, label, joblib=False)
            complete = True
        except (_Corrupt, _Halt):
            complete = False
        imports = child.refs or any(f.severity == "unsafe" for f in child.findings)
        if not imports or not (complete or child.calls):
            return
        if not complete:
            child.finding("unknown", "embedded pickle breaks off after importing globals", label)
        self.out.merge(child, nested=True)

    # -- joblib arrays -----------------------------------------------------------------------------

    def _joblib_array(self, src: _Source, inst: _Obj) -> None:
        """Step over the raw array block joblib writes right after a wrapper's BUILD."""
        at = src.offset()
        out = self.out
        attrs = inst.attrs or {}
        if inst.kind == "ndwrapper":
            name = attrs.get("filename")
            files = out.meta.setdefault("joblib_companion_files", [])
            if type(name) is str and len(files) < 1000:
                files.append(name)
            return
        if inst.kind != "wrapper":
            raise _Halt(f"an array wrapper under an unfamiliar name is rebuilt at byte {at}; joblib would read "
                        "raw bytes after it that the scan cannot size")
        if src.fence > at:
            raise _Halt(f"joblib array block inside a pickle frame at byte {at}: the loader would read it from "
                        "another place")
        if src.fence >= 0:  # joblib ends the frame right before the block (the block is outside any frame)
            self._frame_end(src, at)
        info = _dtype_info(attrs.get("dtype"))
        count = _element_count(attrs.get("shape"))
        if info is None or count is None:
            raise _Halt(f"cannot work out the size of the joblib array block at byte {at} (shape "
                        f"{_short(attrs.get('shape'))}, dtype {_short(attrs.get('dtype'))})")
        itemsize, hasobject = info
        out.meta["joblib_arrays"] = out.meta.get("joblib_arrays", 0) + 1
        if hasobject:  # an object array is a nested pickle stream, read by a fresh unpickler
            _Machine(out, self.depth).run(src, f"{self.label} > object array at byte {at}", joblib=False)
            return
        if count * itemsize < 0:
            raise _Corrupt(f"negative array size at byte {at}", at)
        if attrs.get("numpy_array_alignment_bytes") is not None:  # joblib >= 1.2: one padding-length byte
            pad = src.peek(1)
            if not pad:
                raise _Truncated(f"ends before the array block at byte {at}", at)
            self._plain_view(src, at, 1 + pad[0] + count * itemsize)
            src.skip(1 + pad[0])
        else:
            self._plain_view(src, at, count * itemsize)
        src.skip(count * itemsize)

    def _plain_view(self, src: _Source, at: int, region: int) -> None:
        """What a plain ``pickle.load`` makes of the ``region`` bytes joblib reads as array data: it parses
        them as opcodes. Imports reached that way are recorded, until that reading lands back on an opcode
        boundary of joblib's reading (from there both see the same opcodes, scanned anyway) or fails."""
        window = src.peek(min(region, PROBE_WINDOW) + PROBE_TAIL)
        if not window or window[0] not in _OPCODES:
            return  # the usual case: joblib >= 1.2 puts a padding-length byte (1..16) first
        label = f"{self.label} (joblib array bytes read as opcodes)"
        left = None if src.size is None else src.size - src.offset()
        joblib_ops = None
        recent: list = [None, None]  # what the last two value-pushing opcodes pushed (strings, or "memo")
        f = io.BytesIO(window)
        try:
            for opcode, arg, p in pickletools.genops(f):
                if p >= region:
                    if joblib_ops is None:
                        joblib_ops = _op_starts(window, region)
                    if p in joblib_ops:
                        return  # resynchronised
                    if p > max(joblib_ops, default=region):
                        break
                name = opcode.name
                if name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    if _IDENT_PATH.match(module) and _IDENT_PATH.match(attr):
                        self._global(module, attr, at + p, label)
                elif name == "STACK_GLOBAL":
                    module, attr = recent
                    if type(module) is str and type(attr) is str and module != "memo" != attr:
                        self._global(module, attr, at + p, label)
                    elif "memo" in recent:
                        self._note("suspicious", "joblib array bytes also parse as opcodes that import a global "
                                   "named by memo values (a plain pickle.load would run them)", at + p)
                elif name == "STOP":
                    return
                if name in _PUSHES_STRING:
                    recent = [recent[1], arg]
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    recent = [recent[1], "memo"]
                elif name not in _NO_PUSH:
                    recent = [recent[1], None]
        except ValueError as exc:
            wanted = re.search(r"expected (\d+) bytes.*only (\d+) remain", str(exc))
            if wanted is None and "no newline" not in str(exc):
                return  # an invalid opcode or argument: a plain pickle.load fails there too
            if wanted:  # an argument that ends at byte ``end``: past the end of the data, a plain pickle.load fails
                end = at + len(window) - int(wanted.group(2)) + int(wanted.group(1))
                if left is not None and end > at + left:
                    return
                if left is None:  # the size of a decompressed stream is known once it is read: decided then
                    self.out.jumps.append((end, at, self._where(at)))
                    return
            if len(window) < min(region, PROBE_WINDOW) + PROBE_TAIL:
                return  # the file ends inside the window
        self._note("unknown", f"joblib array bytes at byte {at} parse as pickle opcodes that a plain pickle.load "
                   "would read differently; not followed", at)


_PUSHES_STRING = frozenset(("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                            "SHORT_BINSTRING"))
_NO_PUSH = frozenset(("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT", "FRAME", "PROTO"))


def _op_starts(window: bytes, start: int) -> set[int]:
    """Opcode offsets of the stream as joblib reads it, from ``start`` to the end of ``window``."""
    starts = set()
    try:
        for _, _, p in pickletools.genops(io.BytesIO(window[start:])):
            starts.add(start + p)
    except ValueError:
        pass
    return starts


def _trim(stack: list) -> None:
    """Drop the oldest items of a huge frame (an odd count, so key/value pairs stay paired)."""
    excess = len(stack) - STACK_CAP // 2
    excess += 1 - excess % 2
    stack[:excess] = [_TRIMMED]


def _setitems(d: dict, items: list) -> None:
    for i in range(0, len(items), 2):
        k = items[i]
        if type(k) is str and (len(d) < DICT_CAP or k in _KEEP_KEYS):
            d[k] = items[i + 1]


def _new(cls):
    """``cls.__new__(cls)``: an object of a followed kind, without constructor arguments."""
    if type(cls) is _Ref and cls.kind in _WRAPPER_KINDS:
        return _Obj(cls.kind, None, {})
    return _RESULT


def _apply_state(inst: _Obj, state) -> None:
    """BUILD without __setstate__: update __dict__ (and slot state), as the unpickler does."""
    attrs = inst.attrs if inst.attrs is not None else {}
    inst.attrs = attrs
    slots = None
    if type(state) is tuple and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if not part:
            continue
        if type(part) is not dict:
            attrs["shape"] = _OPAQUE  # the loader would fail or do something the scan cannot size
            continue
        attrs.update(part)


def _qual(ref: _Ref) -> str:
    return f"{ref.module}.{ref.name}"


def _short(value) -> str:
    text = repr(value) if not isinstance(value, _Obj) else f"<{value.kind or 'object'}>"
    return text if len(text) < 60 else text[:57] + "..."


def _decodings(data: bytes):
    """The ways a constant may hold a pickle: as is, hex, base64."""
    if not data:
        return
    yield "raw", data
    if len(data) >= 24:
        stripped = data.strip()
        if len(stripped) % 2 == 0 and _HEX.match(stripped):
            try:
                yield "hex", binascii.unhexlify(stripped)
            except (binascii.Error, ValueError):
                pass
        elif _B64.match(stripped):
            try:
                decoded = base64.b64decode(stripped, altchars=b"-_" if b"-" in stripped or b"_" in stripped
                                           else None, validate=False)
            except (binascii.Error, ValueError):
                decoded = b""
            if decoded:
                yield "base64", decoded


def _element_count(shape) -> int | None:
    if type(shape) not in (tuple, list):
        return None
    count = 1
    for dim in shape:
        if type(dim) not in (int, bool):
            return None
        count *= int(dim)
    if any(int(d) < 0 for d in shape) or count >= 1 << 63:
        return None
    return count


_TYPESTR = re.compile(r"([<>|=]?)([biufcOMmUSV])(\d*)(\[\w+\])?\Z")
_NATURAL_SIZES = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8, 16}, "c": {8, 16, 32}}
_POINTER = struct.calcsize("P")


def _dtype_info(dtype) -> tuple[int, bool] | None:
    """(itemsize, hasobject) of a pickled ``numpy.dtype``, as numpy itself would rebuild it, or None.

    numpy takes ``hasobject`` from the flags in the state and, for flexible kinds (U, S, V), the size
    from the state's ``elsize``; other kinds keep their natural size whatever the state says."""
    if type(dtype) is not _Obj:
        return None
    if dtype.kind == "strdtype":
        return 16, True
    if dtype.kind != "dtype" or not dtype.args or type(dtype.args[0]) is not str:
        return None
    m = _TYPESTR.match(dtype.args[0])
    if not m:
        return None
    _, kind, digits, unit = m.groups()
    if unit and kind not in "Mm":
        return None
    if kind in _NATURAL_SIZES:
        if not digits or int(digits) not in _NATURAL_SIZES[kind]:
            return None
        size = int(digits)
    elif kind == "O":
        if digits not in ("", str(_POINTER)):
            return None
        size = _POINTER
    elif kind in "Mm":
        if digits not in ("", "8"):
            return None
        size = 8
    else:  # U, S, V
        size = int(digits) * (4 if kind == "U" else 1) if digits else 0
    hasobject = kind == "O"
    state = dtype.state
    if state is not None:
        if type(state) is not tuple or len(state) < 8 or state[0] not in (3, 4):
            return None
        elsize, flags = state[5], state[7]
        if type(elsize) is not int or type(flags) is not int:
            return None
        hasobject = bool(flags & 1)
        if kind in "USV":
            size = elsize
    if size <= 0 and not hasobject:
        return None
    return size, hasobject


# ------------------------------------------------------------------------------------ stream driver


def _stream_label(prefix: str, k: int) -> str:
    if not prefix:
        return f"stream {k}"
    return prefix if k == 1 else f"{prefix} (stream {k})"


def _scan_streams(out: _Collector, src: _Source, prefix: str = "", limit: int | None = None,
                  joblib: bool = True) -> list:
    """Every pickle stream in ``src``, one after another (a loader may read more than the first).
    Returns the streams' values (symbolic)."""
    values = []
    machine = _Machine(out)
    k = 0
    jumps = len(out.jumps)
    while limit is None or k < limit:
        if src.at_end():
            if k == 0:
                _broken(out, "no pickle stream in it", prefix)
            break
        k += 1
        start = src.offset()
        label = _stream_label(prefix, k)
        known = len(out.refs)
        try:
            values.append(machine.run(src, label, joblib))
        except _Halt as exc:
            out.finding("unknown", f"scan stopped: {exc}", label)
            break
        except _Corrupt as exc:
            junk = len(out.refs) == known and (exc.at < 0 or exc.at - start < 16)
            if k > 1 and limit is None and junk:
                out.finding("info", "bytes after the last pickle stream are not a pickle (no unpickler reads "
                            "them)", f"{label} @ byte {start}")
            elif k > 1 and limit is None:
                out.finding("unknown", f"the bytes after pickle stream {k - 1} start another stream that is "
                            f"broken: {exc}", label)
            else:
                _broken(out, str(exc), label)
            break
        out.streams += 1
        if k == 1 and machine.protocol is not None and "protocol" not in out.meta:
            out.meta["protocol"] = machine.protocol
    _settle_jumps(out, src, jumps)
    return values


def _settle_jumps(out: _Collector, src: _Source, since: int) -> None:
    """Array bytes that a plain pickle.load would read as one long constant: harmless when the constant runs past
    the end of the stream (the load fails there), else the plain reading goes on where the scan did not look."""
    pending, out.jumps[since:] = out.jumps[since:], []
    end = src.offset() if pending and src.at_end() else None
    for target, at, where in pending:
        if end is None or target <= end:
            out.finding("unknown", f"joblib array bytes at byte {at} parse as pickle opcodes that a plain pickle.load "
                        "would read differently; not followed", where)


def _broken(out: _Collector, reason: str, where: str) -> None:
    out.finding("unknown", f"corrupt or truncated: {reason}", where)
    if out.corrupt is None:
        out.corrupt = f"{where}: {reason}" if where else reason


# ----------------------------------------------------------------------------------- compressions


class _ZlibReader:
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
        raise _Halt("lz4-compressed, and the lz4 module is not installed (pip install lz4)") from None
    return lz4.frame.LZ4FrameFile(raw, "rb")


def _zfile_open(raw):
    """joblib < 0.10 ``ZF`` files: ``ZF``, the length in hex padded to 19 bytes, maybe a space, zlib data."""
    raw.read(2 + 19)
    first = raw.read(1)
    return _ZlibReader(raw, b"" if first == b" " else first)


# compression name -> (magic prefix, opener taking the raw file)
COMPRESSIONS = {
    "zlib": (b"\x78", _ZlibReader),
    "gzip": (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    "bz2": (b"BZh", lambda raw: bz2.BZ2File(raw, "rb")),
    "xz": (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, "rb")),
    "lzma": (b"\x5d\x00\x00", lambda raw: lzma.LZMAFile(raw, "rb", format=lzma.FORMAT_ALONE)),
    "lz4": (b"\x04\x22\x4d\x18", _lz4_open),
    "zfile": (b"ZF", _zfile_open),
}


def _open_compressed(raw, compression: str):
    return COMPRESSIONS[compression][1](raw)


def sniff_compression(head: bytes) -> str | None:
    """joblib's compressor from a file's first bytes (None for uncompressed data)."""
    for name, (magic, _) in COMPRESSIONS.items():
        if head.startswith(magic):
            if name == "zlib" and (len(head) < 2 or (head[0] * 256 + head[1]) % 31 != 0):
                continue
            if name == "zfile" and not head[2:4] == b"0x":
                continue
            return name
    return None


# ------------------------------------------------------------------------------------ containers

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_MAGIC_PICKLE = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"
_STORAGE_SIZES = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1, "Byte": 1,
    "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QUInt8": 1, "QInt8": 1, "QInt32": 4, "QUInt4x2": 1,
    "QUInt2x4": 1, "Untyped": 1, "Float8_e5m2": 1, "Float8_e4m3fn": 1,
}


def _scan_pickle(out: _Collector, raw, size: int | None, prefix: str = "", compression: str | None = None,
                 depth: int = 0) -> None:
    """A pickle or joblib file, decompressed on the fly when joblib compressed it."""
    if compression:
        out.meta["compression"] = compression
        src = _Source(_open_compressed(raw, compression))
    else:
        src = _Source(raw, size)
    _scan_streams(out, src, prefix)


def _scan_torch_legacy(out: _Collector, raw, size: int | None, prefix: str = "", compression=None,
                       depth: int = 0) -> None:
    """``torch.save(..., _use_new_zipfile_serialization=False)``: five pickles (magic number, protocol,
    system info, the object, storage keys), then raw storage data, which nothing unpickles."""
    src = _Source(raw, size)
    values = _scan_streams(out, src, prefix, limit=5)
    where = prefix or "file"
    if len(values) < 5:
        if not out.corrupt:
            _broken(out, f"legacy torch file holds {len(values)} of its 5 pickles", where)
        return
    if values[0] != TORCH_MAGIC:
        out.finding("unknown", "the first pickle is not torch's magic number", where)
    if type(values[1]) is int:
        out.meta["torch_legacy_protocol"] = values[1]
    if type(values[2]) is dict:
        out.meta["torch_sys_info"] = {k: v for k, v in values[2].items() if type(v) in (int, bool, str)}
    tail = None if src.size is None else src.size - src.offset()
    out.meta["torch_storages"] = len(out.storages)
    out.meta["storage_bytes_unscanned"] = tail
    sizes = [(_STORAGE_SIZES.get(t.replace("Storage", "")), numel) for t, numel in out.storages.values()]
    if tail is None or not sizes or any(s is None for s, _ in sizes):
        return
    expected = sum(8 + numel * s for s, numel in sizes)
    if tail < expected:
        _broken(out, f"storage data is {tail} bytes where the pickles describe {expected}", where)
    elif tail > expected:
        out.finding("info", f"{tail - expected} bytes after the storage data are never read", where)


def _npy_header(src: _Source) -> dict:
    """The header dict of a .npy stream (a Python literal: parsed with ast.literal_eval, never eval)."""
    import ast

    head = src.take(8)
    if head[:6] != b"\x93NUMPY":
        raise _Corrupt("not a .npy stream", 0)
    major = head[6]
    length = int.from_bytes(src.take(2 if major == 1 else 4), "little")
    if length > 1 << 20:
        raise _Corrupt(f".npy header of {length} bytes", 8)
    text = src.take(length).decode("latin-1" if major < 3 else "utf-8")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _Corrupt(f"unreadable .npy header: {exc}", 10) from None
    if not isinstance(header, dict) or "descr" not in header:
        raise _Corrupt(".npy header without descr", 10)
    return header


def descr_has_object(descr) -> bool:
    """True when a .npy ``descr`` holds Python objects (then its data is a pickle)."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, (list, tuple)):
        return any(descr_has_object(f[1]) for f in descr if isinstance(f, (list, tuple)) and len(f) > 1)
    return False


def _scan_npy(out: _Collector, raw, size: int | None, prefix: str = "", compression=None, depth: int = 0) -> None:
    """A .npy file: only an object array's data is a pickle (np.load(allow_pickle=True) unpickles it)."""
    src = _Source(raw, size)
    try:
        header = _npy_header(src)
    except _Corrupt as exc:
        _broken(out, str(exc), prefix)
        return
    out.meta["npy_arrays"] = out.meta.get("npy_arrays", 0) + 1
    if descr_has_object(header["descr"]):
        out.meta["npy_object_arrays"] = out.meta.get("npy_object_arrays", 0) + 1
        _scan_streams(out, src, prefix or "object array data", joblib=False)


def risky_member_names(names) -> list[str]:
    """Archive member paths that would land outside the folder they are extracted to."""
    bad = []
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
            bad.append(name)
    return bad


_PICKLE_NAMES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".sav", ".model")


def _scan_zip(out: _Collector, zf: zipfile.ZipFile, policy: str, prefix: str = "", depth: int = 0) -> None:
    """Archive members an unpickler would read, read the way torch reads them (see convert.rawzip). ``policy``:
    ``torch`` (members named *.pkl, and TorchScript code), ``export`` (what torch.export.load reads, see
    convert.pt2_members), ``sniff`` (any member, by content)."""
    from . import rawzip

    infos = zf.infolist()
    out.meta.setdefault("pickle_members", [])
    for bad in risky_member_names(i.filename for i in infos):
        out.finding("suspicious", f"archive member path escapes the archive: {bad!r}", prefix)
    roles = _export_roles(out, zf, prefix) if policy == "export" else {}
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        label = f"{prefix} > {name}" if prefix else name
        try:
            odd = rawzip.anomalies(zf, info)
        except ZIP_ERRORS as exc:
            _broken(out, f"cannot read archive member header: {exc}", label)
            continue
        for what in odd:
            out.finding("suspicious", f"archive member {what}: Python's zipfile refuses it; scanned from its raw bytes, "
                        "as a reader that ignores this sees them (torch does, for a wrong CRC or local name)", label)

        def opener(info=info, label=label, heard=set()):  # noqa: B006 -- one set per member: each anomaly once
            def report(what):
                if what not in heard:
                    heard.add(what)
                    out.finding("unknown", f"archive member {what} (corrupt or tampered); scanned as torch reads it",
                                label)
            return rawzip.open_member(zf, info, report)

        base = name.rsplit("/", 1)[-1]
        if policy == "torch" and base.endswith(".py") and "/code/" in f"/{name}":
            _scan_torchscript_code(out, opener, label)
            continue
        if policy == "torch" and not base.endswith((".pkl", ".debug_pkl")):
            continue
        member_policy = policy
        if policy == "export":
            role = roles.get(name)
            if role == "raw":
                continue
            if role == "native":
                out.finding("unsafe", "compiled native code (AOTInductor) that torch.export.load loads and runs",
                            label)
                continue
            member_policy = "torch" if role == "pickle" or base.endswith((".pkl", ".pt", ".pth")) else "sniff"
        _scan_one(out, opener, info.file_size, base, label, member_policy, depth)


def _scan_one(out: _Collector, opener, size: int, base: str, label: str, policy: str, depth: int) -> None:
    """One archive member: decide from its bytes (and, for ``torch``, its role) how a loader reads it, and scan it.
    ``opener()`` gives a fresh file of its bytes each time."""
    try:
        with opener() as fh:
            kind = _member_kind(fh.read(64), base, policy)
        if kind is not None and kind.startswith("probe:"):
            with opener() as fh:
                kind = _probed_member_kind(fh, kind[6:])
        if kind is None:
            return
        with opener() as fh:
            _scan_member(out, fh, size, kind, label, depth)
    except _Halt as exc:
        out.finding("unknown", f"scan stopped: {exc}", label)
    except (_Corrupt, *ZIP_ERRORS) as exc:
        _broken(out, f"cannot read archive member: {exc}", label)
        return
    scanned = out.meta.setdefault("pickle_members", [])
    if len(scanned) < 1000:
        scanned.append(label)


def _scan_torchscript_code(out: _Collector, opener, label: str) -> None:
    """TorchScript source that torch.jit.load compiles and the model runs (convert.torchscript_scan)."""
    from .torchscript_scan import CodeError, scan

    out.meta["torchscript_code_files"] = out.meta.get("torchscript_code_files", 0) + 1
    try:
        with opener() as fh:
            calls = scan(fh)
    except CodeError as exc:
        out.finding("unknown", str(exc), label)
        return
    except ZIP_ERRORS as exc:
        _broken(out, f"cannot read TorchScript code: {exc}", label)
        return
    for call in calls:
        out.finding(call.severity, call.what, f"{label} line {call.line}")


def _export_roles(out: _Collector, zf: zipfile.ZipFile, prefix: str) -> dict:
    """How torch.export.load reads each member; config entries the plan cannot account for make the scan unknown."""
    from . import rawzip
    from .pt2_members import CONFIG_MAX, plan

    def read(info):
        with rawzip.open_member(zf, info) as fh:
            return fh.read(CONFIG_MAX + 1)

    found = plan(zf, read)
    for where, why in found.problems:
        out.finding("unknown", why, f"{prefix} > {where}" if prefix else where)
    out.meta["pt2_pickled_members"] = sum(1 for r in found.roles.values() if r == "pickle")
    return found.roles


def _member_kind(head: bytes, base: str, policy: str) -> str | None:
    """How to scan one member, from its first bytes (and its name where the bytes cannot tell)."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(_SEVENZIP_MAGIC):
        return "7z"
    if head.startswith(_TORCH_MAGIC_PICKLE):
        return "torch-legacy"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if policy != "sniff" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        return "pickle"  # named a pickle by the archive format (protocol 0/1 has no header)
    named = base.lower().endswith(_PICKLE_NAMES)
    compression = sniff_compression(head)
    if compression:  # a compressed joblib file under any name: confirmed by what it decompresses to
        return f"joblib:{compression}" if named else f"probe:{compression}"
    if may_start_pickle(head):
        return "pickle" if named else "probe:text"  # no header: confirmed by walking it
    return None


_PROBE_HEAD = 4096  # decompressed bytes looked at to tell a compressed pickle from other compressed data
_PROBE_TEXT = 1 << 20  # bytes of a headerless candidate walked (as detect() does for files on disk)


def _probed_member_kind(fh, what: str) -> str | None:
    """An unnamed archive member that may still be a pickle (a loader that picks it by name does not care
    what it is called): ``joblib:<compression>`` when it decompresses to one, ``pickle`` when its bytes walk
    as a protocol 0/1 pickle, else None. Never runs anything; a decompressor error means "not this"."""
    if what == "text":
        prefix = fh.read(_PROBE_TEXT)
        if not may_start_pickle(prefix):
            return None
        return "pickle" if probe(prefix, complete=len(prefix) < _PROBE_TEXT, strict=True)[0] == "pickle" else None
    try:
        inner = _open_compressed(fh, what).read(_PROBE_HEAD)
    except _Halt:  # lz4 without the lz4 module: scan it anyway, which says so (fail closed)
        return f"joblib:{what}"
    except Exception:  # noqa: BLE001 -- any decompressor error: not compressed data of this kind
        return None
    if inner and probe(inner, complete=len(inner) < _PROBE_HEAD)[0] == "pickle":
        return f"joblib:{what}"
    return None


def _scan_member(out: _Collector, fh, size: int, kind: str, label: str, depth: int) -> None:
    kind, _, compression = kind.partition(":")
    _CONTAINERS[kind](out, fh, size if not compression else None, label, compression or None, depth)


def _scan_nested_zip(out: _Collector, fh, size, prefix: str = "", compression=None, depth: int = 0) -> None:
    if depth >= ZIP_DEPTH:
        out.finding("unknown", f"archive nested more than {ZIP_DEPTH} deep was not scanned", prefix)
        return
    try:
        zf = zipfile.ZipFile(fh)
    except ZIP_ERRORS as exc:
        raise _Corrupt(f"damaged zip archive: {exc}", 0) from None
    with zf:
        names = zf.namelist()
        if not prefix and _zip_format(names) == "torchscript":
            out.context = "torchscript"
        _scan_zip(out, zf, _zip_policy(names), prefix, depth + (1 if prefix else 0))


def _scan_7z(out: _Collector, fh, size, prefix: str = "", compression=None, depth: int = 0) -> None:
    """A 7-Zip archive: every member, by content, as for a plain zip (convert.sevenzip decompresses them)."""
    from .sevenzip import SevenZipError, walk

    if depth >= ZIP_DEPTH:
        out.finding("unknown", f"archive nested more than {ZIP_DEPTH} deep was not scanned", prefix)
        return

    def visit(name: str, member_size: int, spool) -> None:
        label = f"{prefix} > {name}" if prefix else name
        for bad in risky_member_names([name]):
            out.finding("suspicious", f"archive member path escapes the archive: {bad!r}", label)
        _scan_one(out, lambda: _Borrowed(spool), member_size, name.rsplit("/", 1)[-1], label, "sniff",
                  depth + (1 if prefix else 0))

    try:
        walk(fh, visit)
    except SevenZipError as exc:
        out.finding("unknown", f"{exc}; not scanned", prefix or "7-Zip archive")


class _Borrowed:
    """A file handed out again and again, from its start, and never closed by whoever borrows it."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        self.fh.seek(0)
        return self.fh

    def __exit__(self, *exc):
        return False


def _zip_format(names) -> str:
    from .detect import zip_format

    return zip_format(list(names))


def _zip_policy(names) -> str:
    return {"torch-zip": "torch", "torchscript": "torch", "torch-export": "export"}.get(_zip_format(names), "sniff")


# ----------------------------------------------------------------------------------------- results


def _result(out: _Collector) -> PickleScan:
    table = rules()
    refs = sorted(out.refs.values(), key=lambda r: (r.module, r.name))
    for r in refs:
        if r.kind == "partial" and r.verdict == "suspicious" and (r.module, r.name) in table.conditional:
            if out.partial_wraps:
                r.why = f"wraps {', '.join(sorted(out.partial_wraps)[:3])}, which the allowlist does not hold"
            else:
                r.verdict, r.why = "safe", "wraps only allowlisted globals"
    globals_ = tuple(GlobalRef(r.module, r.name, r.verdict, r.where, r.count) for r in refs)
    findings = [Finding(f"imports {_qual(r)}: {r.why}", r.verdict, r.where) for r in refs if r.verdict != "safe"]
    old = [r for r in refs if r.verdict == "safe" and r.why and r.kind != "partial"]  # old names of allowlisted ones
    findings.extend(Finding(f"imports {_qual(r)}: {r.why}", "info", r.where) for r in old)
    findings.extend(out.findings)
    meta = dict(out.meta)
    if old:
        meta["old_names"] = len(old)
    versions = meta.pop("_sklearn_versions", [])
    if versions:
        meta["sklearn_version"] = versions[0]
        if len(versions) > 1:
            meta["sklearn_versions"] = versions
    elif not out.corrupt and not any(f.severity == "unknown" for f in out.findings) and any(
            r.module.split(".", 1)[0] == "sklearn"
            and ((r.module, r.name) in table.estimators
                 or (r.name[:1].isupper() and (r.module, r.name) not in table.safe)) for r in refs):
        # estimators carry _sklearn_version since 0.18; its absence proves something only in a stream read to
        # its end (a truncated or damaged one may just break off before the estimator's state)
        meta["sklearn_version"] = "before 0.18"
    numpy_paths = {r.module.split(".")[1] for r in refs if r.module.startswith(("numpy.core.", "numpy._core."))}
    if numpy_paths:
        meta["numpy"] = ">=2" if "_core" in numpy_paths else "<2"
    meta.setdefault("joblib_arrays", 0)
    if out.corrupt:
        meta["corrupt"] = out.corrupt
    verdicts = [f.severity for f in findings if f.severity != "info"] + [g.verdict for g in globals_]
    return PickleScan(worst(verdicts), globals_, tuple(findings), out.streams, meta)


# ------------------------------------------------------------------------------------------- public


def scan_bytes(data: bytes) -> PickleScan:
    """Scan an in-memory pickle (or compressed joblib, .npy, zip archive)."""
    return scan_stream(io.BytesIO(bytes(data)))


def scan_stream(fileobj) -> PickleScan:
    """Scan a binary file object from its current position: a pickle, compressed joblib, .npy or zip
    (archives need a seekable file)."""
    head = _peek(fileobj, 64)
    out = _Collector()
    kind = _kind_from_head(head)
    _guarded(out, lambda: _dispatch(out, fileobj, _remaining(fileobj), kind))
    return _result(out)


class _CRLFRestored:
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


def scan_crlf_restored(path) -> PickleScan:
    """Scan a pickle file as it was before a LF -> CRLF conversion (to tell that conversion is what broke it)."""
    out = _Collector()

    def run():
        with open(path, "rb") as fh:
            _scan_streams(out, _Source(_CRLFRestored(fh)))

    _guarded(out, run)
    return _result(out)


def may_start_pickle(head: bytes) -> bool:
    """Whether ``pickle.load`` would start reading these bytes at all: the first byte is an opcode. (No header
    is needed: protocol 0/1 pickles, and any stream without PROTO, start with whatever opcode they like.)"""
    return bool(head) and head[0] in _OPCODES


def probe(data: bytes, complete: bool, strict: bool = False) -> tuple[str, int | None]:
    """Does ``data``, the start of a file, read as a pickle? ``("pickle", protocol)`` when the walk reaches
    STOP or stays valid to where ``data`` ends (``complete``: it is the whole file), or when it breaks only after
    doing what a loader would act on: importing a name the policy knows (one it calls safe or unsafe) or calling an
    imported global (a pickle.load of it has run code by then). Else ``("invalid", None)``. ``strict``, for
    headerless candidates, also wants substance: one of those, a STOP, or 64 valid bytes before the data runs out."""
    machine = _Machine(_Collector())
    try:
        machine.run(_Source.of_bytes(data), "probe")
    except _Truncated as exc:
        if strict and (complete or exc.at < 64) and not _acted(machine.out):
            return "invalid", None
    except _Corrupt:
        if not _acted(machine.out):
            return "invalid", None
    except _Halt:
        pass
    return "pickle", machine.protocol


def _acted(out: _Collector) -> bool:
    """A walk that imported a name the policy knows, or called something after importing, read a real pickle
    (text that merely starts like one imports made-up names and breaks before any call)."""
    return any(r.verdict != "suspicious" for r in out.refs.values()) or bool(out.refs and out.calls)


def scan_file(path, detection=None) -> PickleScan:
    """Scan every pickle a file would unpickle. ``detection`` (from ``detect``) saves a second look."""
    if detection is None:
        from .detect import detect

        detection = detect(path)
    path = Path(path)
    kind = _FORMAT_KIND.get(detection.format)
    if kind is None:  # formats that hold no pickles
        return PickleScan("safe", streams=0, metadata={"joblib_arrays": 0, "pickle_bearing": False})
    if kind == "pickle" and detection.compression:
        kind = f"joblib:{detection.compression}"
    out = _Collector(context="torchscript" if detection.format == "torchscript" else "")

    def run():
        with open(path, "rb") as fh:
            _dispatch(out, fh, path.stat().st_size, kind)

    _guarded(out, run)
    _scan_companions(out, path)
    return _result(out)


# container kind -> scanner(out, file, size, prefix, compression, depth)
_CONTAINERS = {"zip": _scan_nested_zip, "torch-legacy": _scan_torch_legacy, "npy": _scan_npy,
               "pickle": _scan_pickle, "joblib": _scan_pickle, "7z": _scan_7z}

_FORMAT_KIND = {
    "pickle": "pickle", "joblib": "pickle", "torch-legacy": "torch-legacy", "npy": "npy",
    "torch-zip": "zip", "torchscript": "zip", "torch-export": "zip", "zip": "zip", "npz": "zip",
    "keras": "zip", "skops": "zip", "7z": "7z",
}


def _guarded(out: _Collector, run) -> None:
    """Turn what stops a scan into findings: the verdict is then ``unknown``, never a traceback."""
    try:
        run()
    except _Halt as exc:
        out.finding("unknown", f"scan stopped: {exc}")
    except _Corrupt as exc:
        _broken(out, str(exc), "")
    except zipfile.BadZipFile as exc:
        _broken(out, f"broken zip archive: {exc}", "")
    except OSError as exc:
        _broken(out, f"cannot read: {exc.strerror or exc}", "")


def _dispatch(out: _Collector, fh, size, kind: str) -> None:
    _scan_member(out, fh, size, kind, "", 0)


def _kind_from_head(head: bytes) -> str:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(_SEVENZIP_MAGIC):
        return "7z"
    if head.startswith(_TORCH_MAGIC_PICKLE):
        return "torch-legacy"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) >= 2 and head[0] == 0x80:
        return "pickle"
    compression = sniff_compression(head)
    return f"joblib:{compression}" if compression else "pickle"


def _peek(fileobj, n: int) -> bytes:
    if hasattr(fileobj, "peek"):
        return fileobj.peek(n)[:n]
    pos = fileobj.tell()
    data = fileobj.read(n)
    fileobj.seek(pos)
    return data


def _remaining(fileobj) -> int | None:
    """Bytes left in a seekable file (lets the scan seek over array blocks), else None."""
    try:
        if not fileobj.seekable():
            return None
        pos = fileobj.tell()
        end = fileobj.seek(0, 2)
        fileobj.seek(pos)
        return end - pos
    except (OSError, AttributeError, ValueError):
        return None


def _scan_companions(out: _Collector, path: Path) -> None:
    """joblib < 0.10 kept arrays in companion files next to the pickle and reads ``.npy`` ones with
    np.load(allow_pickle=True): scan those that exist, say which are missing."""
    for name in out.meta.get("joblib_companion_files", ()):
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            out.finding("suspicious", f"joblib companion file name points elsewhere: {name!r}")
            continue
        companion = path.parent / name
        if not companion.is_file():
            out.finding("unknown", f"joblib companion file {name} is missing; not scanned")
            continue
        with open(companion, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":  # ZF companions (joblib 0.9 compressed) hold raw array bytes
                fh.seek(0)
                _guarded(out, lambda: _scan_npy(out, fh, companion.stat().st_size, name))  # noqa: B023
