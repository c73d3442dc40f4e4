"""The static pickle scan: payloads are found however they are dressed, benign artifacts are safe, broken
streams are never safe, and nothing a scanned file holds ever runs (the canary stays absent)."""

from __future__ import annotations

import base64
import collections
import functools
import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn

from convert.scan import classify_global, is_allowed, scan_bytes, scan_file, scan_stream
from convert.scan import containers as pickles
from convert.scan.policy import ALLOWLIST_PATH

# --------------------------------------------------------------------------------- opcode assembly


def u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def x(text: str) -> bytes:
    """BINUNICODE (4-byte length)."""
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


PROTO4 = b"\x80\x04"
PROTO2 = b"\x80\x02"
STACK_GLOBAL, MEMOIZE, TUPLE1, REDUCE, STOP, POP, MARK = b"\x93", b"\x94", b"\x85", b"R", b".", b"0", b"("


def call(module: str, name: str, arg: str) -> bytes:
    """Protocol-4 ops for module.name(arg), leaving the result on the stack."""
    return u(module) + u(name) + STACK_GLOBAL + u(arg) + TUPLE1 + REDUCE


def names(scan) -> dict:
    return {g.qualname: g.verdict for g in scan.globals}


def system_verdict(scan) -> str | None:
    """os.system pickles as posix.system on Linux, nt.system on Windows."""
    got = names(scan)
    for qual in ("posix.system", "nt.system", "os.system"):
        if qual in got:
            return got[qual]
    return None


# ------------------------------------------------------------------------------------ payloads found


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_payload_is_unsafe_in_every_protocol(canary, tmp_path, protocol):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(canary.payload(), protocol=protocol))
    for scan in (scan_file(path), scan_bytes(path.read_bytes())):
        assert scan.verdict == "unsafe"
        assert system_verdict(scan) == "unsafe"
        assert any(f.severity == "unsafe" and "system" in f.what for f in scan.findings)
        assert scan.metadata["protocol"] == protocol


def test_positive_control_the_payload_really_runs(tmp_path):
    """The payloads in this file are live: loading one for real creates its canary."""
    from canary import Canary  # noqa: PLC0415 -- the helper class, not a fixture

    control = Canary(tmp_path / "control")
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(control.payload()))
    control.load_in_subprocess(path)
    assert control.fired()


MEMO_STYLES = {
    "MEMOIZE/BINGET": (lambda i: MEMOIZE, lambda i: b"h" + bytes([i])),
    "BINPUT/BINGET": (lambda i: b"q" + bytes([i]), lambda i: b"h" + bytes([i])),
    "LONG_BINPUT/LONG_BINGET": (lambda i: b"r" + i.to_bytes(4, "little"), lambda i: b"j" + i.to_bytes(4, "little")),
    "PUT/GET": (lambda i: b"p%d\n" % i, lambda i: b"g%d\n" % i),
}


@pytest.mark.parametrize("style", MEMO_STYLES)
def test_stack_global_fed_through_the_memo(canary, style):
    put, get = MEMO_STYLES[style]
    data = (PROTO4 + u("os") + put(0) + POP + u("decoy") + put(1) + POP + u("system") + put(2) + POP
            + get(0) + get(2) + STACK_GLOBAL + u(canary.command) + TUPLE1 + REDUCE + STOP)
    scan = scan_bytes(data)
    assert names(scan) == {"os.system": "unsafe"}
    assert scan.verdict == "unsafe"


def test_stack_global_with_computed_operands_is_unsafe(canary):
    # module name produced by a call: the scan cannot know it, so it must not pass
    data = PROTO4 + call("builtins", "str", "os") + u("system") + STACK_GLOBAL + u(canary.command) + TUPLE1 + REDUCE + STOP
    scan = scan_bytes(data)
    assert scan.verdict == "unsafe"
    assert any("dynamic global" in f.what and f.severity == "unsafe" for f in scan.findings)


CALL_SHAPES = {
    "INST": lambda cmd: b"(S'" + cmd.encode() + b"'\nios\nsystem\n.",
    "OBJ": lambda cmd: PROTO2 + b"(cos\nsystem\n" + x(cmd) + b"o.",
    "REDUCE": lambda cmd: b"cos\nsystem\n(S'" + cmd.encode() + b"'\ntR.",
    "NEWOBJ": lambda cmd: PROTO2 + b"csubprocess\nPopen\n" + x(cmd) + TUPLE1 + b"\x81.",
    "NEWOBJ_EX": lambda cmd: PROTO4 + u("subprocess") + u("Popen") + STACK_GLOBAL + u(cmd) + TUPLE1 + b"}\x92.",
    "BUILD": lambda cmd: PROTO2 + b"cbuiltins\nexec\n" + b"N}" + b"\x86b.",
}


@pytest.mark.parametrize("shape", CALL_SHAPES)
def test_every_call_opcode(canary, shape):
    scan = scan_bytes(CALL_SHAPES[shape](canary.command))
    assert scan.verdict == "unsafe"
    assert any(v == "unsafe" for v in names(scan).values())


def test_build_on_an_imported_class_is_flagged():
    # BUILD with slot state on a class object sets attributes on it (monkeypatching at load time): suspicious
    # even on an allowlisted class
    data = PROTO2 + b"csklearn.linear_model._logistic\nLogisticRegression\n" + b"N}" + x("fit") + b"N" + b"s\x86b0N."
    scan = scan_bytes(data)
    assert scan.verdict == "suspicious"
    assert any("BUILD sets attributes" in f.what for f in scan.findings)


@pytest.mark.parametrize("hide", ["POP", "POP_MARK", "DUP+POP", "inside a list"])
def test_call_hidden_from_the_result(canary, hide):
    payload = call("os", "system", canary.command)
    wrapped = {
        "POP": payload + POP + b"N",
        "POP_MARK": MARK + payload + b"1N",
        "DUP+POP": payload + b"2" + POP + POP + b"N",
        "inside a list": b"]" + payload + b"a" + POP + b"K\x01",
    }[hide]
    scan = scan_bytes(PROTO4 + wrapped + STOP)
    assert scan.verdict == "unsafe"
    assert names(scan)["os.system"] == "unsafe"
    assert not scan.metadata.get("corrupt")


@pytest.mark.parametrize("module,name", [
    ("pathlib", "os.system"),
    ("sklearn.datasets._base", "os.system"),
    ("collections", "abc.sys.modules"),
    ("numpy", "ndarray.tofile"),
    ("sklearn", "base.__builtins__.eval"),
])
def test_dotted_names_resolve_through_attributes(canary, module, name):
    scan = scan_bytes(PROTO4 + call(module, name, canary.command) + STOP)
    assert names(scan)[f"{module}.{name}"] == "unsafe"
    assert scan.verdict == "unsafe"


@pytest.mark.parametrize("module,name", [("nt", "system"), ("posix", "system"), ("__builtin__", "eval"),
                                         ("commands", "getoutput"), ("_operator", "attrgetter"), ("cPickle", "loads")])
def test_module_aliases(canary, module, name):
    data = b"c%s\n%s\n(S'%s'\ntR." % (module.encode(), name.encode(), canary.command.encode())
    scan = scan_bytes(data)
    assert names(scan)[f"{module}.{name}"] == "unsafe"


def _joblib_bytes(obj, protocol=None, **kwargs) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, protocol=protocol, **kwargs)
    return buf.getvalue()


def _append_call_before_stop(stream: bytes, command: str) -> bytes:
    """Replace a stream's final STOP with: drop the result, os.system(command), STOP."""
    assert stream.endswith(STOP)
    return stream[:-1] + POP + b"cos\nsystem\n(S'" + command.encode() + b"'\ntR" + STOP


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("compress", [None, "gzip", "zlib"])
def test_payload_after_a_joblib_array_block(canary, tmp_path, protocol, compress):
    stream = _append_call_before_stop(_joblib_bytes({"w": np.linspace(0, 1, 1000)}, protocol), canary.command)
    data = {None: lambda b: b, "gzip": gzip.compress, "zlib": zlib.compress}[compress](stream)
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    scan = scan_file(path)
    assert scan.verdict == "unsafe"
    assert names(scan)["os.system"] == "unsafe"
    assert scan.metadata["joblib_arrays"] == 1
    assert scan.metadata.get("compression") == compress


def test_positive_control_joblib_runs_code_after_the_array_block(tmp_path):
    from canary import Canary  # noqa: PLC0415

    control = Canary(tmp_path / "control")
    path = tmp_path / "model.joblib"
    path.write_bytes(_append_call_before_stop(_joblib_bytes({"w": np.arange(100.0)}), control.command))
    control.load_in_subprocess(path, loader="joblib")
    assert control.fired()


def test_second_stream_after_stop(canary, tmp_path):
    for first in (pickle.dumps([1, 2, 3], 4), _joblib_bytes({"w": np.ones(50)})):
        scan = scan_bytes(first + pickle.dumps(canary.payload(), 2))
        assert scan.streams == 2
        assert scan.verdict == "unsafe"
        assert "stream 2" in [g for g in scan.globals if g.verdict == "unsafe"][0].where


@pytest.mark.parametrize("encoding", ["raw bytes", "latin-1 str", "hex", "base64", "protocol 0 text"])
def test_nested_pickle_in_a_constant(canary, encoding):
    inner = pickle.dumps(canary.payload(), 0 if encoding == "protocol 0 text" else 2)
    blob = {
        "raw bytes": lambda: inner,
        "latin-1 str": lambda: inner.decode("latin-1"),
        "hex": inner.hex,
        "base64": lambda: base64.b64encode(inner).decode(),
        "protocol 0 text": lambda: inner.decode("ascii"),
    }[encoding]()
    scan = scan_bytes(pickle.dumps({"state": blob, "n": 3}, 4))
    assert scan.verdict == "unsafe"
    unsafe = [f for f in scan.findings if f.severity == "unsafe"]
    assert unsafe and all("nested pickle" in f.where for f in unsafe)
    assert scan.metadata["nested_pickles"] == 1

def test_base64_with_padding_and_whitespace_is_still_followed(canary):
    """Wrapped base64 (newlines inside, "=" padding at the end) still decodes to the payload it hides."""
    inner = pickle.dumps(canary.payload(), 2)
    inner += b"." * (len(inner) % 3 == 0)  # a length that needs padding (bytes after STOP: never read)
    wrapped = base64.encodebytes(inner)  # a newline every 76 characters
    assert wrapped.rstrip().endswith(b"=") and b"\n" in wrapped.strip()
    scan = scan_bytes(pickle.dumps({"state": wrapped}, 4))
    assert scan.verdict == "unsafe" and scan.metadata["nested_pickles"] == 1


def test_a_constant_of_whitespace_does_not_stall_the_scan():
    """A long run of spaces inside a constant that looks like base64 text: the test for base64 is linear (a
    pattern ending in ``={0,2}\\s*`` backtracks quadratically there: minutes for this one, hours at 1 MB)."""
    import time

    blob = b"A" + b" " * 300_000 + b"!"
    t0 = time.perf_counter()
    scan = scan_bytes(pickle.dumps({"state": blob}, 4))
    assert time.perf_counter() - t0 < 20
    assert scan.verdict == "safe"



def test_long_nested_pickle_is_streamed_not_held(canary):
    """A constant longer than the scanner holds in memory is scanned as it streams past."""
    inner = pickle.dumps([canary.payload(), bytes(3 << 20)], 4)
    scan = scan_bytes(pickle.dumps({"blob": inner}, 4))
    assert scan.verdict == "unsafe"
    assert any("long constant" in f.where for f in scan.findings if f.severity == "unsafe")


def test_benign_nested_pickle_and_look_alike_strings_stay_safe():
    data = {"inner": pickle.dumps([1, 2, 3]), "hexish": "deadbeef" * 8, "text": "cat\ndog\nmouse\n" * 3}
    scan = scan_bytes(pickle.dumps(data, 4))
    assert scan.verdict == "safe", scan.findings


def test_partial_wrapping_os_system(canary):
    scan = scan_bytes(pickle.dumps(functools.partial(os.system, canary.command), 4))
    assert scan.verdict == "unsafe"
    assert names(scan)["functools.partial"] == "suspicious"
    assert system_verdict(scan) == "unsafe"


def test_partial_is_safe_only_around_allowlisted_globals(canary):
    """functools.partial(check_array, ...) sits inside HistGradientBoosting models with categorical features;
    a partial around anything the allowlist does not hold keeps the file from passing."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.column_stack([np.linspace(0, 1, 40), np.arange(40) % 4])
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features=[1]).fit(X, np.arange(40) % 2)
    for protocol in (2, 5):
        scan = scan_bytes(pickle.dumps(model, protocol))
        assert scan.verdict == "safe"
        assert names(scan)["functools.partial"] == "safe"
    odd = scan_bytes(pickle.dumps(functools.partial(print, "hello"), 4))
    assert odd.verdict == "unsafe" and names(odd)["builtins.print"] == "unsafe"  # a stdlib name off the allowlist
    assert names(odd)["functools.partial"] == "suspicious"
    assert "wraps builtins.print" in [f.what for f in odd.findings if "partial" in f.what][0]
    computed = PROTO4 + u("functools") + u("partial") + STACK_GLOBAL + call("builtins", "getattr", "x") + TUPLE1 + REDUCE
    assert scan_bytes(computed + STOP).verdict == "unsafe"


def test_extension_registry_opcode_is_not_safe():
    scan = scan_bytes(PROTO2 + b"\x82\x01" + b")R.")
    assert scan.verdict == "suspicious"
    assert any("EXT" in f.what for f in scan.findings)


class _NoTell(io.RawIOBase):
    """A write-only stream without tell(): joblib then writes array blocks without alignment padding."""

    def __init__(self):
        self.buf = io.BytesIO()

    def writable(self):
        return True

    def write(self, b):
        return self.buf.write(b)

    def tell(self):
        raise io.UnsupportedOperation("no tell")


@pytest.mark.parametrize("protocol", [2, 4])
def test_array_bytes_that_plain_pickle_load_would_run(canary, tmp_path, protocol):
    """joblib.load skips an array block; pickle.load parses it as opcodes. Both readings are scanned."""
    sink = _NoTell()
    joblib.dump(np.frombuffer(pickle.dumps(canary.payload(), protocol), dtype=np.uint8), sink)
    data = sink.buf.getvalue()
    scan = scan_bytes(data)
    assert scan.verdict == "unsafe"
    flagged = [g for g in scan.globals if g.verdict == "unsafe"]
    assert flagged and "array bytes read as opcodes" in flagged[0].where
    # positive control: plain pickle.load runs it
    from canary import Canary  # noqa: PLC0415

    control = Canary(tmp_path / "control")
    sink = _NoTell()
    joblib.dump(np.frombuffer(pickle.dumps(control.payload(), 2), dtype=np.uint8), sink)
    path = tmp_path / "plain.joblib"
    path.write_bytes(sink.buf.getvalue())
    control.load_in_subprocess(path, loader="pickle")
    assert control.fired()


def test_unaligned_array_blocks_of_real_models_raise_no_false_alarm(fitted_models):
    """joblib < 1.2 (and any dump to an unseekable stream) writes array bytes right after the wrapper, where
    a plain pickle.load view starts on arbitrary data: that view must not cry wolf."""
    rng = np.random.default_rng(7)
    extra = {f"noise {i}": rng.normal(size=(40, 3)) for i in range(10)}
    extra.update({"bytes": rng.integers(0, 256, 600).astype(np.uint8), "ints": np.arange(-20, 20)})
    for label, obj in {**fitted_models, **extra}.items():
        sink = _NoTell()
        joblib.dump(obj, sink)
        scan = scan_bytes(sink.buf.getvalue())
        assert scan.verdict == "safe", (label, [f.what for f in scan.findings])


# ------------------------------------------------------------------------------------ fail closed


def test_unknown_array_dtype_fails_closed():
    data = _joblib_bytes({"w": np.arange(10.0), "after": collections.OrderedDict()})
    tampered = data.replace(u("f8"), u("q8"), 1)
    assert tampered != data
    scan = scan_bytes(tampered)
    assert scan.verdict == "unknown"
    assert any("cannot work out the size" in f.what for f in scan.findings)


def test_unfamiliar_wrapper_spelling_fails_closed():
    data = _joblib_bytes({"w": np.arange(10.0)}, protocol=2)
    tampered = data.replace(b"joblib.numpy_pickle\nNumpyArrayWrapper", b"joblib.numpy_pickle_compat\nNumpyArrayWrapper")
    scan = scan_bytes(tampered)
    assert scan.verdict != "safe"
    assert any(f.severity == "unknown" and "unfamiliar name" in f.what for f in scan.findings)


def test_old_sklearn_vendored_joblib_wrapper_is_followed():
    """sklearn < 0.23 shipped joblib as sklearn.externals.joblib: same array blocks, other module path."""
    data = _joblib_bytes([np.arange(10.0), collections.OrderedDict()], protocol=2)
    old = data.replace(b"cjoblib.numpy_pickle\n", b"csklearn.externals.joblib.numpy_pickle\n")
    assert old != data
    scan = scan_bytes(old)
    assert scan.metadata["joblib_arrays"] == 1 and "collections.OrderedDict" in names(scan)
    assert not scan.metadata.get("corrupt")
    # that module path is in no allowlist source: it is safe as the old name of joblib.numpy_pickle's wrapper
    assert scan.verdict == "safe"
    assert any(f.severity == "info" and "old name of joblib.numpy_pickle.NumpyArrayWrapper" in f.what
               for f in scan.findings)


@pytest.mark.parametrize("case,expect", [
    ("truncated array", "ends inside"),
    ("no STOP", "without STOP"),
    ("unknown opcode", "unknown opcode"),
    ("underflow", "stack underflow"),
    ("empty", "no pickle stream"),
    ("bad protocol", "unsupported pickle protocol"),
])
def test_broken_streams_are_unknown_and_marked_corrupt(case, expect):
    joblib_data = _joblib_bytes({"w": np.arange(1000.0)})
    data = {
        "truncated array": joblib_data[:len(joblib_data) // 2],
        "no STOP": pickle.dumps({"a": 1}, 4)[:-1],
        "unknown opcode": PROTO4 + b"\xff" + STOP,
        "underflow": PROTO4 + REDUCE + STOP,
        "empty": b"",
        "bad protocol": b"\x80\x09N.",
    }[case]
    scan = scan_bytes(data)
    assert scan.verdict == "unknown"
    assert expect in scan.metadata["corrupt"]


def test_damaged_inputs_never_raise(canary, fitted_models):
    """Mutated pickles, joblib files, zip archives and .npy files: always a verdict, never a traceback."""
    import random

    seeds = [pickle.dumps(fitted_models["logistic"], p) for p in (0, 2, 5)]
    seeds += [_joblib_bytes({"m": fitted_models["forest"], "o": np.array(["a", 1], dtype=object)}),
              _joblib_bytes(fitted_models["logistic"], compress=3)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(canary.payload(), 2))
        zf.writestr("archive/version", "3")
    seeds.append(archive.getvalue())
    rng = random.Random(1234)
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[at] = rng.randrange(256)
            else:
                del data[at:at + rng.randint(1, 40)]
        scan = scan_bytes(bytes(data))
        assert scan.verdict in ("safe", "unknown", "suspicious", "unsafe")


def test_trailing_junk_is_noted_not_fatal():
    scan = scan_bytes(pickle.dumps([1, 2], 4) + b"\x00" * 64)
    assert scan.verdict == "safe"
    assert any(f.severity == "info" and "after the last pickle" in f.what for f in scan.findings)


# ----------------------------------------------------------------------------------- benign is safe

PICKLE_WAYS = ["pickle-0", "pickle-2", "pickle-4", "pickle-5", "joblib", "joblib-zlib3", "joblib-lzma"]


def _serialize(obj, how: str) -> bytes:
    if how.startswith("pickle-"):
        return pickle.dumps(obj, protocol=int(how.split("-")[1]))
    compress = {"joblib": 0, "joblib-zlib3": 3, "joblib-lzma": ("lzma", 3)}[how]
    return _joblib_bytes(obj, compress=compress)


@pytest.mark.parametrize("how", PICKLE_WAYS)
def test_fitted_sklearn_models_are_safe(fitted_models, how):
    for label, model in fitted_models.items():
        scan = scan_bytes(_serialize(model, how))
        assert scan.verdict == "safe", (label, [f.what for f in scan.findings])
        assert scan.metadata["sklearn_version"] == sklearn.__version__, label
        # plain pickles name numpy._core (numpy 2); joblib's wrappers may name no numpy module path at all
        assert scan.metadata.get("numpy") == (">=2" if how.startswith("pickle") else scan.metadata.get("numpy"))
        assert scan.metadata.get("numpy") in (None, ">=2")
        assert not scan.metadata.get("corrupt")


@pytest.mark.parametrize("compression", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"])
def test_compressed_joblib_is_scanned_through(fitted_models, tmp_path, compression):
    if compression == "lz4":
        pytest.importorskip("lz4")
    path = tmp_path / "model.joblib"
    joblib.dump(fitted_models["forest"], path, compress=(compression, 3))
    scan = scan_file(path)
    assert scan.verdict == "safe"
    assert scan.metadata["compression"] == compression
    assert scan.metadata["joblib_arrays"] > 5
    assert "sklearn.ensemble._forest.RandomForestClassifier" in names(scan)


ARRAYS = {
    "float64": np.linspace(0, 1, 37),
    "float16": np.arange(7, dtype=np.float16),
    "longdouble": np.arange(5, dtype=np.longdouble),
    "complex128": np.arange(6) * 1j,
    "bool": np.arange(9) % 2 == 0,
    "int8": np.arange(-5, 5, dtype=np.int8),
    "uint64": np.arange(3, dtype=np.uint64),
    ">i4 big-endian": np.arange(4, dtype=">i4"),
    "U7": np.array(["a", "bcdefgh", ""]),
    "S3": np.array([b"ab", b"cde"]),
    "V5": np.zeros(3, dtype="V5"),
    "datetime64": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[ns]"),
    "timedelta64": np.array([1, 2], dtype="timedelta64[s]"),
    "structured": np.zeros(4, dtype=[("a", "f4"), ("b", "i8", (2,)), ("c", "U3")]),
    "structured with object": np.array([(1.0, "x")], dtype=[("a", "f8"), ("o", "O")]),
    "aligned": np.zeros(3, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True)),
    "subarray": np.zeros(2, dtype=("f4", (3, 2))),
    "object": np.array([1, "two", 3.0, None], dtype=object),
    "StringDType": np.array(["x", "yy"], dtype=np.dtypes.StringDType()),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "zero-d": np.array(3.5),
    "empty": np.empty((0, 4)),
    "big": np.zeros((300, 300)),
}


@pytest.mark.parametrize("label", ARRAYS)
@pytest.mark.parametrize("protocol", [2, 5])
def test_joblib_array_blocks_are_sized_exactly(label, protocol):
    """If the size of any block were off, the walk would desync and miss the marker after it."""
    data = _joblib_bytes([ARRAYS[label], collections.OrderedDict(marker=1)], protocol=protocol)
    scan = scan_bytes(data)
    assert scan.verdict == "safe", [f.what for f in scan.findings]
    assert "collections.OrderedDict" in names(scan)
    assert scan.metadata["joblib_arrays"] == 1
    assert not scan.metadata.get("corrupt")


def test_numpy_random_and_sparse_objects_are_safe():
    from scipy import sparse

    objs = [np.random.RandomState(1), np.random.default_rng(2), sparse.csr_matrix(np.eye(3)),
            sparse.coo_array(np.eye(2)), np.ma.masked_array([1, 2], mask=[0, 1])]
    for how in ("pickle-2", "pickle-5", "joblib"):
        scan = scan_bytes(_serialize(objs, how))
        assert scan.verdict == "safe", (how, [f.what for f in scan.findings])


def test_sklearn_version_before_0_18(monkeypatch, data):
    """Estimators pickled before 0.18 carry no _sklearn_version: say so instead of guessing."""
    from sklearn.linear_model import LogisticRegression

    X, y, _ = data
    model = LogisticRegression().fit(X, y)
    monkeypatch.setattr(LogisticRegression, "__getstate__", lambda self: dict(self.__dict__))
    scan = scan_bytes(pickle.dumps(model, 2))
    assert scan.metadata["sklearn_version"] == "before 0.18"
    monkeypatch.undo()
    assert scan_bytes(pickle.dumps(model, 2)).metadata["sklearn_version"] == sklearn.__version__


def test_plain_numpy_pickle_has_no_sklearn_version():
    scan = scan_bytes(pickle.dumps(np.arange(3), 4))
    assert "sklearn_version" not in scan.metadata
    assert scan.metadata["numpy"] == ">=2"


# ------------------------------------------------------------------------------------ torch files


@pytest.mark.slow
def test_torch_state_dicts_and_checkpoints_are_safe(torch_files):
    for stem, path in torch_files.items():
        scan = scan_file(path)
        assert scan.verdict == "safe", (stem, [f.what for f in scan.findings])
    for stem in ("state_dict-zip", "state_dict-legacy"):  # two weights and two biases, each a storage
        assert scan_file(torch_files[stem]).metadata["persistent_ids"] == 4
    legacy = scan_file(torch_files["state_dict-legacy"])
    assert legacy.streams == 5
    assert legacy.metadata["torch_legacy_protocol"] == 1001
    assert legacy.metadata["torch_storages"] == 4
    script = scan_file(torch_files["torchscript"])
    assert any(m.endswith("constants.pkl") for m in script.metadata["pickle_members"])
    exported = scan_file(torch_files["export"])  # the sample inputs are a torch.save archive inside it
    assert any(" > " in m and m.endswith("data.pkl") for m in exported.metadata["pickle_members"])


def test_malicious_torch_archives(canary, tmp_path):
    torch = pytest.importorskip("torch")
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2), "trap": canary.payload()}, legacy, _use_new_zipfile_serialization=False)
    assert system_verdict(scan_file(legacy)) == "unsafe"
    # a payload in a second .pkl member, not data.pkl
    archive = tmp_path / "archive.pt"
    torch.save({"w": torch.ones(2)}, archive)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("archive/extra.pkl", pickle.dumps(canary.payload(), 2))
    scan = scan_file(archive)
    assert scan.verdict == "unsafe"
    assert [g for g in scan.globals if g.verdict == "unsafe"][0].where.startswith("archive/extra.pkl")


# ------------------------------------------------------------------------------- other containers


def test_zip_archives_and_numpy_object_arrays(canary, tmp_path):
    holder = tmp_path / "bundle.zip"
    with zipfile.ZipFile(holder, "w") as zf:
        zf.writestr("readme.txt", "a model")
        zf.writestr("models/model.pkl", pickle.dumps(canary.payload(), 4))
        zf.writestr("../escape.txt", "x")
    scan = scan_file(holder)
    assert scan.verdict == "unsafe"
    assert any("escapes the archive" in f.what for f in scan.findings)
    assert scan.metadata["pickle_members"] == ["models/model.pkl"]

    npy = tmp_path / "objects.npy"
    np.save(npy, np.array([canary.payload(), 1], dtype=object), allow_pickle=True)
    assert scan_file(npy).verdict == "unsafe"
    npz = tmp_path / "arrays.npz"
    np.savez(npz, plain=np.arange(3), objects=np.array([canary.payload()], dtype=object))
    assert scan_file(npz).verdict == "unsafe"
    clean = tmp_path / "clean.npz"
    np.savez(clean, a=np.arange(3), b=np.ones((2, 2)))
    assert scan_file(clean).verdict == "safe"


def test_scan_stream_reads_file_objects(canary):
    data = pickle.dumps(canary.payload(), 5)
    assert scan_stream(io.BytesIO(data)).verdict == "unsafe"
    assert scan_stream(io.BufferedReader(io.BytesIO(_joblib_bytes(np.ones(10))))).verdict == "safe"


def test_memory_stays_bounded_on_big_files(tmp_path):
    """A 64 MB constant and two million memoized strings: the scan holds neither (peak RSS, measured in a
    fresh process, grows far less than the file or what a full memo would take)."""
    path = tmp_path / "big.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"blob": bytes(64 << 20), "words": [f"w{i}" for i in range(2_000_000)]}, fh, protocol=4)
    code = ("import resource, sys; from convert.scan import scan_file; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; scan = scan_file(sys.argv[1]); "
            "print(scan.verdict, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(pickles.__file__).parents[2])
    verdict, grown_kb = done.stdout.split()
    assert verdict == "safe", done.stderr
    assert path.stat().st_size > 80 << 20
    assert int(grown_kb) < 64 << 10, f"peak RSS grew {int(grown_kb) >> 10} MB"


# ------------------------------------------------------------------------------- rules and allowlist


@pytest.mark.parametrize("module,name,verdict", [
    ("sklearn.linear_model._logistic", "LogisticRegression", "safe"),
    ("numpy._core.multiarray", "_reconstruct", "safe"),
    ("copy_reg", "_reconstructor", "safe"),
    ("__builtin__", "set", "safe"),
    ("torch._utils", "_rebuild_tensor_v2", "safe"),
    ("collections", "OrderedDict", "safe"),
    ("builtins", "getattr", "unsafe"),
    ("builtins", "eval", "unsafe"),
    ("os", "system", "unsafe"),
    ("subprocess", "check_output", "unsafe"),
    ("runpy", "run_path", "unsafe"),
    ("torch", "load", "unsafe"),
    ("numpy", "load", "unsafe"),
    ("operator", "methodcaller", "unsafe"),
    ("importlib", "import_module", "unsafe"),
    ("functools", "partial", "suspicious"),
    ("mypackage.models", "Net", "suspicious"),
    ("sklearn.linear_model", "LogisticRegression.__init__.__globals__", "unsafe"),
    ("torch.jit._pickle", "build_intlist", "safe"),
])
def test_classify_global(module, name, verdict):
    assert classify_global(module, name) == verdict
    conditional = (module, name) == ("functools", "partial")  # find_class resolves its target separately
    assert is_allowed(module, name) == (verdict == "safe" or conditional)


def test_allowlist_is_generated_data_with_provenance():
    raw = ALLOWLIST_PATH.read_text()
    data = json.loads(raw)
    assert data["sources"], "the generator records the library versions it ran with"
    for versions in data["sources"].values():
        assert {"python", "numpy", "scikit-learn"} <= set(versions)
    safe = data["safe"]
    assert list(safe) == sorted(safe)
    assert all(list(names_) == sorted(names_) for names_ in safe.values())
    entries = [(m, n) for m, names_ in safe.items() for n in names_]
    assert len(entries) > 300
    assert all(classify_global(m, n) == "safe" for m, n in entries)
    assert not any("*" in m or "*" in n for m, n in entries)
    assert all(classify_global(m, n) == "safe" for m, n in data["estimators"])
    from sklearn.utils import all_estimators

    assert {(c.__module__, c.__qualname__) for _, c in all_estimators()} <= {tuple(e) for e in data["estimators"]}
    assert {"modules", "names", "aliases"} <= set(data["unsafe"])
