"""What a file on disk is, read from its bytes without running any of its code."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import formats
from .findings import Finding, GlobalRef, PickleScan, worst
from .storage import RemotePath, as_path, local_copy


@dataclass(frozen=True, eq=False)
class Artifact:
    """A model file (or SavedModel directory) as seen from the outside.

    ``format`` names the container (``pickle``, ``joblib``, ``torch-zip``, ``torch-legacy``, ``torchscript``,
    ``torch-export``, ``savedmodel``, ``keras``, ``keras-h5``, ``hdf5``, ``onnx``, ``skops``, ``safetensors``,
    ``npy``, ``npz``, ``zip``, ``7z``); ``framework`` the library that wrote it, when the bytes say
    (``sklearn``, ``torch``, ``tensorflow``, ``keras``, ``onnx``, ...).
    """

    path: Path
    format: str
    framework: str | None
    size: int
    sha256: str
    saved_with: dict = field(default_factory=dict)  # e.g. {"sklearn": "1.5.2"} or {"sklearn": "before 0.18"}
    compression: str | None = None  # joblib: "zlib" | "gzip" | "bz2" | "lzma" | "xz" | "lz4"
    safety: str = "unknown"  # "safe" | "suspicious" | "unsafe" | "unknown"
    findings: tuple[Finding, ...] = ()
    globals: tuple[GlobalRef, ...] = ()
    details: dict = field(default_factory=dict)  # format-specific facts (protocol, members, opsets, ...)

    @property
    def name(self) -> str:
        return self.path.name

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "framework": self.framework,
            "size": self.size,
            "sha256": self.sha256,
            "saved_with": dict(self.saved_with),
            "compression": self.compression,
            "safety": self.safety,
            "findings": [vars(f) | {} for f in self.findings],
            "globals": [
                {"module": g.module, "name": g.name, "verdict": g.verdict, "where": g.where, "count": g.count}
                for g in self.globals
            ],
            "details": _jsonable(self.details),
            "will_migrate": will_migrate(self),
        }


def will_migrate(a: Artifact) -> list[str]:
    """What the scikit-learn adapter's migrating loader will bring forward when it loads this file, as far as the
    bytes say: old names the history table maps, line endings it restores, joblib < 0.10 containers it reads.
    State the loader brings forward (renamed attributes, tree layouts) shows only once it loads: ``Loaded.facts``."""
    from .versions import installed

    scan = a.details.get("pickle_scan") or {}
    out = []
    if scan.get("old_names"):
        out.append(f"will migrate: {scan['old_names']} old name(s) through the history table (listed as 'old name "
                   "of' findings)")
    if a.details.get("restored_safety") is not None:
        out.append("will restore its line endings (a text-mode copy turned every LF into CRLF)")
    if a.compression == "zfile" or scan.get("joblib_companion_files"):
        out.append("will read its joblib < 0.10 container" + (" and companion files" if
                                                                scan.get("joblib_companion_files") else ""))
    saved, now = a.saved_with.get("sklearn"), installed("sklearn") if a.framework == "sklearn" else None
    if out or (saved and now and saved != now):
        out.append(f"saved with scikit-learn {saved}, loaded with {now}: state the release changed is brought "
                   "forward on load, each change listed")
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------- inspect

# top-level module of the globals -> framework, most specific first (a sklearn Pipeline holding numpy arrays
# is sklearn; a dict of arrays is numpy)
_FRAMEWORK_BY_MODULE = (("sklearn", "sklearn"), ("torch", "torch"), ("xgboost", "xgboost"), ("lightgbm", "lightgbm"),
                        ("catboost", "catboost"), ("keras", "keras"), ("tensorflow", "tensorflow"),
                        ("statsmodels", "statsmodels"), ("pandas", "pandas"), ("scipy", "scipy"), ("numpy", "numpy"))

# types skops writes for plain containers and scalars (its own loader trusts them)
_SKOPS_NATIVE = frozenset(("builtins:" + t) for t in ("dict", "list", "tuple", "str", "int", "float", "bool", "bytes",
                                                       "bytearray", "set", "frozenset", "complex", "NoneType", "slice",
                                                       "type"))


def inspect(path) -> Artifact:
    """Everything modelport can tell about a model file or SavedModel folder without running any of its
    code: format, framework, the versions it was saved with, sha256, size, and the static pickle scan.

    A store object (``s3://...``, see ``storage``) is read through ranged requests: the scan reads what a
    loader would read, seeking over the rest, and ``sha256`` stays empty (its ETag, size and modification
    time are in ``details["object"]``: hashing would download it all). A folder in a store (a SavedModel) is
    copied to a private temporary folder first: its scans need local files."""
    path = as_path(path)
    if isinstance(path, RemotePath):
        return _inspect_remote(path)
    return _inspect(path)


def _inspect(path) -> Artifact:
    """``inspect`` of a local path, or of a store object read through ranged requests."""
    from .detect import detect
    from .scan import scan_file

    detection = detect(path)
    size, digest = _digest(path)
    details = dict(detection.details)
    fmt = detection.format
    row = formats.get(fmt)
    code_scan = _CODE_SCANS.get(row.code_scan)
    findings = list(_format_findings(detection))
    globals_: tuple = ()
    restored = None  # the scan of a CRLF-damaged pickle read with its line endings restored
    scan = (detection.scan or scan_file(path, detection)) if row.container else None
    verdicts = [f.severity for f in findings if f.severity != "info"]
    if code_scan is not None:
        verdict, more, facts = code_scan(path, fmt)
        findings.extend(more)
        verdicts.append(verdict)
        for key in ("backend", "keras_version", "tensorflow_version"):
            if isinstance(facts.get(key), str):
                details.setdefault(key, facts[key])
        if isinstance(facts.get("signatures"), dict):
            details["signatures"] = facts["signatures"]
    if scan is not None:
        if fmt == "pickle" and scan.metadata.get("joblib_arrays"):
            fmt = "joblib"  # joblib array blocks past the first megabyte that detect() looked at
        cause = None
        if scan.metadata.get("corrupt"):
            details["corrupt"] = scan.metadata["corrupt"]
            restored = _crlf_restored(path, details)
            if restored is not None:
                scan = _without_crlf_garbles(scan, restored)
                cause = (f"line endings were converted (every LF byte became CRLF: a text-mode copy or git "
                         f"autocrlf); with them restored the file is a valid pickle (verdict {restored.verdict})")
                details["corrupt_cause"] = cause
                details["restored_safety"] = restored.verdict
                verdicts.append(restored.verdict)  # what it is once repaired counts too (fail closed)
        globals_ = scan.globals
        findings.extend(scan.findings)
        verdicts.append(scan.verdict)
        details["pickle_scan"] = dict(scan.metadata, streams=scan.streams)
        if cause:
            findings.append(Finding(cause, "unknown", "whole file"))
    if scan is None and path.is_file():
        also = _also_a_pickle(path)
        if also is not None:  # a polyglot: valid as its format and as a pickle a loader may unpickle by name
            globals_ = also.globals
            findings.append(Finding(f"the bytes of this {fmt} file also read as a pickle: a loader that unpickles it "
                                    "(by its name) would run what follows", "suspicious", "whole file"))
            findings.extend(also.findings)
            verdicts.extend(["suspicious", also.verdict])
            details["pickle_scan"] = dict(also.metadata, streams=also.streams)
    if fmt == "skops":
        skops_refs = _skops_globals(details.get("types", ()))
        globals_ = tuple(sorted(set(globals_) | set(skops_refs), key=lambda g: (g.module, g.name)))
        for g in skops_refs:
            if g.verdict != "safe":
                findings.append(Finding(f"skops file holds type {g.qualname}: not on the allowlist", g.verdict,
                                        "schema.json"))
        verdicts.extend(g.verdict for g in skops_refs)
    if details.get("corrupt") and not any(f.severity == "unknown" for f in findings):
        findings.append(Finding(f"corrupt or truncated: {details['corrupt']}", "unknown"))
        verdicts.append("unknown")
    return Artifact(
        path=path,
        format=fmt,
        framework=detection.framework or _framework_from(globals_) or _framework_from(restored.globals if restored else ()),
        size=size,
        sha256=digest,
        saved_with=_saved_with(fmt, details, scan),
        compression=detection.compression,
        safety=worst(verdicts),
        findings=tuple(findings),
        globals=globals_,
        details=details,
    )


def _inspect_remote(path: RemotePath) -> Artifact:
    import dataclasses

    info = path.object_info()
    if info.kind == "directory":
        with local_copy(path) as local:
            artifact = inspect(local)
        details = dict(artifact.details, object={"etag": info.etag, "modified": info.modified, "fetched": True})
        return dataclasses.replace(artifact, path=path, details=details)
    artifact = _inspect(path)
    after = path.fresh().object_info()
    details = dict(artifact.details, object={"etag": info.etag, "size": info.size, "modified": info.modified,
                                             "bytes_read": path.fetched, "requests": path.requests})
    if (after.etag, after.size, after.modified) != (info.etag, info.size, info.modified):  # fail closed
        finding = Finding("the object changed in the store while it was read: the scan saw parts of two versions",
                          "unknown", "whole object")
        return dataclasses.replace(artifact, details=details, findings=(*artifact.findings, finding),
                                   safety=worst([artifact.safety, "unknown"]))
    return dataclasses.replace(artifact, details=details)


def _also_a_pickle(path: Path):
    """The scan of a file of another format whose bytes also walk as a pickle that imports or calls something
    (the walk the detector gives headerless pickles), else None. Most formats fail on their first byte."""
    from .detect import PREFIX, Detection
    from .magic import may_start_pickle
    from .scan import probe, scan_file

    with path.open("rb") as fh:
        prefix = fh.read(PREFIX)
    if not may_start_pickle(prefix) or probe(prefix, complete=len(prefix) < PREFIX, strict=True)[0] != "pickle":
        return None
    scan = scan_file(path, Detection("pickle"))
    return scan if scan.verdict in ("unsafe", "suspicious") else None  # a benign-looking walk changes nothing


def _digest(path: Path) -> tuple[int, str]:
    """(size, sha256) streamed; a folder hashes its files' relative paths and contents in sorted order. A
    store object: (size, "") -- hashing it would download what the scan seeks over."""
    import hashlib

    if isinstance(path, RemotePath):
        return path.stat().st_size, ""

    def file_hash(p: Path, h) -> int:
        total = 0
        with open(p, "rb") as fh:
            step = min(1 << 20, os.fstat(fh.fileno()).st_size + 1)  # a request for a megabyte allocates one
            while chunk := fh.read(step):
                h.update(chunk)
                total += len(chunk)
        return total

    h = hashlib.sha256()
    if path.is_file():
        return file_hash(path, h), h.hexdigest()
    total = 0
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        inner = hashlib.sha256()
        total += file_hash(p, inner)
        h.update(f"{p.relative_to(path).as_posix()}\0{inner.hexdigest()}\n".encode())
    return total, h.hexdigest()


def _keras(path, fmt: str):
    from .scan import scan_keras

    return scan_keras(path, fmt)


def _savedmodel(path, fmt: str):
    from .scan import scan_savedmodel

    return scan_savedmodel(path)


# the scans of code that loading runs (Format.code_scan): Lambda bytecode and custom objects in Keras configs,
# graph ops of a SavedModel and where they are reached
_CODE_SCANS = {"keras": _keras, "savedmodel": _savedmodel}


def _crlf_restored(path: Path, details: dict):
    """When a corrupt pickle reads cleanly with CRLF turned back into LF, the conversion is the cause: the
    scan of the restored bytes, else None."""
    if details.get("line_endings") != "CRLF" or not path.is_file() or details.get("compression"):
        return None
    from .scan import scan_crlf_restored

    restored = scan_crlf_restored(path)
    return None if restored.metadata.get("corrupt") else restored


def _without_crlf_garbles(scan: PickleScan, restored: PickleScan) -> PickleScan:
    """The scan of a CRLF-damaged pickle, minus what the damage made up: globals whose names end in the CR a
    text-mode copy put before each LF (``copy_reg\r._reconstructor\r``) are no import any unpickler can
    make (it fails on the first). Importable globals the damaged stream names stay, with their verdicts; the
    release that saved it is read from the restored bytes when the damaged stream breaks off before it."""
    garbled = [g for g in scan.globals if "\r" in g.module or "\r" in g.name]
    if not garbled:
        return scan
    kept = tuple(g for g in scan.globals if g not in garbled)
    made_up = tuple(f"imports {g.qualname}:" for g in garbled)
    findings = tuple(f for f in scan.findings if not f.what.startswith(made_up))
    meta = dict(scan.metadata)
    if "sklearn_version" not in meta and restored.metadata.get("sklearn_version"):
        meta["sklearn_version"] = restored.metadata["sklearn_version"]
    verdict = worst([f.severity for f in findings if f.severity != "info"] + [g.verdict for g in kept])
    return PickleScan(verdict, kept, findings, scan.streams, meta)


def _format_findings(detection):
    """Findings the format itself carries (outside any pickle): archive paths, external data, missing
    weights. Code in Keras configs and SavedModel graphs is reported by the ``_CODE_SCANS``."""
    d = detection.details
    for location in d.get("external_data", ()) if detection.format == "onnx" else ():
        parts = location.replace("\\", "/").split("/")
        if location.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", location):
            yield Finding(f"external data location points outside the model's folder: {location!r}", "suspicious",
                          "graph initializers")
    for name in d.get("risky_members", ()):
        yield Finding(f"archive member path escapes the archive: {name!r}", "suspicious", "zip directory")
    if detection.format == "savedmodel" and not d.get("variables"):
        yield Finding("SavedModel has no variables/variables.index (weights missing?)", "info", "variables/")
    if d.get("graph_error"):
        yield Finding(d["graph_error"], "unknown", "saved_model.pb")


def _skops_globals(types) -> list:
    from .scan import classify_global

    refs = []
    for entry in types:
        module, _, name = entry.partition(":")
        verdict = "safe" if entry in _SKOPS_NATIVE else classify_global(module, name)
        refs.append(GlobalRef(module, name, verdict, "schema.json"))
    return refs


def _framework_from(globals_) -> str | None:
    tops = {g.module.split(".", 1)[0] for g in globals_}
    for top, framework in _FRAMEWORK_BY_MODULE:
        if top in tops:
            return framework
    return None


def _onnx_versions(d: dict) -> dict:
    producer = f"{d.get('producer_name', '')} {d.get('producer_version', '')}".strip()
    return {"onnx_ir": d.get("ir_version"), "onnx_opset": d.get("opsets", {}).get("ai.onnx"), "producer": producer}


# format -> versions its details record, beyond the ones any format may carry
_VERSIONS_BY_FORMAT = {
    "torch-zip": lambda d: {"torch_archive_version": d.get("version")},
    "torchscript": lambda d: {"torch_archive_version": d.get("version")},
    "torch-export": lambda d: {"torch": d.get("torch_version"), "torch_archive_version": d.get("torch_archive_version"),
                               "torch_export_schema": d.get("schema_version")},
    "onnx": _onnx_versions,
}


def _saved_with(fmt: str, details: dict, scan) -> dict:
    """Library versions the bytes record. Keys: sklearn, skops, numpy, torch, torch_archive_version,
    torch_legacy_protocol, torch_export_schema, keras, keras_backend, tensorflow, onnx_ir, onnx_opset, producer."""
    meta = scan.metadata if scan is not None else {}
    found = {
        "sklearn": meta.get("sklearn_version") or details.get("sklearn_version"),
        "numpy": meta.get("numpy"),
        "skops": details.get("skops_version"),
        "torch_legacy_protocol": meta.get("torch_legacy_protocol") or details.get("torch_legacy_protocol"),
        "keras": details.get("keras_version"),
        "keras_backend": details.get("backend"),
        "tensorflow": details.get("tensorflow_version"),
    }
    found.update(_VERSIONS_BY_FORMAT.get(fmt, lambda d: {})(details))
    return {k: v for k, v in found.items() if v not in (None, "")}
