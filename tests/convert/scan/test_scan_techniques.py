"""Every technique the issue lists, one table row each: the static scan (``convert.inspect``, the path the
audit and every command take) must catch it, and the payload must be live, i.e. a real loader run in
another process creates its canary file, while nothing here ever creates the canary of the test itself.

Read the ids of ``TECHNIQUES`` as the checklist: ``streams/…``, ``compressed/…``, ``torch/…``,
``torchscript/…``, ``numpy/…``, ``zip/…``, ``opcode/…``, ``dotted/…``, ``alias/…``, ``callable/…``,
``nested/…``, ``partial/…``, ``keras/…``, ``savedmodel/…``, and for issue 12's scanner items ``pt2/…`` (every
member torch.export.load unpickles), ``torchscript/code-…`` (calls read by tokens), ``headerless/…`` and ``7z/…``
(never skipped), ``zipraw/…`` (members read as torch reads them), ``frame/…`` (parser divergence) and ``rule/…``
(names off the allowlist, by the written rule). Techniques whose long variants already live in
test_pickles.py (every protocol, every memo opcode, damaged streams, ...) appear here once, cheaply.

Three tests run over the table:

- ``test_technique_is_caught``: the verdict (exact), the global or finding that earns it, and the exit code of
  ``modelport inspect``;
- ``test_payload_is_live``: the same technique built against a control canary and loaded for real by the
  loader its format invites (pickle.load, joblib.load, torch.load, np.load, torch.jit.load and a call,
  keras ``safe_mode=False``, tf.saved_model.load and a call). Rows without a live loader say why in
  ``dead`` (and are not parametrized there);
- ``test_canary_never_fires_in_audit_inspect_convert_check``: all samples in one folder, one canary;
  ``compat.audit`` (dynamic, untrusted) and the ``inspect``/``convert``/``check`` commands run on each.

Then the benign side: every ordinary kind of model file is ``safe``.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import marshal
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
import savedmodel_payloads as sp
from canary import Call, Canary
from test_pickles import MARK, POP, PROTO2, PROTO4, REDUCE, STACK_GLOBAL, STOP, u, x
from tiny_models import tiny_onnx

import convert
import convert.scan

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures"

try:  # TorchScript compiles from source: the module must be defined in a file, at top level
    import torch

    class SavesToDisk(torch.nn.Module):
        """Scripted, its forward() writes a file whenever the model runs."""

        def __init__(self, target: str):
            super().__init__()
            self.target = target

        def forward(self, x):
            torch.save(x, self.target)
            return x * 2
except ImportError:  # pragma: no cover -- torch is a test dependency; rows that need it skip
    torch = None


# ----------------------------------------------------------------------------------- pickle assembly
# Small opcode builders on top of test_pickles' u()/x(): exact control over what a stream holds.

EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, NONE = b")", b"}", b"]", b"N"
TUPLE, APPENDS, MEMOIZE, BINGET, BINPUT, BUILD, NEWOBJ = b"t", b"e", b"\x94", b"h", b"q", b"b", b"\x81"


def g(module: str, name: str) -> bytes:
    """STACK_GLOBAL module.name (protocol 4: dotted names resolve attribute by attribute)."""
    return u(module) + u(name) + STACK_GLOBAL


def s(text: str) -> bytes:
    return x(text)


def b_(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


def i1(n: int) -> bytes:
    return b"K" + bytes([n])


def t(*parts: bytes) -> bytes:
    return MARK + b"".join(parts) + TUPLE if parts else EMPTY_TUPLE


def lst(*parts: bytes) -> bytes:
    return EMPTY_LIST + MARK + b"".join(parts) + APPENDS


def r(func: bytes, *args: bytes) -> bytes:
    """func(*args)."""
    return func + t(*args) + REDUCE


def pk(body: bytes) -> bytes:
    return PROTO4 + body + STOP


def method(name: str, obj: bytes, *args: bytes) -> bytes:
    """obj.name(*args) through operator.methodcaller."""
    return r(r(g("operator", "methodcaller"), s(name), *args), obj)


def touch_src(c: Canary) -> str:
    """Python source that creates the canary."""
    return f"open({str(c.path)!r}, 'w').close()"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def stream_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each pickle stream in ``data``, read with pickletools (no unpickling)."""
    spans, f = [], io.BytesIO(data)
    while f.tell() < len(data):
        start = f.tell()
        for opcode, _, pos in pickletools.genops(f):
            if opcode.name == "STOP":
                spans.append((start, pos + 1))
                f.seek(pos + 1)
                break
        else:
            break
        if len(spans) == 5 and data.startswith(b"\x80\x02\x8a\x0a"):
            break  # a legacy torch file: raw storage bytes follow the fifth pickle
    return spans


def rewrite_zip(path: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> None:
    """Rewrite a zip archive, replacing some members and adding others (torch archives are plain zips)."""
    replace, add = replace or {}, add or {}
    members = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            members.append((info.filename, data))
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
        for name, data in add.items():
            zf.writestr(name, data)


def member_name(path: Path, suffix: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return next(n for n in zf.namelist() if n.endswith(suffix))


# ---------------------------------------------------------------------------------------- builders
# Each builder writes one sample into ``d`` whose payload targets canary ``c`` and returns its path.


def _joblib_list(d: Path, c: Canary, items, compress=0, name="model.joblib") -> Path:
    path = d / name
    joblib.dump(items, path, compress=compress)
    return path


def _compressed(kind: str):
    def build(d, c):
        if kind == "lz4":
            pytest.importorskip("lz4", reason="joblib's lz4 compression needs the lz4 package, not installed here")
        return _joblib_list(d, c, [np.arange(40.0), c.payload()], compress=(kind, 3))

    return build


def _torch_zip(d, c):
    path = d / "checkpoint.pt"
    torch.save({"w": torch.ones(3), "trap": c.payload()}, path)
    return path


def _torch_zip_other_member(d, c):
    path = d / "weights.pt"
    torch.save({"w": torch.ones(3)}, path)
    folder = member_name(path, "data.pkl").rsplit("/", 1)[0]
    rewrite_zip(path, add={f"{folder}/extra.pkl": pickle.dumps(c.payload(), 2)})
    return path


def _torch_legacy(d, c):
    path = d / "legacy.pt"
    torch.save({"w": torch.ones(3), "trap": c.payload()}, path, _use_new_zipfile_serialization=False)
    return path


def _torch_legacy_stream(index: int):
    """A legacy torch file whose ``index``-th pickle (of magic, protocol, sys_info, object, storage keys)
    is replaced by a payload that still yields what torch.load expects there."""

    def build(d, c):
        path = d / f"legacy-stream{index}.pt"
        torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
        data = path.read_bytes()
        spans = stream_spans(data)
        assert len(spans) == 5
        start, end = spans[index]
        original = pickle.loads(data[start:end])  # numbers, dicts and strings torch wrote: no code
        # [payload result, original][1]: operator.itemgetter(1) is what keeps torch.load going
        trap = pk(r(r(g("operator", "itemgetter"), i1(1)),
                    t(r(g("os", "system"), s(c.command)), pickle.dumps(original, 2)[2:-1])))
        return write(path, data[:start] + trap + data[end:])

    return build


def _torchscript_member(suffix: str):
    def build(d, c):
        path = d / f"scripted-{suffix.replace('.', '-')}.pt"
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
        rewrite_zip(path, replace={suffix: pickle.dumps(c.payload(), 2)})
        return path

    return build


def _torchscript_code(d, c):
    path = d / "saves-to-disk.pt"
    torch.jit.save(torch.jit.script(SavesToDisk(str(c.path))), path)
    return path


def _npy(d, c):
    path = d / "objects.npy"
    np.save(path, np.array([c.payload(), 1], dtype=object), allow_pickle=True)
    return path


def _npz(d, c):
    path = d / "arrays.npz"
    np.savez(path, plain=np.arange(3), objects=np.array([c.payload()], dtype=object))
    return path


def _zip_with(name: str, make):
    def build(d, c):
        inner = make(d, c)
        path = d / "bundle.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("README.txt", "models for the demo")
            zf.writestr(name, inner if isinstance(inner, bytes) else inner.read_bytes())
        if isinstance(inner, Path):
            inner.unlink()
        return path

    return build


def _nested_zip(d, c):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep/model.pkl", pickle.dumps(c.payload(), 4))
    path = d / "outer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
    return path


def _zip_slip(d, c):
    path = d / "slip.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.pkl", pickle.dumps({"weights": [1.0, 2.0]}, 4))
        zf.writestr(f"../{c.path.name}", "extracted outside the folder")  # lands on the canary
    return path


def _pickle(make):
    """A builder for a hand-assembled or dumped pickle: ``make(c, d) -> bytes``."""

    def build(d, c):
        return write(d / "model.pkl", make(c, d))

    return build


def _pickle_named(name: str, make):
    """The same, under a name that says nothing about pickles."""

    def build(d, c):
        return write(d / name, make(c, d))

    return build


def _source_file(d: Path) -> Path:
    src = d / "source.txt"
    src.write_text("copied by the payload\n")
    return src


def _code_type_args(c: Canary) -> bytes:
    """types.CodeType(...)'s positional arguments for a code object that creates the canary (3.11+ layout)."""
    code = compile(touch_src(c), "<payload>", "exec")
    if sys.version_info < (3, 11):
        pytest.skip("the CodeType argument layout assembled here is the one of Python 3.11 and later")
    parts = [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_nlocals, code.co_stacksize,
             code.co_flags, code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_filename,
             code.co_name, code.co_qualname, code.co_firstlineno, code.co_linetable, code.co_exceptiontable,
             code.co_freevars, code.co_cellvars]
    return pickle.dumps(tuple(parts), 4)[2:-1]  # the tuple's opcodes, without PROTO/STOP


def _keras_lambda(suffix: str):
    def build(d, c):
        keras = pytest.importorskip("keras")
        # the body is armed only where the control sets the variable: Keras runs a Lambda while building
        fn = eval(f"lambda t: (__import__('os').environ.get('MODELPORT_ARMED') and open({str(c.path)!r}, 'w')"
                  ".close(), t)[1]")
        path = d / f"lambda{suffix}"
        keras.Sequential([keras.Input((3,)), keras.layers.Lambda(fn)]).save(path)
        keras.backend.clear_session()
        return path

    return build


def _keras_custom(suffix: str):
    def build(d, c):
        keras = pytest.importorskip("keras")

        @keras.saving.register_keras_serializable(package="acme")
        class Touch(keras.layers.Layer):
            def call(self, inputs):
                return inputs

        path = d / f"custom{suffix}"
        keras.Sequential([keras.Input((3,)), Touch()]).save(path)
        keras.backend.clear_session()
        return path

    return build


def _savedmodel(op: str):
    def build(d, c):
        tf = pytest.importorskip("tensorflow")
        target = str(c.path)

        class Module(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
            def __call__(self, x):
                if op == "write":
                    tf.io.write_file(target, tf.strings.as_string(x[0]))
                else:
                    x = x + tf.strings.to_number(tf.io.read_file(target))
                return x * 2

        path = d / f"{op}-savedmodel"
        tf.saved_model.save(Module(), str(path))
        return path

    return build


# -- issue 12: what the static scan reads, and how (pt2 members, TorchScript tokens, headerless pickles, raw zip
# members, 7-Zip, parser divergence) and the rule for names off the allowlist


def _export_archive(d: Path, name: str, edit) -> Path:
    """A real torch.export.save archive, rebuilt with ``edit(members, root)`` applied to its {name: bytes}."""
    class Affine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x)

    base = d / "base.pt2"
    torch.export.save(torch.export.export(Affine(), (torch.randn(2, 3),)), base)
    with zipfile.ZipFile(base) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    base.unlink()
    root = next(iter(members)).split("/")[0]
    edit(members, root)
    path = d / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def _config_entry(members: dict, root: str, folder: str, fqn: str, entry: dict) -> None:
    config_name = f"{root}/data/{folder}/model_{folder}_config.json"
    config = json.loads(members[config_name])
    config["config"][fqn] = entry
    members[config_name] = json.dumps(config).encode()


def _tensor_meta(members: dict, root: str) -> dict:
    weights = json.loads(members[f"{root}/data/weights/model_weights_config.json"])["config"]
    return next(iter(weights.values()))["tensor_meta"]


def _torch_saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _pt2_opaque_object(d, c):
    """An opaque_obj_ constant whose entry says use_pickle: false (and carries a tensor meta, so the raw-tensor
    pass accepts it): torch.export.load still reads it with pickle.loads."""
    def edit(members, root):
        data = pickle.dumps(c.payload(), 2)
        members[f"{root}/data/constants/opaque_obj_0"] = data + bytes(-len(data) % 8)
        _config_entry(members, root, "constants", "trap", {"path_name": "opaque_obj_0", "is_param": False,
                                                            "use_pickle": False, "tensor_meta": _tensor_meta(members, root)})
    return _export_archive(d, "opaque.pt2", edit)


def _pt2_custom_object(d, c):
    def edit(members, root):
        members[f"{root}/data/constants/custom_obj_0"] = pickle.dumps(c.payload(), 2)
        _config_entry(members, root, "constants", "trap", {"path_name": "custom_obj_0", "is_param": False,
                                                            "use_pickle": False, "tensor_meta": None})
    return _export_archive(d, "custom.pt2", edit)


def _pt2_pickled_weight(d, c):
    def edit(members, root):
        members[f"{root}/data/weights/weight_9"] = _torch_saved({"x": c.payload()})
        _config_entry(members, root, "weights", "trap", {"path_name": "weight_9", "is_param": False, "use_pickle": True,
                                                          "tensor_meta": None})
    return _export_archive(d, "weight.pt2", edit)


def _pt2_sample_inputs(d, c):
    def edit(members, root):
        members[f"{root}/data/sample_inputs/model.pt"] = _torch_saved(((c.payload(),), {}))
    return _export_archive(d, "sample.pt2", edit)


def _pt2_legacy_weights(d, c):
    """The legacy layout: data/weights/<model>.pt holds the whole state dict and is read with torch.load."""
    def edit(members, root):
        members[f"{root}/data/weights/model.pt"] = _torch_saved({"lin.weight": torch.ones(2, 3), "trap": c.payload()})
    return _export_archive(d, "legacy-weights.pt2", edit)


def _pt2_aoti(d, c):
    def edit(members, root):
        members[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF" + bytes(60)
    return _export_archive(d, "aoti.pt2", edit)


def _scripted_code(spelling: bytes):
    """SavesToDisk scripted and saved, its code/ source respelled: ``torch.save(x, target)`` becomes ``spelling``
    (the debug tables that map source offsets are dropped, as an editor of the archive would)."""
    def build(d, c):
        path = d / "respelled.pt"
        torch.jit.save(torch.jit.script(SavesToDisk(str(c.path))), path)
        with zipfile.ZipFile(path) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        code = next(n for n, data in members.items() if n.endswith(".py") and b"torch.save(x, target)" in data)
        members[code] = members[code].replace(b"torch.save(x, target)", spelling)
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                if not name.endswith(".debug_pkl"):
                    zf.writestr(name, data)
        return path

    return build


def _zip_header_patch(how: str):
    """A torch.save archive whose data.pkl (a payload) has a header Python's zipfile refuses."""
    def build(d, c):
        data = bytearray(_torch_saved({"w": torch.ones(2), "trap": c.payload()}))
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
            info = next(i for i in zf.infolist() if i.filename.endswith("/data.pkl"))
        central = _central_entry(bytes(data), info.filename)
        local = info.header_offset
        if how == "crc":
            for at in (local + 14, central + 16):
                struct.pack_into("<I", data, at, struct.unpack_from("<I", data, at)[0] ^ 0x5A5A5A5A)
        elif how == "local-name":
            n = struct.unpack_from("<H", data, local + 26)[0]
            data[local + 30 + n - 3:local + 30 + n] = b"zzz"
        else:
            bit = {"encrypted": 0x1, "patched": 0x20}[how]
            for at in (local + 6, central + 8):
                struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | bit)
        return write(d / f"{how}.pt", bytes(data))

    return build


def _central_entry(data: bytes, name: str) -> int:
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n] == name.encode():
            return at
        at += 4


def _sevenzip(members: dict, password=None):
    def build(d, c):
        py7zr = pytest.importorskip("py7zr", reason="7-Zip archives are read with py7zr, not installed here")
        path = d / "models.7z"
        with py7zr.SevenZipFile(path, "w", password=password) as archive:
            for name, make in members.items():
                archive.writestr(make(c, d), name)
        return path

    return build


def _frame(body: bytes, length: int) -> bytes:
    return b"\x95" + struct.pack("<Q", length) + body


def _frame_straddle(c, d) -> bytes:
    """PROTO 4, a FRAME that ends one byte into an opcode, the payload after it: pickle's C unpickler ignores frame
    bounds and runs it; Python's unpickler (joblib's) stops at the frame end."""
    head = u("model") + MEMOIZE + POP
    rest = r(g("os", "system"), s(c.command)) + STOP
    return PROTO4 + _frame(head + rest, len(head) + 1)


def _frame_leftover(c, d) -> bytes:
    """A FRAME that runs past the first stream's STOP, over a second stream: pickle's C unpickler, loading again,
    reads that stream; Python's unpickler skips the rest of the frame."""
    first = u("weights") + STOP
    hidden = PROTO4 + r(g("os", "system"), s(c.command)) + STOP
    return PROTO4 + _frame(first + hidden, len(first) + len(hidden)) + pickle.dumps({"w": 1}, 4)


def _headerless(first: bytes):
    def make(c, d):
        cmd = c.command.encode()
        return (first + b"\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(cmd)]) + cmd + b"\x85R.")

    return make


def _gadget(module: str, name: str, *args_of):
    """module.name(*args), the arguments built from the canary (each ``f(c, d) -> opcodes``)."""
    return P(lambda c, d: pk(r(g(module, name), *(a(c, d) for a in args_of))))


def _lib2to3_grammar(c, d) -> bytes:
    import importlib.util

    spec = importlib.util.find_spec("lib2to3")
    if spec is None:
        pytest.skip("lib2to3 is gone from this Python (3.13+)")
    grammar = Path(spec.origin).with_name("Grammar.txt")
    return s(str(grammar))


# ------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Technique:
    id: str
    build: object  # (folder, canary) -> path
    verdict: str  # the exact verdict convert.inspect must give
    flags: tuple  # ("qualname", verdict) pairs that must be among the globals, or ("~", text) in a finding
    live: str | None = None  # loader of the positive control (see CONTROL), None with ``dead``
    dead: str = ""  # why no loader runs it (the row is then not in test_payload_is_live)
    stdin: str = ""


def T(id, build, verdict, *flags, live=None, dead="", stdin=""):
    assert (live is None) == bool(dead), id
    return Technique(id, build, verdict, flags, live, dead, stdin)


SYSTEM = ("posix.system", "unsafe")  # os.system pickles as posix.system on Linux
P = _pickle
ARR = np.arange(50.0)

TECHNIQUES = [
    # -- every stream in a file
    T("streams/second-stream-after-STOP", P(lambda c, d: pickle.dumps([1, 2], 4) + pickle.dumps(c.payload(), 2)),
      "unsafe", SYSTEM, live="pickle-all"),
    T("streams/joblib-payload-before-array-blocks",
      lambda d, c: _joblib_list(d, c, [c.payload(), ARR, ARR * 2]), "unsafe", SYSTEM, live="joblib"),
    T("streams/joblib-payload-between-array-blocks",
      lambda d, c: _joblib_list(d, c, [ARR, c.payload(), ARR * 2]), "unsafe", SYSTEM, live="joblib"),
    T("streams/joblib-payload-after-array-blocks",
      lambda d, c: _joblib_list(d, c, [ARR, ARR * 2, c.payload()]), "unsafe", SYSTEM, live="joblib"),
    # -- compressed joblib
    *[T(f"compressed/joblib-{kind}", _compressed(kind), "unsafe", SYSTEM, live="joblib")
      for kind in ("zlib", "gzip", "bz2", "lzma", "xz", "lz4")],
    # -- torch archives
    T("torch/zip-data.pkl", _torch_zip, "unsafe", SYSTEM, live="torch"),
    T("torch/zip-every-pkl-member (extra.pkl)", _torch_zip_other_member, "unsafe", SYSTEM, live="member:extra.pkl"),
    T("torch/legacy-object-pickle", _torch_legacy, "unsafe", SYSTEM, live="torch"),
    T("torch/legacy-sys_info-pickle (3rd of 5)", _torch_legacy_stream(2), "unsafe", ("os.system", "unsafe"),
      live="torch"),
    T("torch/legacy-storage-keys-pickle (5th of 5)", _torch_legacy_stream(4), "unsafe", ("os.system", "unsafe"),
      live="torch"),
    T("torchscript/constants.pkl", _torchscript_member("constants.pkl"), "unsafe", SYSTEM,
      live="member:constants.pkl"),
    T("torchscript/data.pkl", _torchscript_member("data.pkl"), "unsafe", SYSTEM, live="member:data.pkl"),
    T("torchscript/code-calls-torch.save", _torchscript_code, "unsafe", ("~", "TorchScript code calls torch.save"),
      live="torchscript-run"),
    # -- numpy
    T("numpy/npy-object-array", _npy, "unsafe", SYSTEM, live="numpy"),
    T("numpy/npz-object-array", _npz, "unsafe", SYSTEM, live="numpy"),
    # -- zip archives holding any of these
    T("zip/pickle-member", _zip_with("models/model.pkl", lambda d, c: pickle.dumps(c.payload(), 4)), "unsafe",
      SYSTEM, live="member:models/model.pkl"),
    T("zip/compressed-joblib-member",
      _zip_with("models/model.joblib", lambda d, c: _joblib_list(d, c, [ARR, c.payload()], 3, "m.joblib")),
      "unsafe", SYSTEM, live="member:models/model.joblib:joblib"),
    T("zip/compressed-joblib-member-named-by-nothing",
      _zip_with("models/blob.dat", lambda d, c: _joblib_list(d, c, [ARR, c.payload()], 3, "m.joblib")),
      "unsafe", SYSTEM, live="member:models/blob.dat:joblib"),
    T("zip/protocol-0-pickle-member-named-by-nothing", _zip_with("notes/readme.txt",
                                                                 lambda d, c: pickle.dumps(c.payload(), 0)),
      "unsafe", SYSTEM, live="member:notes/readme.txt"),
    T("zip/torch-archive-member", _zip_with("nets/net.pt", _torch_zip), "unsafe", SYSTEM,
      live="member:nets/net.pt:torch"),
    T("zip/legacy-torch-member", _zip_with("old/net.pt", _torch_legacy), "unsafe", SYSTEM,
      live="member:old/net.pt:torch"),
    T("zip/torchscript-member-code", _zip_with("scripted/model.pt", _torchscript_code), "unsafe",
      ("~", "TorchScript code calls torch.save"), live="member:scripted/model.pt:torchscript-run"),
    T("zip/npy-member", _zip_with("features.npy", _npy), "unsafe", SYSTEM, live="member:features.npy:numpy"),
    T("zip/zip-inside-zip", _nested_zip, "unsafe", SYSTEM, live="member:inner.zip:zip-member:deep/model.pkl"),
    T("zip/dotdot-entry-path", _zip_slip, "suspicious", ("~", "escapes the archive"),
      dead="Python's extractors drop '..' (the finding is for naive ones); nothing is unpickled"),
    # -- opcode tricks
    T("opcode/GLOBAL-result-via-BINPUT-BINGET",
      P(lambda c, d: b"cos\nsystem\nq\x000N0h\x00(S'" + c.command.encode() + b"'\ntR."), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    T("opcode/STACK_GLOBAL-result-via-MEMOIZE-BINGET",
      P(lambda c, d: pk(g("os", "system") + MEMOIZE + POP + NONE + POP + BINGET + b"\x00" + t(s(c.command))
                        + REDUCE)), "unsafe", ("os.system", "unsafe"), live="pickle"),
    T("opcode/STACK_GLOBAL-operands-via-MEMOIZE-BINGET",
      P(lambda c, d: pk(u("os") + MEMOIZE + POP + u("system") + MEMOIZE + POP + BINGET + b"\x00" + BINGET
                        + b"\x01" + STACK_GLOBAL + t(s(c.command)) + REDUCE)), "unsafe", ("os.system", "unsafe"),
      live="pickle"),
    T("opcode/STACK_GLOBAL-operands-via-BINPUT-BINGET",
      P(lambda c, d: pk(u("decoy") + BINPUT + b"\x07" + POP + u("os") + BINPUT + b"\x03" + POP + u("system")
                        + BINPUT + b"\x05" + POP + BINGET + b"\x03" + BINGET + b"\x05" + STACK_GLOBAL
                        + t(s(c.command)) + REDUCE)), "unsafe", ("os.system", "unsafe"), live="pickle"),
    T("opcode/INST", P(lambda c, d: b"(S'" + c.command.encode() + b"'\nios\nsystem\n."), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    T("opcode/OBJ", P(lambda c, d: PROTO2 + b"(cos\nsystem\n" + x(c.command) + b"o."), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    T("opcode/NEWOBJ-partial-then-REDUCE",
      P(lambda c, d: pk(g("functools", "partial") + t(g("os", "system"), s(c.command)) + NEWOBJ + EMPTY_TUPLE
                        + REDUCE)), "unsafe", ("os.system", "unsafe"), ("functools.partial", "suspicious"),
      live="pickle"),
    T("opcode/REDUCE", P(lambda c, d: pickle.dumps(c.payload(), 2)), "unsafe", SYSTEM, live="pickle"),
    T("opcode/BUILD-sets-__setstate__-then-BUILD-calls-it",
      P(lambda c, d: pk(g("types", "SimpleNamespace") + EMPTY_TUPLE + NEWOBJ + NONE + EMPTY_DICT + u("__setstate__")
                        + g("os", "system") + b"s" + b"\x86" + BUILD + s(c.command) + BUILD)), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    T("opcode/call-hidden-behind-POP",
      P(lambda c, d: pk(r(g("os", "system"), s(c.command)) + POP + NONE)), "unsafe", ("os.system", "unsafe"),
      live="pickle"),
    # -- dotted attribute paths and aliases of os
    T("dotted/pathlib.os.system", P(lambda c, d: pk(r(g("pathlib", "os.system"), s(c.command)))), "unsafe",
      ("pathlib.os.system", "unsafe"), live="pickle"),
    T("dotted/os.path.os.system", P(lambda c, d: pk(r(g("os.path", "os.system"), s(c.command)))), "unsafe",
      ("os.path.os.system", "unsafe"), live="pickle"),
    T("dotted/private-alias-random._os.system", P(lambda c, d: pk(r(g("random", "_os.system"), s(c.command)))),
      "unsafe", ("random._os.system", "unsafe"), live="pickle"),
    T("dotted/private-alias-argparse._os.system", P(lambda c, d: pk(r(g("argparse", "_os.system"), s(c.command)))),
      "unsafe", ("argparse._os.system", "unsafe"), live="pickle"),
    T("dotted/renamed-open-tarfile.bltn_open", P(lambda c, d: pk(r(g("tarfile", "bltn_open"), s(str(c.path)),
                                                                  s("w")))),
      "unsafe", ("tarfile.bltn_open", "unsafe"), live="pickle"),
    T("dotted/gzip.open-writes", P(lambda c, d: pk(r(g("gzip", "open"), s(str(c.path)), s("wb")))), "unsafe",
      ("gzip.open", "unsafe"), live="pickle"),
    T("alias/posix.system", P(lambda c, d: b"cposix\nsystem\n(S'" + c.command.encode() + b"'\ntR."), "unsafe",
      ("posix.system", "unsafe"), live="pickle"),
    T("alias/nt.system", P(lambda c, d: b"cnt\nsystem\n(S'" + c.command.encode() + b"'\ntR."), "unsafe",
      ("nt.system", "unsafe"), dead="the nt module exists only on Windows"),
    # -- dangerous callables
    T("callable/builtins.eval", P(lambda c, d: pk(r(g("builtins", "eval"), s(touch_src(c))))), "unsafe",
      ("builtins.eval", "unsafe"), live="pickle"),
    T("callable/builtins.exec", P(lambda c, d: pk(r(g("builtins", "exec"), s(touch_src(c))))), "unsafe",
      ("builtins.exec", "unsafe"), live="pickle"),
    T("callable/builtins.compile", P(lambda c, d: pk(r(g("builtins", "exec"), r(g("builtins", "compile"),
                                                                              s(touch_src(c)), s("<x>"), s("exec"))))),
      "unsafe", ("builtins.compile", "unsafe"), live="pickle"),
    T("callable/builtins.getattr", P(lambda c, d: pk(r(r(g("builtins", "getattr"), r(g("builtins", "__import__"),
                                                                                     s("os")), s("system")),
                                                     s(c.command)))),
      "unsafe", ("builtins.getattr", "unsafe"), live="pickle"),
    T("callable/builtins.__import__",
      P(lambda c, d: pk(method("system", r(g("builtins", "__import__"), s("os")), s(c.command)))), "unsafe",
      ("builtins.__import__", "unsafe"), live="pickle"),
    T("callable/builtins.open", P(lambda c, d: pk(r(g("builtins", "open"), s(str(c.path)), s("w")))), "unsafe",
      ("builtins.open", "unsafe"), live="pickle"),
    T("callable/importlib.import_module",
      P(lambda c, d: pk(method("system", r(g("importlib", "import_module"), s("os")), s(c.command)))), "unsafe",
      ("importlib.import_module", "unsafe"), live="pickle"),
    T("callable/runpy._run_code", P(lambda c, d: pk(r(g("runpy", "_run_code"), s(touch_src(c)), EMPTY_DICT))),
      "unsafe", ("runpy._run_code", "unsafe"), live="pickle"),
    T("callable/pty.spawn", P(lambda c, d: pk(r(g("pty", "spawn"), lst(s("touch"), s(str(c.path)))))), "unsafe",
      ("pty.spawn", "unsafe"), live="pickle"),
    T("callable/code.InteractiveInterpreter",
      P(lambda c, d: pk(method("runsource", r(g("code", "InteractiveInterpreter")), s(touch_src(c))))), "unsafe",
      ("code.InteractiveInterpreter", "unsafe"), live="pickle"),
    T("callable/cProfile.run", P(lambda c, d: pk(r(g("cProfile", "run"), s(touch_src(c))))), "unsafe",
      ("cProfile.run", "unsafe"), live="pickle"),
    T("callable/profile.run", P(lambda c, d: pk(r(g("profile", "run"), s(touch_src(c))))), "unsafe",
      ("profile.run", "unsafe"), live="pickle"),
    T("callable/pdb.run", P(lambda c, d: pk(r(g("pdb", "run"), s(touch_src(c))))), "unsafe", ("pdb.run", "unsafe"),
      live="pickle", stdin="continue\n"),
    T("callable/bdb.Bdb.run", P(lambda c, d: pk(method("run", r(g("bdb", "Bdb")), s(touch_src(c))))), "unsafe",
      ("bdb.Bdb", "unsafe"), live="pickle"),
    T("callable/pydoc.locate", P(lambda c, d: pk(r(r(g("pydoc", "locate"), s("os.system")), s(c.command)))),
      "unsafe", ("pydoc.locate", "unsafe"), live="pickle"),
    T("callable/pkgutil.resolve_name",
      P(lambda c, d: pk(r(r(g("pkgutil", "resolve_name"), s("os:system")), s(c.command)))), "unsafe",
      ("pkgutil.resolve_name", "unsafe"), live="pickle"),
    T("callable/ctypes.CDLL", P(lambda c, d: pk(method("system", r(g("ctypes", "CDLL"), NONE),
                                                       b_(c.command.encode())))),
      "unsafe", ("ctypes.CDLL", "unsafe"), live="pickle"),
    T("callable/marshal.loads",
      P(lambda c, d: pk(r(r(g("types", "FunctionType"), r(g("marshal", "loads"),
                                                        b_(marshal.dumps(compile(touch_src(c), "<p>", "exec")))),
                          EMPTY_DICT)))), "unsafe", ("marshal.loads", "unsafe"), live="pickle"),
    T("callable/types.FunctionType+CodeType",
      P(lambda c, d: pk(r(r(g("types", "FunctionType"), g("types", "CodeType") + _code_type_args(c) + REDUCE,
                          EMPTY_DICT)))), "unsafe", ("types.FunctionType", "unsafe"), ("types.CodeType", "unsafe"),
      live="pickle"),
    T("callable/multiprocessing.Process",
      P(lambda c, d: pk(method("start", r(g("multiprocessing.context", "Process"), NONE, g("pathlib", "Path.touch"),
                                          NONE, t(r(g("pathlib", "PosixPath"), s(str(c.path)))))))), "unsafe",
      ("multiprocessing.context.Process", "unsafe"), live="pickle"),
    T("callable/socket.socket-binds-the-canary",
      P(lambda c, d: pk(method("bind", r(g("socket", "socket"), i1(1), i1(1)), s(str(c.path))))), "unsafe",
      ("socket.socket", "unsafe"), live="pickle"),
    T("callable/smtplib", P(lambda c, d: pk(method("bind", r(g("smtplib", "socket.socket"), i1(1), i1(1)),
                                                   s(str(c.path))))), "unsafe",
      ("smtplib.socket.socket", "unsafe"), live="pickle"),
    T("callable/urllib.request.urlretrieve",
      P(lambda c, d: pk(r(g("urllib.request", "urlretrieve"), s(_source_file(d).as_uri()), s(str(c.path))))),
      "unsafe", ("urllib.request.urlretrieve", "unsafe"), live="pickle"),
    T("callable/requests", P(lambda c, d: pk(r(g("requests", "utils.os.system"), s(c.command)))), "unsafe",
      ("requests.utils.os.system", "unsafe"), live="pickle"),
    T("callable/webbrowser.GenericBrowser",
      P(lambda c, d: pk(method("open", r(g("webbrowser", "GenericBrowser"), lst(s("touch"), s(str(c.path)))),
                               s("about:blank")))), "unsafe", ("webbrowser.GenericBrowser", "unsafe"), live="pickle"),
    T("callable/shutil.copyfile",
      P(lambda c, d: pk(r(g("shutil", "copyfile"), s(str(_source_file(d))), s(str(c.path))))), "unsafe",
      ("shutil.copyfile", "unsafe"), live="pickle"),
    T("callable/operator.attrgetter",
      P(lambda c, d: pk(r(r(r(g("operator", "attrgetter"), s("system")), g("pathlib", "os")), s(c.command)))),
      "unsafe", ("operator.attrgetter", "unsafe"), live="pickle"),
    T("callable/operator.methodcaller", P(lambda c, d: pk(method("system", g("pathlib", "os"), s(c.command)))),
      "unsafe", ("operator.methodcaller", "unsafe"), live="pickle"),
    # -- pickles that load more pickles
    T("nested/pickle.loads-raw-bytes", P(lambda c, d: pk(r(g("pickle", "loads"), b_(pickle.dumps(c.payload()))))),
      "unsafe", ("pickle.loads", "unsafe"), SYSTEM, live="pickle"),
    T("nested/_pickle.loads", P(lambda c, d: pk(r(g("_pickle", "loads"), b_(pickle.dumps(c.payload()))))),
      "unsafe", ("_pickle.loads", "unsafe"), SYSTEM, live="pickle"),
    T("nested/dill.loads", P(lambda c, d: pk(r(g("dill._dill", "loads"), b_(pickle.dumps(c.payload()))))),
      "unsafe", ("dill._dill.loads", "unsafe"), SYSTEM, dead="dill is not installed here, so nothing can resolve it"),
    T("nested/pickle.loads-hex", P(lambda c, d: pk(r(g("pickle", "loads"), r(g("builtins", "bytes.fromhex"),
                                                                          s(pickle.dumps(c.payload()).hex()))))),
      "unsafe", ("pickle.loads", "unsafe"), SYSTEM, live="pickle"),
    T("nested/pickle.loads-base64",
      P(lambda c, d: pk(r(g("pickle", "loads"), r(g("base64", "b64decode"),
                                                 s(base64.b64encode(pickle.dumps(c.payload())).decode()))))),
      "unsafe", ("pickle.loads", "unsafe"), SYSTEM, live="pickle"),
    # -- functools.partial wrapping any of these
    T("partial/REDUCE-partial(exec)()", P(lambda c, d: pk(r(r(g("functools", "partial"), g("builtins", "exec"),
                                                              s(touch_src(c)))))),
      "unsafe", ("builtins.exec", "unsafe"), ("functools.partial", "suspicious"), live="pickle"),
    T("partial/pickled-partial(os.system)-object-called",
      P(lambda c, d: pickle.dumps(Call(functools.partial(os.system, c.command)), 2)), "unsafe", SYSTEM,
      ("functools.partial", "suspicious"), live="pickle"),
    T("partial/partial(pickle.loads)", P(lambda c, d: pickle.dumps(Call(functools.partial(pickle.loads,
                                                                                          pickle.dumps(c.payload()))),
                                                                   4)),
      "unsafe", ("_pickle.loads", "unsafe"), SYSTEM, live="pickle"),
    # -- pt2 archives: every member torch.export.load unpickles, whatever the config's use_pickle says
    T("pt2/opaque_obj-constant-despite-use_pickle-false", _pt2_opaque_object, "unsafe", SYSTEM, live="torch-export"),
    T("pt2/custom_obj-constant", _pt2_custom_object, "unsafe", SYSTEM,
      dead="torch reads custom_obj_* with its TorchScript unpickler, which resolves only torch's own classes"),
    T("pt2/weight-entry-with-use_pickle", _pt2_pickled_weight, "unsafe", SYSTEM, live="torch-export"),
    T("pt2/sample-inputs", _pt2_sample_inputs, "unsafe", SYSTEM, live="torch-export"),
    T("pt2/legacy-weights-layout-data/weights/model.pt", _pt2_legacy_weights, "unsafe", SYSTEM, live="torch-export"),
    T("pt2/aotinductor-native-code", _pt2_aoti, "unsafe", ("~", "native code (AOTInductor)"),
      dead="a loadable AOTInductor package needs a compiler run and device metadata; the member is the code itself"),
    # -- TorchScript code judged by tokens, whatever the spelling TorchScript's parser accepts
    *[T(f"torchscript/code-{label}", _scripted_code(spelling), "unsafe", ("~", "TorchScript code calls torch.save"),
        live="torchscript-run")
      for label, spelling in (("spaces-torch . save (", b"torch . save (x, target)"),
                              ("comment-and-parens-across-lines", b"(torch  # where to\n      .save)(x, target)"),
                              ("line-continuation", b"torch.\\\n      save(x, target)"),
                              ("getattr(torch, 'save')", b'getattr(torch, "save")(x, target)'),
                              ("ops . aten . save", b"ops . aten . save(x, target)"))],
    # -- pickles whatever their first opcode and their name: scanned, never skipped as text or unknown bytes
    T("headerless/protocol-0-payload-then-garbage-no-STOP",
      _pickle_named("notes.txt", lambda c, d: b"cos\nsystem\n(S'" + c.command.encode() + b"'\ntR" + b" ~~ not a pickle ~~"),
      "unsafe", ("os.system", "unsafe"), live="pickle"),
    T("headerless/FRAME-first-no-PROTO", _pickle_named("blob.dat", lambda c, d: _frame(_headerless(b"")(c, d), 0)),
      "unsafe", ("os.system", "unsafe"), live="pickle"),
    T("headerless/SHORT_BINUNICODE-first", _pickle_named("data.bin", _headerless(b"")), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    T("headerless/EMPTY_SET-then-POP-first", _pickle_named("weights", _headerless(b"\x8f0")), "unsafe",
      ("os.system", "unsafe"), live="pickle"),
    # -- 7-Zip archives are scanned (or unknown), never "not a model"
    T("7z/pickle-member", _sevenzip({"models/model.pkl": lambda c, d: pickle.dumps(c.payload(), 4)}), "unsafe",
      SYSTEM, live="7z:models/model.pkl"),
    T("7z/headerless-member-named-by-nothing", _sevenzip({"README": lambda c, d: pickle.dumps(c.payload(), 0)}),
      "unsafe", SYSTEM, live="7z:README"),
    T("7z/encrypted", _sevenzip({"model.pkl": lambda c, d: pickle.dumps(c.payload(), 4)}, password="s3cret"),
      "unknown", ("~", "encrypted 7-Zip archive"), dead="its members open only with the password"),
    # -- zip members read as torch reads them: what Python's zipfile refuses is scanned, and is a finding
    T("zipraw/bad-CRC-data.pkl", _zip_header_patch("crc"), "unsafe", SYSTEM, ("~", "CRC"), live="torch"),
    T("zipraw/local-header-name-differs", _zip_header_patch("local-name"), "unsafe", SYSTEM,
      ("~", "in its local header"), live="torch"),
    T("zipraw/encryption-flag", _zip_header_patch("encrypted"), "unsafe", SYSTEM, ("~", "claims to be encrypted"),
      dead="torch 2.13 refuses it as well (checked: 'unsupported encryption'); the raw bytes are scanned anyway"),
    T("zipraw/patched-data-flag", _zip_header_patch("patched"), "unsafe", SYSTEM, ("~", "patched data"),
      dead="torch 2.13 refuses it as well (checked: 'unsupported feature'); the raw bytes are scanned anyway"),
    # -- parser divergence: frames that do not match the opcodes
    T("frame/opcode-straddles-FRAME-end", P(_frame_straddle), "unsafe", ("~", "parser divergence"),
      ("os.system", "unsafe"), live="pickle"),
    T("frame/STOP-before-FRAME-end-hides-a-stream", P(_frame_leftover), "unsafe", ("~", "parser divergence"),
      ("os.system", "unsafe"), live="pickle-all"),
    # -- the rule: stdlib / framework / client names off the allowlist are unsafe (gadgets not designed around)
    T("rule/uuid._get_command_stdout", _gadget("uuid", "_get_command_stdout", lambda c, d: s("touch"),
                                               lambda c, d: s(str(c.path))),
      "unsafe", ("uuid._get_command_stdout", "unsafe"), live="pickle"),
    T("rule/torch.utils.collect_env.run", _gadget("torch.utils.collect_env", "run", lambda c, d: s(c.command)),
      "unsafe", ("torch.utils.collect_env.run", "unsafe"), live="pickle"),
    T("rule/torch._inductor.codecache.PyCodeCache.load",
      _gadget("torch._inductor.codecache", "PyCodeCache.load", lambda c, d: s(touch_src(c))), "unsafe",
      ("torch._inductor.codecache.PyCodeCache.load", "unsafe"), live="pickle"),
    T("rule/logging.config.dictConfig-factory",
      P(lambda c, d: pk(r(g("logging.config", "dictConfig"), pickle.dumps(
          {"version": 1, "handlers": {"h": {"()": "os.system", "command": c.command}}}, 2)[2:-1]))),
      "unsafe", ("logging.config.dictConfig", "unsafe"), live="pickle"),
    T("rule/lib2to3-grammar-generator-writes",
      _gadget("lib2to3.pgen2.driver", "load_grammar", _lib2to3_grammar, lambda c, d: s(str(c.path)),
              lambda c, d: b"\x88", lambda c, d: b"\x88"),
      "unsafe", ("lib2to3.pgen2.driver.load_grammar", "unsafe"), live="pickle"),
    T("rule/_pyrepl-interpreter", _gadget("_pyrepl.console", "InteractiveColoredConsole"), "unsafe",
      ("_pyrepl.console.InteractiveColoredConsole", "unsafe"), dead="a Python 3.13+ module; this interpreter has none"),
    T("rule/platform._syscmd_file", _gadget("platform", "_syscmd_file", lambda c, d: s("/etc/hostname")), "unsafe",
      ("platform._syscmd_file", "unsafe"), dead="it runs the file program and returns its output: it creates nothing"),
    T("rule/imaplib-mail-client", _gadget("imaplib", "IMAP4", lambda c, d: s("localhost")), "unsafe",
      ("imaplib.IMAP4", "unsafe"), dead="it connects to a mail server; nothing listens here"),
    T("rule/numpy.lib.format.open_memmap-writes",
      _gadget("numpy.lib.format", "open_memmap", lambda c, d: s(str(c.path)), lambda c, d: s("w+"),
              lambda c, d: NONE, lambda c, d: t(i1(4))),
      "unsafe", ("numpy.lib.format.open_memmap", "unsafe"), live="pickle"),
    T("rule/sklearn.utils._testing-runs-a-script",
      _gadget("sklearn.utils._testing", "assert_run_python_script_without_output", lambda c, d: s(touch_src(c))),
      "unsafe", ("sklearn.utils._testing.assert_run_python_script_without_output", "unsafe"), live="pickle"),
    T("rule/requests.get", _gadget("requests", "get", lambda c, d: s("http://127.0.0.1:9/")), "unsafe",
      ("requests.get", "unsafe"), dead="an HTTP request; nothing listens here"),
    T("rule/httpx.get", _gadget("httpx", "get", lambda c, d: s("http://127.0.0.1:9/")), "unsafe",
      ("httpx.get", "unsafe"), dead="an HTTP request (httpx is not even installed here)"),
    T("rule/aiohttp.ClientSession", _gadget("aiohttp", "ClientSession"), "unsafe", ("aiohttp.ClientSession", "unsafe"),
      dead="a network client session; nothing to create"),
    # -- Keras and SavedModel
    T("keras/.keras-Lambda-layer", _keras_lambda(".keras"), "unsafe", ("~", "Lambda layer"), live="keras"),
    T("keras/.h5-Lambda-layer", _keras_lambda(".h5"), "unsafe", ("~", "Lambda layer"), live="keras"),
    T("keras/.keras-custom-object", _keras_custom(".keras"), "suspicious", ("~", "custom object acme>Touch"),
      dead="its code is not in the file: it runs only where the acme package is installed"),
    T("keras/.h5-custom-object", _keras_custom(".h5"), "suspicious", ("~", "custom object acme>Touch"),
      dead="its code is not in the file: it runs only where the acme package is installed"),
    T("savedmodel/WriteFile", _savedmodel("write"), "unsafe", ("~", "WriteFile"), live="savedmodel"),
    T("savedmodel/ReadFile", _savedmodel("read"), "suspicious", ("~", "ReadFile"),
      dead="it reads a file (exfiltration); there is nothing it would create"),
]

# -- SavedModel graphs: what a serving signature or the loader reaches (issue 12 item 3; builders in
# savedmodel_payloads.py). Kept in one block of its own.
TECHNIQUES += [
    T("savedmodel/PrintV2-output_stream-file://", sp.print_to_file, "unsafe", ("~", "PrintV2 writes files"),
      live="savedmodel-serving"),
    T("savedmodel/DebugIdentity-debug_urls-file://", sp.debug_identity_to_file, "unsafe",
      ("~", "DebugIdentity writes files"), live="savedmodel-serving"),
    T("savedmodel/WriteFile-in-tf.cond-branch", sp.write_in_cond_branch, "unsafe",
      ("~", "WriteFile writes files, reached by signature"), live="savedmodel-serving"),
    T("savedmodel/WriteFile-in-nested-tf.function", sp.write_in_nested_function, "unsafe",
      ("~", "WriteFile writes files, reached by signature"), live="savedmodel-serving"),
    T("savedmodel/Save-op-in-TF1-signature (outside the saver)", sp.save_op_in_signature, "unsafe",
      ("~", "Save writes files, reached by signature"), live="savedmodel-serving"),
    T("savedmodel/TF1-main_op-writes", sp.tf1_init_writes("main_op"), "unsafe",
      ("~", "WriteFile writes files, run at load"), live="savedmodel-load"),
    T("savedmodel/TF1-legacy_init_op-writes", sp.tf1_init_writes("legacy_init_op"), "unsafe",
      ("~", "WriteFile writes files, run at load"), live="savedmodel-load"),
    T("savedmodel/TF2-resource-initializer-writes", sp.resource_initializer_writes, "unsafe",
      ("~", "WriteFile writes files, run at load"), live="savedmodel-load"),
    T("savedmodel/saver-restore-op-writes (crafted)", sp.saver_restore_writes, "unsafe",
      ("~", "WriteFile writes files, run by the saver"), live="savedmodel-load"),
    T("savedmodel/PyFunc (tf.numpy_function)", sp.numpy_function, "unsafe", ("~", "PyFunc calls Python code"),
      dead="the Python function lives in the process that saved it: a fresh loader has no callback to run"),
    T("savedmodel/op-not-on-the-allowlist (tf.data)", sp.dataset_reduce, "suspicious",
      ("~", "RangeDataset is not an op benign models use"),
      dead="nothing it does touches a file: the finding is that benign models hold no such op"),
]
BY_ID = {tech.id: tech for tech in TECHNIQUES}
assert len(BY_ID) == len(TECHNIQUES)
NEEDS_TORCH = ("torch/", "torchscript/", "zip/torch-", "zip/legacy-torch-", "zip/torchscript-", "pt2/", "zipraw/")


def _build(tech: Technique, folder: Path, canary: Canary) -> Path:
    if tech.id.startswith(NEEDS_TORCH) and torch is None:
        pytest.skip("torch is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    return tech.build(folder, canary)


def _assert_caught(tech: Technique, artifact) -> None:
    assert artifact.safety == tech.verdict, (tech.id, [f.what for f in artifact.findings])
    globals_ = {g.qualname: g.verdict for g in artifact.globals}
    for what, expected in tech.flags:
        if what == "~":
            assert any(expected in f.what and f.severity != "info" for f in artifact.findings), \
                (tech.id, [f.what for f in artifact.findings])
        else:
            assert globals_.get(what) == expected, (tech.id, globals_)


# --------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("tech", TECHNIQUES, ids=[t.id for t in TECHNIQUES])
def test_technique_is_caught(tech, canary, tmp_path, capsys):
    """The verdict, what earns it, and the exit code of ``modelport inspect`` (1 for unsafe, else 0)."""
    from compat.cli import main

    path = _build(tech, tmp_path / "sample", canary)
    _assert_caught(tech, convert.inspect(path))
    assert main(["inspect", str(path)]) == (1 if tech.verdict == "unsafe" else 0), capsys.readouterr().out[-2000:]


# Positive controls: each technique built against its own control canary and loaded for real in a child
# process. ``live`` names the loader; ``member:NAME[:LOADER]`` extracts an archive member first.
CONTROL = r'''
import io, os, pickle, sys, tempfile, zipfile
loader, path, stdin = sys.argv[1], sys.argv[2], sys.argv[3]
if stdin:
    sys.stdin = io.StringIO(stdin)

def run(loader, path):
    if loader.startswith("member:"):
        name, _, rest = loader[7:].partition(":")
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n == name or n.endswith("/" + name))
            data = zf.read(name)
        out = os.path.join(tempfile.mkdtemp(), os.path.basename(name))
        open(out, "wb").write(data)
        return run(rest.replace("zip-member:", "member:", 1) or "pickle", out)
    if loader == "pickle":
        return pickle.load(open(path, "rb"))
    if loader == "pickle-all":
        with open(path, "rb") as fh:
            while fh.peek(1):
                pickle.load(fh)
        return
    if loader == "joblib":
        import joblib
        return joblib.load(path)
    if loader == "torch":
        import torch
        return torch.load(path, weights_only=False)
    if loader == "torchscript-run":
        import torch
        return torch.jit.load(path)(torch.ones(2))
    if loader == "numpy":
        import numpy as np
        loaded = np.load(path, allow_pickle=True)
        return [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else loaded
    if loader == "torch-export":
        import torch
        return torch.export.load(path)
    if loader.startswith("7z:"):
        import py7zr
        name = loader[3:]
        out = tempfile.mkdtemp()
        with py7zr.SevenZipFile(path, "r") as archive:
            archive.extract(path=out, targets=[name])
        return pickle.load(open(os.path.join(out, name), "rb"))
    if loader == "keras":
        os.environ["MODELPORT_ARMED"] = "1"
        import keras, numpy as np
        return keras.saving.load_model(path, safe_mode=False)(np.ones((1, 3), "float32"))
    if loader == "savedmodel":
        import tensorflow as tf
        return tf.saved_model.load(path)(tf.ones([2]))
    if loader == "savedmodel-load":
        import tensorflow as tf
        return tf.saved_model.load(path)
    if loader == "savedmodel-serving":  # serving_default, fed ones of the shapes it declares
        import tensorflow as tf
        fn = tf.saved_model.load(path).signatures["serving_default"]
        specs = fn.structured_input_signature[1]
        return fn(**{k: tf.ones([d or 1 for d in s.shape], s.dtype) for k, s in specs.items()})
    raise SystemExit(f"unknown loader {loader}")

try:
    run(loader, path)
finally:
    import multiprocessing
    for child in multiprocessing.active_children():
        child.join(30)
'''

LIVE = [tech for tech in TECHNIQUES if tech.live]


@pytest.mark.parametrize("tech", LIVE, ids=[t.id for t in LIVE])
def test_payload_is_live(tech, tmp_path):
    """Positive control: the sample is a working exploit for the loader its format invites."""
    control = Canary(tmp_path / "control")
    path = _build(tech, tmp_path / "sample", control)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", CONTROL, tech.live, str(path), tech.stdin], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10  # webbrowser starts its program without waiting for it
    while not control.fired() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert control.fired(), (tech.id, done.returncode, done.stderr[-2000:])


def test_every_listed_technique_has_a_row():
    """The issue's list, item by item, against the table ids (a reader's checklist, kept honest)."""
    listed = ["streams/second-stream", "streams/joblib-payload-before", "streams/joblib-payload-between",
              "streams/joblib-payload-after", "compressed/joblib-zlib", "compressed/joblib-gzip",
              "compressed/joblib-bz2", "compressed/joblib-lzma", "compressed/joblib-lz4", "torch/zip-data.pkl",
              "torch/zip-every-pkl-member", "torch/legacy-", "torchscript/constants.pkl", "torchscript/data.pkl",
              "torchscript/code-", "numpy/npy-object", "numpy/npz-object", "zip/pickle-member",
              "zip/compressed-joblib", "zip/torch-archive", "zip/npy-member", "zip/dotdot", "opcode/GLOBAL-",
              "opcode/STACK_GLOBAL-", "MEMOIZE", "BINPUT", "BINGET", "opcode/INST", "opcode/OBJ", "opcode/NEWOBJ",
              "opcode/REDUCE", "BUILD", "POP", "dotted/os.path", "dotted/pathlib.os.system", "alias/nt",
              "alias/posix"]
    listed += [f"callable/{name}" for name in (
        "builtins.eval", "builtins.exec", "builtins.compile", "builtins.getattr", "builtins.__import__",
        "builtins.open", "importlib", "runpy", "pty", "code.", "cProfile", "profile", "pdb", "bdb",
        "pydoc.locate", "pkgutil.resolve_name", "ctypes", "marshal", "types.FunctionType", "types.FunctionType+CodeType",
        "multiprocessing", "socket", "smtplib", "urllib", "requests", "webbrowser", "shutil",
        "operator.attrgetter", "operator.methodcaller")]
    listed += ["nested/pickle.loads", "nested/_pickle.loads", "nested/dill.loads", "nested/pickle.loads-hex",
               "nested/pickle.loads-base64", "partial/", "keras/.h5-Lambda", "keras/.keras-Lambda",
               "keras/.keras-custom-object", "keras/.h5-custom-object", "savedmodel/WriteFile"]
    # issue 12 (static scanner items 2, 4, 6, 7, 8, 9); the rest of each item is in the tests below the table
    listed += ["pt2/opaque_obj", "pt2/custom_obj", "pt2/weight-entry", "pt2/sample-inputs", "pt2/legacy-weights",
               "pt2/aotinductor", "torchscript/code-spaces", "torchscript/code-comment", "torchscript/code-line-cont",
               "torchscript/code-getattr", "torchscript/code-ops", "headerless/protocol-0", "headerless/FRAME-first",
               "headerless/SHORT_BINUNICODE", "headerless/EMPTY_SET", "7z/pickle-member", "7z/headerless", "7z/encrypted",
               "zipraw/bad-CRC", "zipraw/local-header-name", "zipraw/encryption-flag", "zipraw/patched-data",
               "frame/opcode-straddles", "frame/STOP-before-FRAME-end", "rule/uuid", "rule/torch.utils",
               "rule/torch._inductor.codecache", "rule/logging", "rule/lib2to3", "rule/_pyrepl", "rule/platform",
               "rule/imaplib", "rule/numpy.lib", "rule/sklearn.utils", "rule/requests", "rule/httpx", "rule/aiohttp"]
    missing = [item for item in listed if not any(item in tech.id for tech in TECHNIQUES)]
    assert not missing


# ----------------------------------------------------------------------- nothing ever fires (canary)

AUDIT_ROWS = [tech for tech in TECHNIQUES if not tech.id.startswith(("keras/", "savedmodel/", "compressed/joblib-lz4"))]


def test_canary_never_fires_in_audit_inspect_convert_check(tmp_path, canary):
    """Every pickle-borne sample in one folder, all aimed at one canary: the audit (dynamic steps, no trust),
    and the inspect, convert and check commands, refuse them all and run none. (The Keras and SavedModel
    samples go through the same commands in test_keras_and_savedmodel_samples_never_fire.)"""
    from compat import audit
    from compat.cli import main

    folder = tmp_path / "zoo"
    paths = {}
    for n, tech in enumerate(AUDIT_ROWS):
        built = _build(tech, tmp_path / "build" / str(n), canary)
        target = folder / f"{n:02d}-{built.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), target)
        paths[tech.id] = target
    report = audit([folder], jobs=2, timeout=120)
    rows = {row.path: row for row in report.artifacts}
    assert len(rows) == len(paths), sorted(rows)
    for tech_id, path in paths.items():
        row = rows[path.name]
        assert row.safety == BY_ID[tech_id].verdict, (tech_id, row.findings[:3])
        assert row.load.status == "refused", (tech_id, row.load)
        assert (row.convert.status, row.check.status) == ("skipped", "skipped")
    assert report.exit_code == 1
    onnx_model = tiny_onnx(tmp_path / "any.onnx")
    for tech_id, path in paths.items():
        assert main(["inspect", str(path)]) in (0, 1)
        assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) != 0, tech_id
        assert main(["check", str(path), str(onnx_model)]) != 0, tech_id
    assert not (tmp_path / "out.onnx").exists()
    assert not canary.fired()


@pytest.mark.slow
def test_keras_and_savedmodel_samples_never_fire(tmp_path, canary):
    from compat import audit
    from compat.cli import main

    folder = tmp_path / "zoo"
    folder.mkdir()
    samples = {}
    for n, tech in enumerate(t for t in TECHNIQUES if t.id.startswith(("keras/", "savedmodel/"))):
        built = _build(tech, tmp_path / "build" / str(n), canary)
        samples[f"{n}-{built.name}"] = tech
        shutil.move(str(built), folder / f"{n}-{built.name}")
    report = audit([folder], jobs=2, timeout=300)
    assert len(report.artifacts) == len(samples)
    for row in report.artifacts:
        assert row.safety == samples[row.path].verdict, (row.path, row.findings[:3])
        assert row.load.status == "refused", (row.path, row.load)
    for name, tech in samples.items():
        path = folder / name
        assert main(["inspect", str(path)]) == (1 if tech.verdict == "unsafe" else 0), tech.id
        assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) == 1, tech.id  # refused: unsafe
    assert not (tmp_path / "out.onnx").exists()
    assert not canary.fired()


# ------------------------------------------------------------------------------- benign is safe


def _benign_sklearn(tmp_path, fitted_models):
    out = {}
    for label, model in fitted_models.items():
        for how in ("pickle", "joblib"):
            path = tmp_path / f"{label.replace(' ', '_')}.{how}"
            if how == "pickle":
                path.write_bytes(pickle.dumps(model, 5))
            else:
                joblib.dump(model, path, compress=3 if "forest" in label else 0)
            out[f"sklearn {how}: {label}"] = path
    for p in sorted((FIXTURES / "sklearn").glob("*")):
        if p.suffix in (".joblib", ".pkl"):
            out[f"fixture {p.name}"] = p
    return out


def test_benign_sklearn_files_are_safe(tmp_path, fitted_models):
    """Any estimator, pipeline or vectorizer, pickled or joblib-dumped (compressed or not)."""
    for label, path in _benign_sklearn(tmp_path, fitted_models).items():
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (label, [f.what for f in artifact.findings])
        assert artifact.framework == "sklearn", label


@pytest.mark.slow
def test_benign_torch_files_are_safe(torch_files):
    files = dict(torch_files)
    files.update({f"fixture {p.name}": p for p in sorted((FIXTURES / "torch").glob("*.pt*"))})
    kinds = set()
    for label, path in files.items():
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (label, [f.what for f in artifact.findings])
        kinds.add(artifact.format)
    assert kinds == {"torch-zip", "torch-legacy", "torchscript", "torch-export"}
    scripted = convert.inspect(torch_files["torchscript"])
    assert scripted.details["pickle_scan"]["torchscript_code_files"] >= 1  # its code/ was read, and is clean


@pytest.mark.slow
def test_benign_keras_and_savedmodels_are_safe(tf_files):
    files = {k: v for k, v in tf_files.items() if k != "lambda"}
    files.update({f"fixture {p.name}": p for p in sorted((FIXTURES / "tensorflow").iterdir())
                  if not p.name.endswith(".npz")})
    kinds = set()
    for label, path in files.items():
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (label, [f.what for f in artifact.findings])
        kinds.add(artifact.format)
    assert {"keras", "keras-h5", "savedmodel"} <= kinds
    assert convert.inspect(tf_files["lambda"]).safety == "unsafe"  # the same writer, with a Lambda


def test_benign_onnx_skops_safetensors_are_safe(tmp_path, fitted_models):
    skops_io = pytest.importorskip("skops.io", reason="skops is not installed")
    st_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    files = {"onnx": tiny_onnx(tmp_path / "identity.onnx")}
    for label in ("logistic", "scaled svc", "tfidf", "forest"):
        files[f"skops {label}"] = tmp_path / f"{label.replace(' ', '_')}.skops"
        skops_io.dump(fitted_models[label], files[f"skops {label}"])
    files["safetensors (numpy)"] = tmp_path / "weights.safetensors"
    st_numpy.save_file({"w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}, files["safetensors (numpy)"])
    if torch is not None:
        from safetensors.torch import save_file

        files["safetensors (torch)"] = tmp_path / "model.safetensors"
        save_file(torch.nn.Linear(3, 2).state_dict(), files["safetensors (torch)"])
    for label, path in files.items():
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (label, [f.what for f in artifact.findings])
        assert artifact.format == label.split()[0], label


def test_benign_zip_members_that_start_like_opcodes_stay_safe(tmp_path):
    """Unnamed members are walked as possible pickles: ordinary text must not read as one (no false alarm)."""
    path = tmp_path / "bundle.zip"
    texts = {"notes.txt": "The model was trained on 2024 data.\n", "LICENSE": "Licensed under MIT\n",
             "summary.csv": "cat,dog\n1,2\n", "manifest.json": '{"files": 3}', "todo.md": "(draft) tune it\n",
             "names.txt": "Noah\nIda\nKarl\n" * 20, "data.bin": bytes(range(256)) * 4}
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in texts.items():
            zf.writestr(name, text)
        zf.writestr("model.pkl", pickle.dumps({"weights": [0.5, 1.5]}, 4))
    artifact = convert.inspect(path)
    assert artifact.safety == "safe", [f.what for f in artifact.findings]
    assert artifact.details["pickle_scan"]["pickle_members"] == ["model.pkl"]


def test_fail_closed_basics(tmp_path):
    """A stream the scan cannot parse is unknown; an unlisted global at least suspicious."""
    broken = write(tmp_path / "broken.pkl", pickle.dumps({"w": list(range(50))}, 4)[:-20])
    assert convert.inspect(broken).safety == "unknown"
    unlisted = write(tmp_path / "custom.pkl", pk(r(g("mycompany.models", "Net"))))
    artifact = convert.inspect(unlisted)
    assert artifact.safety == "suspicious"
    assert {g.qualname: g.verdict for g in artifact.globals} == {"mycompany.models.Net": "suspicious"}



# --------------------------------------------------------------------- issue 12: beyond the table rows


def test_pt2_config_entries_the_scan_cannot_account_for_are_unknown(tmp_path):
    """A payload config entry the scan cannot map to a read makes the file unknown, never safe: an entry naming no
    member, a constant of a kind torch's loader does not know, an entry without a path, an unreadable config."""
    torch_ = pytest.importorskip("torch")
    assert torch_ is torch
    cases = {
        "missing-member": lambda m, r: _config_entry(m, r, "constants", "gone", {"path_name": "tensor_9",
                                                                                 "use_pickle": True}),
        "unknown-prefix": lambda m, r: (m.__setitem__(f"{r}/data/constants/blob_0", b"\x80\x04N."),
                                        _config_entry(m, r, "constants", "odd", {"path_name": "blob_0",
                                                                                 "use_pickle": False})),
        "no-path": lambda m, r: _config_entry(m, r, "weights", "nameless", {"use_pickle": True}),
        "not-json": lambda m, r: m.__setitem__(f"{r}/data/weights/model_weights_config.json", b"{not json"),
    }
    for label, edit in cases.items():
        path = _export_archive(tmp_path, f"{label}.pt2", edit)
        artifact = convert.inspect(path)
        assert artifact.safety == "unknown", (label, [f.what for f in artifact.findings])
        assert any(f.severity == "unknown" and "config" in f.what for f in artifact.findings), label
    benign = _export_archive(tmp_path, "plain.pt2", lambda m, r: None)
    artifact = convert.inspect(benign)
    assert artifact.safety == "safe", [f.what for f in artifact.findings]
    assert artifact.details["pickle_scan"]["pt2_pickled_members"] == 1  # data/sample_inputs/model.pt
    assert any("sample_inputs/model.pt" in m for m in artifact.details["pickle_scan"]["pickle_members"])


def _load_all(fh, load) -> list:
    values = []
    while True:
        try:
            values.append(load(fh))
        except EOFError:
            return values


def test_frame_divergence_alone_is_unsafe_and_the_two_unpicklers_really_disagree(tmp_path):
    """No payload at all: a FRAME whose length disagrees with the opcodes is unsafe by itself, because pickle's C
    unpickler and its Python one (which joblib.load uses) read such a stream differently. Shown live, on data."""
    body = u("weights") + MEMOIZE + POP + EMPTY_DICT + STOP
    straddle = PROTO4 + _frame(body, len(u("weights")) - 3)  # the frame ends inside the string's bytes
    assert pickle.loads(straddle) == {}  # C: frames are only read-ahead hints
    with pytest.raises(pickle.UnpicklingError, match="frame"):
        pickle._loads(straddle)  # Python: the frame bounds are enforced
    leftover = PROTO4 + _frame(u("a") + STOP + u("b") + STOP, 2 * len(u("a") + STOP)) + pickle.dumps("c", 4)
    path = write(tmp_path / "leftover.pkl", leftover)
    with open(path, "rb") as fh:  # C, on a buffered file: it reads on right after each STOP
        assert _load_all(fh, pickle.load) == ["a", "b", "c"]
    with open(path, "rb") as fh:  # Python: "b" sits in the frame it already consumed
        assert _load_all(fh, pickle._load) == ["a", "c"]
    assert _load_all(io.BytesIO(leftover), pickle.load) == ["a", "c"]  # and C on a file without peek, like Python
    for data in (straddle, leftover):
        scan = convert.scan.scan_bytes(data)
        assert scan.verdict == "unsafe" and not scan.globals
        assert any("parser divergence" in f.what for f in scan.findings)
    well_framed = pickle.dumps({"w": list(range(30_000)), "s": "x" * 70_000}, 4)
    assert convert.scan.scan_bytes(well_framed).verdict == "safe"  # many frames, all consistent


def test_frame_divergence_exit_code(tmp_path):
    from compat.cli import main

    path = write(tmp_path / "divergent.pkl", PROTO4 + _frame(u("w") + MEMOIZE + POP + NONE + STOP, 3))
    assert main(["inspect", str(path)]) == 1


def test_zip_members_read_raw_equal_what_zipfile_reads(tmp_path):
    """The raw reader serves exactly the bytes zipfile would, for every method torch or zipfile reads, in order or
    with seeks; it reports a CRC that does not match, which zipfile raises on."""
    from convert.scan import rawzip

    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes() + b"abc" * 50_000
    path = tmp_path / "methods.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            zf.writestr(zipfile.ZipInfo(f"m{method}"), payload, compress_type=method)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            heard = []
            assert rawzip.anomalies(zf, info) == []
            with rawzip.open_member(zf, info, heard.append) as fh:
                assert fh.read() == payload
            with rawzip.open_member(zf, info, heard.append) as fh:
                fh.seek(250_000)
                assert fh.read(1000) == payload[250_000:251_000]
                fh.seek(10)
                assert fh.read(5) == payload[10:15]
            assert heard == []
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("m8")
    at = _central_entry(bytes(data), "m8")
    struct.pack_into("<I", data, at + 16, info.CRC ^ 1)
    damaged = write(tmp_path / "damaged.zip", bytes(data))
    with zipfile.ZipFile(damaged) as zf:
        with pytest.raises(zipfile.BadZipFile, match="CRC"):
            zf.read("m8")
        heard = []
        with rawzip.open_member(zf, zf.getinfo("m8"), heard.append) as fh:
            assert fh.read() == payload
        assert heard == ["has a CRC that does not match its bytes"]


def test_benign_7z_and_quantized_or_recurrent_torchscript_stay_safe(tmp_path, fitted_models):
    """7-Zip archives of ordinary files scan safe (and say what they hold); a quantized TorchScript model, whose code
    uses torch's own packed-parameter classes and quantized operators, is no custom code; a scripted LSTM's pickles
    name TorchScript's own list builders (torch.jit._pickle), which its C++ unpickler resolves itself."""
    py7zr = pytest.importorskip("py7zr", reason="7-Zip archives are read with py7zr, not installed here")
    path = tmp_path / "release.7z"
    with py7zr.SevenZipFile(path, "w") as archive:
        archive.writestr(pickle.dumps(fitted_models["logistic"], 4), "model.pkl")
        archive.writestr(b"a,b\n1,2\n", "holdout.csv")
        archive.writestr(b"(draft) notes\n", "NOTES")
    artifact = convert.inspect(path)
    assert (artifact.format, artifact.safety) == ("7z", "safe"), [f.what for f in artifact.findings]
    assert artifact.details["pickle_scan"]["pickle_members"] == ["model.pkl"]
    assert "sklearn.linear_model._logistic.LogisticRegression" in {g.qualname for g in artifact.globals}
    if torch is None:
        pytest.skip("torch is not installed")
    model = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()),
                                                   {torch.nn.Linear}, dtype=torch.qint8)
    for label, module in (("quantized", model), ("lstm", torch.nn.LSTM(3, 4, num_layers=2))):
        scripted = tmp_path / f"{label}.pt"
        torch.jit.save(torch.jit.script(module), scripted)
        artifact = convert.inspect(scripted)
        assert artifact.safety == "safe", (label, [f.what for f in artifact.findings])
        assert artifact.details["pickle_scan"]["torchscript_code_files"] >= 1


def _onnx_pickle_polyglot(d, c):
    """A valid ONNX model (onnx.load reads it; fields may come in any order) whose first fields, model_version and
    doc_string, are also pickle opcodes: MARK, NONE, DUP, BINPUT, then the doc string runs a payload to STOP."""
    onnx = pytest.importorskip("onnx")
    body = b"\x00" + b"01" + b"cos\nsystem\n(S'" + c.command.encode() + b"'\ntR."  # BINPUT's key, POP, POP_MARK, call
    assert len(body) <= 0x71
    head = b"\x28\x4e" + b"\x32\x71" + body.ljust(0x71, b" ")  # field 5 = 78; field 6, 113 bytes
    data = head + tiny_onnx(d / "plain.onnx").read_bytes()
    assert onnx.load_from_string(data).model_version == 78
    return write(d / "model.onnx", data)


def test_a_file_of_another_format_that_is_also_a_pickle_is_scanned_as_one(tmp_path, canary):
    """Detection by content says ONNX, and ONNX holds no pickle; but the same bytes are a pickle that runs a
    command, for whoever unpickles the file by its name. Live control first, in another process."""
    from compat.cli import main

    control = Canary(tmp_path / "control")
    sample = _onnx_pickle_polyglot(tmp_path / "c", control) if (tmp_path / "c").mkdir() is None else None
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))", str(sample)],
                   capture_output=True, timeout=120)
    assert control.fired()
    (tmp_path / "s").mkdir()
    path = _onnx_pickle_polyglot(tmp_path / "s", canary)
    artifact = convert.inspect(path)
    assert artifact.format == "onnx"
    assert artifact.safety == "unsafe", [f.what for f in artifact.findings]
    assert {g.qualname: g.verdict for g in artifact.globals}["os.system"] == "unsafe"
    assert any("also read as a pickle" in f.what for f in artifact.findings)
    assert main(["inspect", str(path)]) == 1
    assert convert.inspect(tiny_onnx(tmp_path / "plain.onnx")).safety == "safe"


def test_unsafe_archives_without_unsafe_globals_are_refused_before_torch_loads_them(tmp_path, canary):
    """A TorchScript archive whose code writes files, and a .pt2 holding native code, import no unsafe global: the
    verdict itself refuses them (exit 1), before torch.jit.load compiles the code or torch.export.load opens it."""
    if torch is None:
        pytest.skip("torch is not installed")
    from compat.cli import main

    for n, build in enumerate((_scripted_code(b"torch . save (x, target)"), _pt2_aoti)):
        folder = tmp_path / str(n)
        folder.mkdir()
        path = build(folder, canary)
        artifact = convert.inspect(path)
        assert artifact.safety == "unsafe" and not any(g.verdict == "unsafe" for g in artifact.globals)
        with pytest.raises(convert.UnsafeArtifactError):
            convert.load(artifact)
        assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) == 1
        assert main(["check", str(path), str(tiny_onnx(tmp_path / "any.onnx"))]) == 1
    assert not (tmp_path / "out.onnx").exists()
