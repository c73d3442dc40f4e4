"""The opcode machine: one pickle stream walked: which globals a file would import, decided without importing anything.

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
import codecs
import io
import pickletools
import re
import struct

from ..findings import Finding
from ..magic import OPCODES
from .policy import canonical, verdict
from .source import LINE_MAX, LOOK, Corrupt, Halt, Region, Source, Truncated

INLINE_MAX = 1 << 20  # longer constants are skipped (or streamed through a nested scan), never held

MEMO_BUDGET = 300_000  # memo values kept unconditionally; past that only the ones later opcodes need

STACK_CAP = 100_000  # items kept in one stack frame; older ones are trimmed (they are only counted)

DICT_CAP = 256  # string keys kept per dict (plus the keys the scan reads)

LIST_CAP = 64  # items kept per list

NEST_MIN = 16  # shortest constant worth checking for an embedded pickle

NEST_DEPTH = 4  # embedded pickles followed this deep

PROBE_WINDOW = 64 << 10  # bytes of a joblib array block checked for what a plain pickle.load would run

PROBE_TAIL = 4 << 10  # and of the stream after it, where that reading must land back on joblib's

_I4 = struct.Struct("<i").unpack_from

_U4 = struct.Struct("<I").unpack_from

_U8 = struct.Struct("<Q").unpack_from

_F8 = struct.Struct(">d").unpack_from

_IDENT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+\Z")

_B64 = re.compile(rb"[A-Za-z0-9+/_\-\s]+")  # the body of a base64 text; up to two "=" may follow (``_base64_text``)

# keys whose values the scan reads (joblib array wrappers, sklearn's version stamp): always kept
_TEXT_OPS = frozenset(b"ciILFSVgpP")  # GLOBAL INST INT LONG FLOAT STRING UNICODE GET PUT PERSID

_KEEP_KEYS = frozenset(
    ("_sklearn_version", "subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes",
     "filename")
)


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


class Collector:
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

    def merge(self, other: "Collector", nested: bool = False) -> None:
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


class Machine:
    """Walks one pickle stream (and whatever it embeds), recording into a collector."""

    def __init__(self, out: Collector, depth: int = 0, probe: bool = False):
        self.out = out
        self.depth = depth
        self.probe = probe  # an embedded candidate: only well-formed globals count
        self.label = ""
        self.mkeys = None
        self.ring: list = [None] * 16  # (index, string) of the latest memo strings not kept
        self.protocol = None

    # -- the hot loop ------------------------------------------------------------------------------

    def run(self, src: Source, label: str, joblib: bool = True):
        """Walk one stream to STOP and return its value; raise Corrupt / Halt."""
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
                        raise Truncated(f"ends {what} at byte {base + n}", base + n)
                    src.fill(LOOK)
                    if len(stack) > STACK_CAP:
                        _trim(stack)
                    buf, pos, base, n, lim = src.borrow()
                    if pos >= n:
                        raise Truncated(f"ends without STOP at byte {base + n}", base + n)
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
                elif op == 0x68:  # BINGET
                    k = buf[pos]
                    pos += 1
                    v = memo.get(k, _EVICTED)
                    push(v if v is not _EVICTED else self._miss(mlen, k))
                elif op == 0x4B:  # BININT1
                    push(buf[pos])
                    pos += 1
                elif op == 0x8C:  # SHORT_BINUNICODE
                    k = buf[pos]
                    e = pos + 1 + k
                    if e > n:
                        raise Truncated(f"ends inside a string at byte {base + pos}", base + pos)
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
                elif op == 0x28:  # MARK
                    metastack.append(stack)
                    stack = []
                    push = stack.append
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
                elif op == 0x52:  # REDUCE
                    args = stack.pop()
                    func = stack[-1]
                    out.calls += 1
                    if type(func) is _Ref and func.kind:
                        stack[-1] = self._call(func, args)
                    else:
                        stack[-1] = _RESULT
                elif op == 0x85:  # TUPLE1
                    stack[-1] = (stack[-1],)
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
                        self._note("suspicious", f"BUILD sets attributes on the imported {qual(inst)} itself",
                                   base + pos)
                elif op == 0x4E:  # NONE
                    push(None)
                elif op == 0x87:  # TUPLE3
                    v = stack.pop()
                    w = stack.pop()
                    stack[-1] = (stack[-1], w, v)
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
                            raise Corrupt(f"odd number of items for DICT at byte {base + pos - 1}", base + pos)
                        d = {}
                        _setitems(d, items)
                        push(d)
                    else:
                        push(_OPAQUE)
                elif op == 0x89:  # NEWFALSE
                    push(False)
                elif op == 0x47:  # BINFLOAT
                    push(F8(buf, pos)[0])
                    pos += 8
                elif op == 0x7D:  # EMPTY_DICT
                    push({})
                elif op == 0x43 or op == 0x55:  # SHORT_BINBYTES, SHORT_BINSTRING
                    k = buf[pos]
                    e = pos + 1 + k
                    if e > n:
                        raise Truncated(f"ends inside a string at byte {base + pos}", base + pos)
                    v = buf[pos + 1:e]
                    pos = e
                    if op == 0x55:
                        v = v.decode("latin-1")
                    if k >= NEST_MIN:
                        self._consider(v, base + pos)
                    push(v)
                elif op == 0x29:  # EMPTY_TUPLE
                    push(())
                elif op == 0x75:  # SETITEMS
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    if len(items) & 1:
                        raise Corrupt(f"odd number of items for SETITEMS at byte {base + pos - 1}", base + pos)
                    t = stack[-1]
                    if type(t) is dict:
                        _setitems(t, items)
                elif op == 0x86:  # TUPLE2
                    v = stack.pop()
                    stack[-1] = (stack[-1], v)
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
                elif op == 0x93:  # STACK_GLOBAL
                    name = stack.pop()
                    module = stack[-1]
                    if type(name) is str and type(module) is str:
                        if mfree <= 0:
                            self._promote(memo, module, name)
                        stack[-1] = self._global(module, name, base + pos - 1)
                    else:
                        stack[-1] = self._dynamic(module, name, base + pos - 1)
                elif op == 0x4A:  # BININT
                    push(I4(buf, pos)[0])
                    pos += 4
                elif op == 0x88:  # NEWTRUE
                    push(True)
                elif op == 0x81:  # NEWOBJ
                    args = stack.pop()
                    cls = stack[-1]
                    out.calls += 1
                    if type(cls) is _Ref and cls.kind == "partial":
                        stack[-1] = self._call(cls, args)
                    else:
                        stack[-1] = _new(cls)
                elif op == 0x65:  # APPENDS
                    items = stack
                    stack = metastack.pop()
                    push = stack.append
                    t = stack[-1]
                    if type(t) is list and len(t) < LIST_CAP:
                        t.extend(items[:LIST_CAP - len(t)])
                elif op == 0x5D:  # EMPTY_LIST
                    push([])
                elif op == 0x4D:  # BININT2
                    push(buf[pos] | (buf[pos + 1] << 8))
                    pos += 2
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
                        raise Corrupt(f"unsupported pickle protocol {p} at byte {base + pos - 2}", base + pos - 2)
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
                        raise Truncated(f"ends inside an integer at byte {base + pos}", base + pos)
                    push(int.from_bytes(buf[pos + 1:e], "little", signed=True))
                    pos = e
                elif op == 0x8B or op == 0x54:  # LONG4, BINSTRING (signed lengths)
                    k = I4(buf, pos)[0]
                    pos += 4
                    if k < 0:
                        raise Corrupt(f"negative length at byte {base + pos - 5}", base + pos - 5)
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
                        raise Truncated(f"ends inside an EXT code at byte {base + pos}", base + pos)
                    pos += size
                    if code <= 0:
                        raise Corrupt(f"EXT code {code} at byte {base + pos}", base + pos)
                    self._note("suspicious", f"EXT opcode imports the global registered as extension code {code} "
                               "(copyreg.add_extension); the scan cannot tell which", base + pos)
                    push(_DYNAMIC)
                elif op == 0x97:  # NEXT_BUFFER
                    out.meta["out_of_band_buffers"] = out.meta.get("out_of_band_buffers", 0) + 1
                    push(_OPAQUE)
                elif op == 0x98:  # READONLY_BUFFER
                    stack[-1]  # noqa: B018
                else:
                    raise Corrupt(f"unknown opcode 0x{op:02x} at byte {base + pos - 1}", base + pos - 1)
        except IndexError:  # the buffer is padded, so this is the stack
            raise Corrupt(f"stack underflow or missing MARK near byte {base + pos - 1}", base + pos - 1) from None
        except struct.error:
            raise Truncated(f"ends inside an argument at byte {base + pos}", base + pos) from None
        except UnicodeDecodeError:
            raise Corrupt(f"invalid UTF-8 string before byte {base + pos}", base + pos) from None
        except (ValueError, OverflowError) as exc:
            raise Corrupt(f"bad argument before byte {base + pos}: {exc}", base + pos) from None

    # -- frames ------------------------------------------------------------------------------------

    def _frame_end(self, src: Source, at: int) -> None:
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

    def _text_op(self, op: int, src: Source, stack: list, memo: dict, mlen: int):
        """Opcodes with newline-terminated arguments. Returns the value to push (or the PUT index)."""
        at = src.offset() - 1
        line = src.line()
        if op == 0x63 or op == 0x69:  # GLOBAL, INST
            second = src.line()
            if line is None or second is None:
                raise Halt(f"global name longer than {LINE_MAX} bytes at byte {at}")
            codec = "utf-8" if op == 0x63 else "ascii"
            module, name = line[:-1].decode(codec), second[:-1].decode(codec)
            return self._global(module, name, at)
        if line is None:
            if op in (0x53, 0x56):  # STRING, UNICODE
                return _BIG
            raise Corrupt(f"text argument longer than {LINE_MAX} bytes at byte {at}", at)
        body = line[:-1]
        if op == 0x49:  # INT
            return False if line == b"00\n" else True if line == b"01\n" else int(line, 0)
        if op == 0x4C:  # LONG
            return int(body[:-1] if body.endswith(b"L") else body, 0)
        if op == 0x46:  # FLOAT
            return float(body)
        if op == 0x53:  # STRING
            if len(body) < 2 or body[0] != body[-1] or body[:1] not in (b"'", b'"'):
                raise Corrupt(f"STRING argument not quoted at byte {at}", at)
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
                raise Corrupt(f"negative PUT index at byte {at}", at)
            return k
        if op == 0x50:  # PERSID
            return self._persistent(body.decode("ascii"))
        raise Corrupt(f"unknown opcode 0x{op:02x} at byte {at}", at)

    # -- memo beyond the fast path -----------------------------------------------------------------

    def _put(self, memo: dict, mlen: int, mfree: int, k: int, value) -> tuple[int, int]:
        """A memo write off the fast path (irregular indexes, or past the budget). Returns the new
        (len(memo), budget left)."""
        keys = self.mkeys
        if keys is None and k > mlen:
            if mlen > 1_000_000:
                raise Halt("memo indexes too irregular to follow")
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
        raise Corrupt(f"memo key {k} read before it was stored", -1)

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
                raise Corrupt("not a module path", at)
            verdict_, why = verdict(module, name, out.context)
            where = f"{label} @ byte {at}" if label else self._where(at)
            ref = _Ref(module, name, _kind_of(module, name), verdict_, why, where)
            out.refs[key] = ref
        ref.count += 1
        return ref

    def _dynamic(self, module, name, at: int) -> _Ref:
        if module is _EVICTED or name is _EVICTED:
            raise Halt(f"a global at byte {at} takes its name from a memo value the scan did not keep")
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
            self.out.partial_wraps.add(qual(func) if type(func) is _Ref else f"a computed {type(func).__name__}")

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

    def _long(self, src: Source, k: int):
        """A constant of ``k`` bytes: held when small, else skipped (scanned in passing if it starts
        like a pickle)."""
        if k <= INLINE_MAX:
            return src.take(k)
        at = src.offset()
        head = src.peek(2)
        if len(head) == 2 and head[0] == 0x80 and head[1] <= 5 and self.depth < NEST_DEPTH:
            region = Region(src, k)
            self._nested(Source(region), f"long constant at byte {at}", at)
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
            if payload[0] in OPCODES and (b"\n" in payload or b"\x93" in payload):
                if self.depth >= NEST_DEPTH:
                    self._note("unknown", f"a pickle nested more than {NEST_DEPTH} deep was not scanned", at)
                    return
                self._nested(Source.of_bytes(payload), f"{how} constant before byte {at}", at)

    def _nested(self, src: Source, what: str, at: int) -> None:
        """Probe an embedded candidate; keep what it imports if it really is a pickle (it reaches STOP,
        or calls something before it breaks, as a real unpickler would have)."""
        child = Collector(self.out.context)
        machine = Machine(child, self.depth + 1, probe=True)
        label = f"nested pickle ({what}, {self.label})"
        try:
            machine.run(src, label, joblib=False)
            complete = True
        except (Corrupt, Halt):
            complete = False
        imports = child.refs or any(f.severity == "unsafe" for f in child.findings)
        if not imports or not (complete or child.calls):
            return
        if not complete:
            child.finding("unknown", "embedded pickle breaks off after importing globals", label)
        self.out.merge(child, nested=True)

    # -- joblib arrays -----------------------------------------------------------------------------

    def _joblib_array(self, src: Source, inst: _Obj) -> None:
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
            raise Halt(f"an array wrapper under an unfamiliar name is rebuilt at byte {at}; joblib would read "
                        "raw bytes after it that the scan cannot size")
        if src.fence > at:
            raise Halt(f"joblib array block inside a pickle frame at byte {at}: the loader would read it from "
                        "another place")
        if src.fence >= 0:  # joblib ends the frame right before the block (the block is outside any frame)
            self._frame_end(src, at)
        info = _dtype_info(attrs.get("dtype"))
        count = _element_count(attrs.get("shape"))
        if info is None or count is None:
            raise Halt(f"cannot work out the size of the joblib array block at byte {at} (shape "
                        f"{_short(attrs.get('shape'))}, dtype {_short(attrs.get('dtype'))})")
        itemsize, hasobject = info
        out.meta["joblib_arrays"] = out.meta.get("joblib_arrays", 0) + 1
        if hasobject:  # an object array is a nested pickle stream, read by a fresh unpickler
            Machine(out, self.depth).run(src, f"{self.label} > object array at byte {at}", joblib=False)
            return
        if count * itemsize < 0:
            raise Corrupt(f"negative array size at byte {at}", at)
        if attrs.get("numpy_array_alignment_bytes") is not None:  # joblib >= 1.2: one padding-length byte
            pad = src.peek(1)
            if not pad:
                raise Truncated(f"ends before the array block at byte {at}", at)
            self._plain_view(src, at, 1 + pad[0] + count * itemsize)
            src.skip(1 + pad[0])
        else:
            self._plain_view(src, at, count * itemsize)
        src.skip(count * itemsize)

    def _plain_view(self, src: Source, at: int, region: int) -> None:
        """What a plain ``pickle.load`` makes of the ``region`` bytes joblib reads as array data: it parses
        them as opcodes. Imports reached that way are recorded, until that reading lands back on an opcode
        boundary of joblib's reading (from there both see the same opcodes, scanned anyway) or fails."""
        first = src.peek(1)
        if not first or first[0] not in OPCODES:
            return  # the usual case: joblib >= 1.2 puts a padding-length byte (1..16) first
        window = src.peek(min(region, PROBE_WINDOW) + PROBE_TAIL)
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


def qual(ref: _Ref) -> str:
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
        elif _base64_text(stripped):
            try:
                decoded = base64.b64decode(stripped, altchars=b"-_" if b"-" in stripped or b"_" in stripped
                                           else None, validate=False)
            except (binascii.Error, ValueError):
                decoded = b""
            if decoded:
                yield "base64", decoded


def _base64_text(stripped: bytes) -> bool:
    """Base64 letters and whitespace, then at most two "=" (``stripped`` has no whitespace at either end). One
    pass: the single pattern with a trailing ``={0,2}\\s*`` backtracks quadratically over a long run of
    whitespace, minutes for a constant of a few hundred kilobytes."""
    body = stripped.rstrip(b"=")
    return len(stripped) - len(body) <= 2 and _B64.fullmatch(body) is not None


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


def _stream_label(prefix: str, k: int) -> str:
    if not prefix:
        return f"stream {k}"
    return prefix if k == 1 else f"{prefix} (stream {k})"


def scan_streams(out: Collector, src: Source, prefix: str = "", limit: int | None = None,
                  joblib: bool = True) -> list:
    """Every pickle stream in ``src``, one after another (a loader may read more than the first).
    Returns the streams' values (symbolic)."""
    values = []
    machine = Machine(out)
    k = 0
    jumps = len(out.jumps)
    while limit is None or k < limit:
        if src.at_end():
            if k == 0:
                broken(out, "no pickle stream in it", prefix)
            break
        k += 1
        start = src.offset()
        label = _stream_label(prefix, k)
        known = len(out.refs)
        try:
            values.append(machine.run(src, label, joblib))
        except Halt as exc:
            out.finding("unknown", f"scan stopped: {exc}", label)
            break
        except Corrupt as exc:
            junk = len(out.refs) == known and (exc.at < 0 or exc.at - start < 16)
            if k > 1 and limit is None and junk:
                out.finding("info", "bytes after the last pickle stream are not a pickle (no unpickler reads "
                            "them)", f"{label} @ byte {start}")
            elif k > 1 and limit is None:
                out.finding("unknown", f"the bytes after pickle stream {k - 1} start another stream that is "
                            f"broken: {exc}", label)
            else:
                broken(out, str(exc), label)
            break
        out.streams += 1
        if k == 1 and machine.protocol is not None and "protocol" not in out.meta:
            out.meta["protocol"] = machine.protocol
    settle_jumps(out, src, jumps)
    return values


def settle_jumps(out: Collector, src: Source, since: int) -> None:
    """Array bytes that a plain pickle.load would read as one long constant: harmless when the constant runs past
    the end of the stream (the load fails there), else the plain reading goes on where the scan did not look."""
    pending, out.jumps[since:] = out.jumps[since:], []
    end = src.offset() if pending and src.at_end() else None
    for target, at, where in pending:
        if end is None or target <= end:
            out.finding("unknown", f"joblib array bytes at byte {at} parse as pickle opcodes that a plain pickle.load "
                        "would read differently; not followed", where)


def broken(out: Collector, reason: str, where: str) -> None:
    out.finding("unknown", f"corrupt or truncated: {reason}", where)
    if out.corrupt is None:
        out.corrupt = f"{where}: {reason}" if where else reason
