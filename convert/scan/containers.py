"""Containers, read as the loaders read them: a pickle or joblib file (compressed or not), torch's legacy
format, .npy object arrays, zip archives (torch, torch.export, TorchScript, npz, keras, skops, or any zip:
members by content), 7-Zip archives, joblib's old companion files. Every pickle stream any loader would read is
walked by ``vm``; the result is one ``PickleScan`` per file."""

from __future__ import annotations

import io
import re
from pathlib import Path

from ..findings import Finding, GlobalRef, PickleScan, worst
from .. import formats
from ..storage import as_path
from ..magic import TORCH_MAGIC, compression as sniff_compression
from ..magic import container as container_of_head
from ..magic import NPY_HEADER_MAX, NPY_MAGIC, descr_has_object, is_proto_pickle, may_start_pickle, parse_npy_header
from .policy import rules
from .source import CRLFRestored, Corrupt, Halt, Source, Truncated, open_compressed
from .vm import Collector, Machine, broken, qual, scan_streams

TYPE_CHECKING = False  # typing's constant, without importing typing
if TYPE_CHECKING:
    import zipfile


def _zipfile():
    """The zipfile module, imported where an archive is opened or a handler must match its errors: it brings
    shutil, bz2, lzma and threading, a twentieth of a one-file scan of a plain pickle that opens no archive."""
    import zipfile

    return zipfile


def _zip_errors() -> tuple:
    """rawzip.ZIP_ERRORS, for an except clause (evaluated only when an exception is being matched)."""
    from .rawzip import ZIP_ERRORS

    return ZIP_ERRORS


ZIP_DEPTH = 3  # archives inside archives followed this deep

_STORAGE_SIZES = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1, "Byte": 1,
    "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QUInt8": 1, "QInt8": 1, "QInt32": 4, "QUInt4x2": 1,
    "QUInt2x4": 1, "Untyped": 1, "Float8_e5m2": 1, "Float8_e4m3fn": 1,
}


def _scan_pickle(out: Collector, raw, size: int | None, prefix: str = "", compression: str | None = None,
                 depth: int = 0) -> None:
    """A pickle or joblib file, decompressed on the fly when joblib compressed it."""
    if compression:
        out.meta["compression"] = compression
        src = Source(open_compressed(raw, compression))
    else:
        src = Source(raw, size)
    scan_streams(out, src, prefix)


def _scan_torch_legacy(out: Collector, raw, size: int | None, prefix: str = "", compression=None,
                       depth: int = 0) -> None:
    """``torch.save(..., _use_new_zipfile_serialization=False)``: five pickles (magic number, protocol,
    system info, the object, storage keys), then raw storage data, which nothing unpickles."""
    src = Source(raw, size)
    values = scan_streams(out, src, prefix, limit=5)
    where = prefix or "file"
    if len(values) < 5:
        if not out.corrupt:
            broken(out, f"legacy torch file holds {len(values)} of its 5 pickles", where)
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
        broken(out, f"storage data is {tail} bytes where the pickles describe {expected}", where)
    elif tail > expected:
        out.finding("info", f"{tail - expected} bytes after the storage data are never read", where)


def _npy_header(src: Source) -> dict:
    """The header dict of a .npy stream (see ``magic.parse_npy_header``)."""
    head = src.take(8)
    if head[:6] != NPY_MAGIC:
        raise Corrupt("not a .npy stream", 0)
    major = head[6]
    length = int.from_bytes(src.take(2 if major == 1 else 4), "little")
    if length > NPY_HEADER_MAX:
        raise Corrupt(f".npy header of {length} bytes", 8)
    try:
        return parse_npy_header(src.take(length), major)
    except ValueError as exc:
        raise Corrupt(str(exc), 10) from None


def _scan_npy(out: Collector, raw, size: int | None, prefix: str = "", compression=None, depth: int = 0) -> None:
    """A .npy file: only an object array's data is a pickle (np.load(allow_pickle=True) unpickles it)."""
    src = Source(raw, size)
    try:
        header = _npy_header(src)
    except Corrupt as exc:
        broken(out, str(exc), prefix)
        return
    out.meta["npy_arrays"] = out.meta.get("npy_arrays", 0) + 1
    if descr_has_object(header["descr"]):
        out.meta["npy_object_arrays"] = out.meta.get("npy_object_arrays", 0) + 1
        scan_streams(out, src, prefix or "object array data", joblib=False)


def risky_member_names(names) -> list[str]:
    """Archive member paths that would land outside the folder they are extracted to."""
    bad = []
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
            bad.append(name)
    return bad


_PICKLE_NAMES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".sav", ".model")


def _scan_zip(out: Collector, zf: zipfile.ZipFile, policy: str, prefix: str = "", depth: int = 0) -> None:
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
        except rawzip.ZIP_ERRORS as exc:
            broken(out, f"cannot read archive member header: {exc}", label)
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


def _scan_one(out: Collector, opener, size: int, base: str, label: str, policy: str, depth: int) -> None:
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
    except Halt as exc:
        out.finding("unknown", f"scan stopped: {exc}", label)
    except (Corrupt, *_zip_errors()) as exc:
        broken(out, f"cannot read archive member: {exc}", label)
        return
    scanned = out.meta.setdefault("pickle_members", [])
    if len(scanned) < 1000:
        scanned.append(label)


def _scan_torchscript_code(out: Collector, opener, label: str) -> None:
    """TorchScript source that torch.jit.load compiles and the model runs (convert.torchscript_scan)."""
    from .torchscript import CodeError, scan

    out.meta["torchscript_code_files"] = out.meta.get("torchscript_code_files", 0) + 1
    try:
        with opener() as fh:
            calls = scan(fh)
    except CodeError as exc:
        out.finding("unknown", str(exc), label)
        return
    except _zip_errors() as exc:
        broken(out, f"cannot read TorchScript code: {exc}", label)
        return
    for call in calls:
        out.finding(call.severity, call.what, f"{label} line {call.line}")


def _export_roles(out: Collector, zf: zipfile.ZipFile, prefix: str) -> dict:
    """How torch.export.load reads each member; config entries the plan cannot account for make the scan unknown."""
    from . import rawzip
    from .pt2 import CONFIG_MAX, plan

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
    kind = container_of_head(head)
    if kind in ("zip", "7z", "torch-legacy", "npy"):
        return kind
    if policy != "sniff" or is_proto_pickle(head):
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
        inner = open_compressed(fh, what).read(_PROBE_HEAD)
    except Halt:  # lz4 without the lz4 module: scan it anyway, which says so (fail closed)
        return f"joblib:{what}"
    except Exception:  # noqa: BLE001 -- any decompressor error: not compressed data of this kind
        return None
    if inner and probe(inner, complete=len(inner) < _PROBE_HEAD)[0] == "pickle":
        return f"joblib:{what}"
    return None


def _scan_member(out: Collector, fh, size: int, kind: str, label: str, depth: int) -> None:
    kind, _, compression = kind.partition(":")
    _CONTAINERS[kind](out, fh, size if not compression else None, label, compression or None, depth)


def _scan_nested_zip(out: Collector, fh, size, prefix: str = "", compression=None, depth: int = 0) -> None:
    if depth >= ZIP_DEPTH:
        out.finding("unknown", f"archive nested more than {ZIP_DEPTH} deep was not scanned", prefix)
        return
    try:
        zf = _zipfile().ZipFile(fh)
    except _zip_errors() as exc:
        raise Corrupt(f"damaged zip archive: {exc}", 0) from None
    with zf:
        names = zf.namelist()
        if not prefix and formats.zip_format(list(names)) == "torchscript":
            out.context = "torchscript"
        _scan_zip(out, zf, _zip_policy(names), prefix, depth + (1 if prefix else 0))


def _scan_7z(out: Collector, fh, size, prefix: str = "", compression=None, depth: int = 0) -> None:
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


def _zip_policy(names) -> str:
    return {"torch-zip": "torch", "torchscript": "torch", "torch-export": "export"}.get(formats.zip_format(list(names)), "sniff")


def _result(out: Collector) -> PickleScan:
    table = rules()
    refs = sorted(out.refs.values(), key=lambda r: (r.module, r.name))
    for r in refs:
        if r.kind == "partial" and r.verdict == "suspicious" and (r.module, r.name) in table.conditional:
            if out.partial_wraps:
                r.why = f"wraps {', '.join(sorted(out.partial_wraps)[:3])}, which the allowlist does not hold"
            else:
                r.verdict, r.why = "safe", "wraps only allowlisted globals"
    globals_ = tuple(GlobalRef(r.module, r.name, r.verdict, r.where, r.count) for r in refs)
    findings = [Finding(f"imports {qual(r)}: {r.why}", r.verdict, r.where) for r in refs if r.verdict != "safe"]
    old = [r for r in refs if r.verdict == "safe" and r.why and r.kind != "partial"]  # old names of allowlisted ones
    findings.extend(Finding(f"imports {qual(r)}: {r.why}", "info", r.where) for r in old)
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


def scan_bytes(data: bytes) -> PickleScan:
    """Scan an in-memory pickle (or compressed joblib, .npy, zip archive)."""
    return scan_stream(io.BytesIO(bytes(data)))


def scan_stream(fileobj) -> PickleScan:
    """Scan a binary file object from its current position: a pickle, compressed joblib, .npy or zip
    (archives need a seekable file)."""
    head = _peek(fileobj, 64)
    out = Collector()
    kind = container_of_head(head)
    _guarded(out, lambda: _dispatch(out, fileobj, _remaining(fileobj), kind))
    return _result(out)


def scan_crlf_restored(path) -> PickleScan:
    """Scan a pickle file as it was before a LF -> CRLF conversion (to tell that conversion is what broke it)."""
    path = as_path(path)
    out = Collector()

    def run():
        with path.open("rb") as fh:
            scan_streams(out, Source(CRLFRestored(fh)))

    _guarded(out, run)
    return _result(out)


def probe(data: bytes, complete: bool, strict: bool = False) -> tuple[str, int | None]:
    """Does ``data``, the start of a file, read as a pickle? ``("pickle", protocol)`` when the walk reaches
    STOP or stays valid to where ``data`` ends (``complete``: it is the whole file), or when it breaks only after
    doing what a loader would act on: importing a name the policy knows (one it calls safe or unsafe) or calling an
    imported global (a pickle.load of it has run code by then). Else ``("invalid", None)``. ``strict``, for
    headerless candidates, also wants substance: one of those, a STOP, or 64 valid bytes before the data runs out."""
    machine = Machine(Collector())
    try:
        machine.run(Source.of_bytes(data), "probe")
    except Truncated as exc:
        if strict and (complete or exc.at < 64) and not _acted(machine.out):
            return "invalid", None
    except Corrupt:
        if not _acted(machine.out):
            return "invalid", None
    except Halt:
        pass
    return "pickle", machine.protocol


def _acted(out: Collector) -> bool:
    """A walk that imported a name the policy knows, or called something after importing, read a real pickle
    (text that merely starts like one imports made-up names and breaks before any call)."""
    return any(r.verdict != "suspicious" for r in out.refs.values()) or bool(out.refs and out.calls)


def scan_file(path, detection=None) -> PickleScan:
    """Scan every pickle a file would unpickle. ``detection`` (from ``detect``) says how to walk it; without it,
    the file's first bytes do (``magic.container``)."""
    path = as_path(path)
    if detection is None:
        with path.open("rb") as fh:
            kind = container_of_head(fh.read(64))
        fmt = None
    else:
        fmt = detection.format
        kind = formats.get(fmt).container if fmt in formats.FORMATS else None
        if kind is None:  # formats that hold no pickles
            return PickleScan("safe", streams=0, metadata={"joblib_arrays": 0, "pickle_bearing": False})
        if kind == "pickle" and detection.compression:
            kind = f"joblib:{detection.compression}"
    out = Collector(context="torchscript" if fmt == "torchscript" else "")

    def run():
        with path.open("rb") as fh:
            _dispatch(out, fh, path.stat().st_size, kind)

    _guarded(out, run)
    _scan_companions(out, path)
    return _result(out)


# container kind -> scanner(out, file, size, prefix, compression, depth)
_CONTAINERS = {"zip": _scan_nested_zip, "torch-legacy": _scan_torch_legacy, "npy": _scan_npy,
               "pickle": _scan_pickle, "joblib": _scan_pickle, "7z": _scan_7z}


def _guarded(out: Collector, run) -> None:
    """Turn what stops a scan into findings: the verdict is then ``unknown``, never a traceback."""
    try:
        run()
    except Halt as exc:
        out.finding("unknown", f"scan stopped: {exc}")
    except Corrupt as exc:
        broken(out, str(exc), "")
    except _zipfile().BadZipFile as exc:
        broken(out, f"broken zip archive: {exc}", "")
    except OSError as exc:
        broken(out, f"cannot read: {exc.strerror or exc}", "")


def _dispatch(out: Collector, fh, size, kind: str) -> None:
    _scan_member(out, fh, size, kind, "", 0)


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


def _scan_companions(out: Collector, path: Path) -> None:
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
        with companion.open("rb") as fh:
            if fh.read(6) == b"\x93NUMPY":  # ZF companions (joblib 0.9 compressed) hold raw array bytes
                fh.seek(0)
                _guarded(out, lambda: _scan_npy(out, fh, companion.stat().st_size, name))  # noqa: B023
