"""Golden records: inputs, native and ONNX outputs, tolerances, artifact hashes and library versions,
written once and replayed by ``verify`` in a later environment.

A record (``.mprec``) is a zip holding ``manifest.json`` and ``.npy`` arrays. Nothing in it is a pickle:
arrays are read with ``allow_pickle=False`` and strings are stored as fixed-width Unicode. The bytes are
deterministic for the same content (sorted members, fixed timestamps, no wall-clock time), so records
diff cleanly in version control.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import convert
from convert.errors import BadInputError

from ..checks.compare import Tolerance, default_tolerance
from ..checks.report import environment
from .model_class import Chosen
from .model_class import stored as stored_class

RECORD_SCHEMA = "modelport.record/1"
SCHEMA_NAME, SCHEMA_VERSION = RECORD_SCHEMA.rsplit("/", 1)
DEFAULT_RECORD_ROWS = 256
_EPOCH = (1980, 1, 1, 0, 0, 0)
MAX_MEMBER_BYTES = 2 << 30  # a member claiming more than 2 GiB uncompressed is not ours


def sha256_of(path: Path) -> str:
    """Streamed sha256 of a file, or of a directory's files (sorted relative paths and contents)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class Record:
    """A record in memory. ``arrays`` maps member names (``inputs/X.npy``) to arrays."""

    manifest: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    onnx_bytes: bytes | None = None  # a graph converted on the fly is kept inside the record
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what building it did that the user should hear about

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {i["name"]: self.arrays[i["file"]] for i in self.manifest["inputs"]}

    def outputs(self, side: str) -> dict[str, np.ndarray]:
        return {o["name"]: self.arrays[o["file"]] for o in self.manifest["outputs"].get(side, [])}

    def tolerance(self, name: str, a: np.ndarray, b: np.ndarray) -> Tolerance | None:
        """The user's tolerance for output ``name`` if the record holds one, else the dtype default."""
        table = self.manifest.get("tolerances", {})
        chosen = table.get(name)
        base = default_tolerance(a.dtype, b.dtype) if a.dtype.kind == "f" or b.dtype.kind == "f" else None
        if chosen:
            return Tolerance(chosen["rtol"], chosen["atol"])
        if "*" in table and base is not None:
            star = table["*"]
            return Tolerance(star["rtol"] if star["rtol"] is not None else base.rtol,
                             star["atol"] if star["atol"] is not None else base.atol)
        return base


# ---------------------------------------------------------------------------------------------
# arrays that survive allow_pickle=False


def storable(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind == "O":
        return arr.astype(str)
    return arr


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, storable(arr), allow_pickle=False)
    return buf.getvalue()


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write(record: Record, path: str | Path) -> Path:
    """Write a record atomically with deterministic bytes."""
    from convert.atomic import write_atomic

    members: dict[str, bytes] = {name: _npy_bytes(arr) for name, arr in record.arrays.items()}
    if record.onnx_bytes is not None:
        members["model.onnx"] = record.onnx_bytes
    members["manifest.json"] = (json.dumps(record.manifest, indent=2, sort_keys=True) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            zf.writestr(_member(name), members[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return write_atomic(Path(path), buf.getvalue())


def read(path: str | Path) -> Record:
    """Open a record; corrupt files and records from a newer schema raise BadInputError (exit 2)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError("no such record", path=path)
    if path.is_dir():
        raise BadInputError("is a directory, not a record", path=path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(f"not a modelport record (not a zip: {exc})", path=path,
                            hint="records are written by `modelport record`") from None
    with zf:
        try:
            manifest = json.loads(_read_member(zf, "manifest.json", path))
        except (KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"corrupt record: manifest.json unreadable ({type(exc).__name__})", path=path) from None
        schema = str(manifest.get("schema", ""))
        name, _, version = schema.rpartition("/")
        if name != SCHEMA_NAME or not version.isdigit():
            raise BadInputError(f"not a modelport record (schema {schema!r})", path=path)
        if int(version) > int(SCHEMA_VERSION):
            raise BadInputError(f"written by a newer modelport (record schema {schema}; this one reads "
                                f"{RECORD_SCHEMA})", path=path, hint="upgrade modelport to verify it")
        arrays = {}
        try:
            wanted = [i["file"] for i in manifest["inputs"]]
            wanted += [o["file"] for side in manifest["outputs"].values() for o in side]
            for member in wanted:
                arrays[member] = np.load(io.BytesIO(_read_member(zf, member, path)), allow_pickle=False)
            onnx_bytes = _read_member(zf, "model.onnx", path) if "model.onnx" in zf.namelist() else None
        except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
            raise BadInputError(f"corrupt record: {type(exc).__name__}: {str(exc)[:120]}", path=path,
                                hint="re-create it with `modelport record`") from None
    return Record(manifest, arrays, onnx_bytes, path)


def _read_member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise BadInputError(f"record member {name} claims {info.file_size} bytes", path=path)
    return zf.read(info)


# ---------------------------------------------------------------------------------------------
# building a record


def _artifact_entry(artifact_path: Path, record_path: Path, fmt: str | None = None) -> dict:
    artifact_path = Path(artifact_path).resolve()
    base = Path(record_path).resolve().parent
    try:
        rel = os.path.relpath(artifact_path, base)
    except ValueError:  # another drive on Windows
        rel = str(artifact_path)
    return {"path": rel.replace(os.sep, "/"), "sha256": sha256_of(artifact_path), "format": fmt}


def _hints_entry(hints: convert.Hints, record_path: Path) -> dict:
    """What the user told ``record`` about the model. A model class is stored as ``model_class.stored``
    says (a file relative to the record, with its sha256); a replay uses it only under ``--trust``."""
    return {
        "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in hints.inputs],
        **stored_class(hints.model_class, record_path), "model_args": dict(hints.model_args),
        "state_key": hints.state_key, "signature_name": hints.signature_name, "exporter": hints.exporter,
        "trust": hints.trust,
    }


def hints_from(entry: dict, trust: bool, chosen: Chosen | None = None, path: Path | None = None) -> convert.Hints:
    """Hints for a replay: the record's data (input specs, state key, signature, exporter) and the model
    class ``chosen`` by ``model_class.choose`` (never the record's own spec unchosen: a record is data)."""
    from convert.spec import TensorSpec

    chosen = chosen or Chosen()
    try:
        specs = tuple(TensorSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in entry.get("inputs", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"corrupt record: its input hints are unreadable ({type(exc).__name__}: {exc})",
                            path=path, hint="re-create it with `modelport record`") from None
    return convert.Hints(trust=trust, inputs=specs, model_class=chosen.spec, model_args=chosen.args,
                         state_key=entry.get("state_key"), signature_name=entry.get("signature_name"),
                         exporter=entry.get("exporter"))


def _collect(source, rows: int | None, batch: int = 4096) -> tuple[dict[str, np.ndarray], int]:
    """The first ``rows`` rows of ``source`` (every row: None), and how many rows it holds in all (read to
    its end when it does not say, so that dropping rows is never silent)."""
    parts: list[dict] = []
    kept = total = 0
    for chunk in source.batches(batch):
        n = len(next(iter(chunk.values())))
        total += n
        take = n if rows is None else min(n, rows - kept)
        if take > 0:
            parts.append({k: np.asarray(v[:take]) for k, v in chunk.items()})
            kept += take
        if rows is not None and kept >= rows and source.rows is not None:
            total = max(total, source.rows)
            break
    if not parts:
        raise BadInputError("no rows to record", path=source.description)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, total


def member_name(kind: str, index: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return f"{kind}/{index:02d}_{safe}.npy"


def build(native, onnx_model=None, output: str | Path = "model.mprec", *, inputs=None,
          rows: int = DEFAULT_RECORD_ROWS, seed: int = 0, rtol: float | None = None, atol: float | None = None,
          tolerances: dict | None = None, hints: convert.Hints | None = None, opset: int | None = None) -> Record:
    """Check the native model against the ONNX model (given, or converted here and kept inside the record) as
    ``check`` does, then run both on the rows to record and capture everything ``verify`` needs later.

    Recorded rows: the first ``rows`` rows of ``inputs`` (``rows=0``: all of them; ``record.notes`` says when
    rows were left out), or ``rows`` synthesized rows when there are no ``inputs``."""
    from ..checks import harness as checking
    from ..checks.inputs import read_inputs, synthesize
    from ..checks.run import OnnxRunner

    hints = hints or convert.Hints()
    output = Path(output)
    if rows < 0 or (rows == 0 and not inputs):
        raise BadInputError(f"--rows {rows}: nothing to record", hint="--rows N records N rows; --rows 0 keeps "
                            "every row of --inputs")
    loaded = native if isinstance(native, convert.Loaded) else convert.load(native, hints)
    onnx_bytes = None
    onnx_entry = None
    report = None
    if onnx_model is None:
        result = checking.convert_and_check(loaded, inputs=inputs, rows=1000, seed=seed, rtol=rtol, atol=atol,
                                            tolerances=tolerances, write=False, opset=opset)
        if not result.passed:
            raise BadInputError("the converted model disagrees with the native one; nothing recorded",
                                path=loaded.artifact.path, hint="run `modelport convert` to see the report")
        model_proto = result.converted.model
        onnx_bytes = model_proto.SerializeToString()
        report = result.report
        onnx_entry = {"embedded": "model.onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                      "remedy": result.converted.remedy}
    else:
        onnx_path = Path(onnx_model)
        report = checking.check(loaded, onnx_path, inputs=inputs, rows=1000, seed=seed, rtol=rtol, atol=atol,
                                tolerances=tolerances)
        if not report.passed:
            raise BadInputError("the ONNX model disagrees with the native one; nothing recorded", path=onnx_path,
                                hint="run `modelport check` to see the report")
        onnx_bytes_now = onnx_path.read_bytes()
        onnx_entry = _artifact_entry(onnx_path, output, "onnx")
        model_proto = onnx_bytes_now
    source = read_inputs(inputs, loaded.signature) if inputs else synthesize(loaded.signature, rows=rows, seed=seed)
    feeds, available = _collect(source, rows or None)
    kept = len(next(iter(feeds.values())))
    notes = [f"recorded the first {kept} of the {available} rows of {source.description}; the other "
             f"{available - kept} were left out (--rows N records more, --rows 0 all of them)"] \
        if inputs and available > kept else []
    native_out = loaded.run(feeds)
    runner = OnnxRunner(model_proto)
    onnx_out = runner({n: feeds[n] for n in runner.input_names})
    arrays: dict[str, np.ndarray] = {}
    manifest_inputs = []
    for i, (name, arr) in enumerate(feeds.items()):
        file = member_name("inputs", i, name)
        arrays[file] = storable(arr)
        manifest_inputs.append({"name": name, "file": file, "dtype": str(np.asarray(arr).dtype),
                                "shape": list(np.asarray(arr).shape)})
    sides = {"native": native_out, "onnx": onnx_out}
    manifest_outputs = {}
    for side, values in sides.items():
        entries = []
        for i, name in enumerate(loaded.signature.output_names):
            if name not in values:
                continue
            file = member_name(side, i, name)
            arrays[file] = storable(values[name])
            entries.append({"name": name, "file": file, "dtype": str(np.asarray(values[name]).dtype)})
        manifest_outputs[side] = entries
    # only what the user chose; otherwise verify applies the defaults of the dtypes it compares
    tol_table = {name: {"rtol": tol.rtol, "atol": tol.atol} for name, tol in (tolerances or {}).items()}
    if rtol is not None or atol is not None:
        tol_table["*"] = {"rtol": rtol, "atol": atol}
    art = loaded.artifact
    manifest = {
        "schema": RECORD_SCHEMA,
        "native": _artifact_entry(art.path, output, art.format) | {"framework": art.framework,
                                                                   "saved_with": dict(art.saved_with)},
        "onnx": onnx_entry,
        "adapter": loaded.adapter,
        "model": loaded.facts.get("estimator") or loaded.facts.get("model") or "",
        "hints": _hints_entry(hints, output),
        "inputs": manifest_inputs,
        "input_source": source.description,
        "outputs": manifest_outputs,
        "kinds": {o.name: {"kind": o.kind, "scores_from": o.scores_from,
                           "classes": list(o.classes) if o.classes is not None else None}
                  for o in loaded.signature.outputs},
        "tolerances": tol_table,
        "environment": environment(),
    }
    record = Record(json.loads(json.dumps(manifest, default=_json_default)), arrays, onnx_bytes, output, notes)
    write(record, output)
    return record


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)

