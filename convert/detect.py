"""What kind of model file this is, judged by its bytes (never its name), without running any of it.

Each format has a sniffer: a cheap test on the first bytes and a reader that confirms it and gathers
facts (protocol, archive members, opsets, versions). Reading stays bounded: headers, zip directories,
protobuf field tags; never a whole large file.
"""

from __future__ import annotations

import json
import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import magic
from .errors import BadInputError
from .findings import PickleScan
from .formats import FORMATS, torch_root, zip_format
from .storage import as_path, readable

TYPE_CHECKING = False  # typing's constant, without importing typing
if TYPE_CHECKING:
    import zipfile

HEAD = 4096  # bytes every sniffer sees
PREFIX = 1 << 20  # bytes read when a format has to be confirmed by walking or searching
JSON_MAX = 64 << 20  # largest JSON member/header parsed (safetensors headers, keras configs)
ONNX_LOAD_MAX = 64 << 20  # ONNX files up to this size are also walked to their last field for details

SUPPORTED = ("modelport reads pickle/joblib, torch (.pt zip or legacy), TorchScript, torch.export .pt2, "
             "SavedModel folders, Keras .keras/.h5, ONNX, skops, safetensors and numpy files (and scans zip and 7-Zip "
             "archives of them)")


@dataclass(frozen=True)
class Detection:
    """The container format (one of FORMATS), the library that wrote it when the bytes say, joblib's
    compression, and format-specific facts. ``scan``: where confirming the format took walking its pickle
    streams, that walk, which is the file's whole pickle scan (``artifact.inspect`` does not walk it again)."""

    format: str
    framework: str | None = None
    compression: str | None = None
    details: dict = field(default_factory=dict)
    scan: PickleScan | None = field(default=None, compare=False, repr=False)


def detect(path) -> Detection:
    """Detect the format of a file or SavedModel directory (local, or a ``storage.RemotePath``), or raise
    BadInputError saying what it is."""
    path = as_path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BadInputError("no such file or directory", path=path, hint="check the path") from None
    except OSError as exc:
        raise BadInputError(f"cannot read it: {exc.strerror or exc}", path=path, hint="check its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        return _directory(path)
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError("not a regular file", path=path, hint="pass a model file or a SavedModel folder")
    if info.st_size == 0:
        raise BadInputError("empty file (0 bytes)", path=path, hint="re-save the model; nothing was written")
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD)
    except OSError as exc:
        raise BadInputError(f"cannot read it: {exc.strerror or exc}", path=path, hint="check its permissions") from None
    for test, reader in _SNIFFERS:
        if test(head, info.st_size):
            found = reader(path, head, info.st_size)
            if found is not None:
                return found
    raise BadInputError(f"not a model file modelport knows: it looks like {magic.describe(head)}", path=path,
                        hint=SUPPORTED)


# -------------------------------------------------------------------------------------- directories


def is_savedmodel(path: Path) -> bool:
    """A folder holding ``saved_model.pb`` (or ``.pbtxt``): one artifact, however many files it has."""
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def _directory(path: Path) -> Detection:
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    if not is_savedmodel(path):
        raise BadInputError("a directory that is not a TensorFlow SavedModel (no saved_model.pb)", path=path,
                            hint="pass a model file, or the SavedModel folder that holds saved_model.pb")
    variables = path / "variables"
    details = {
        "graph_file": pb.name if pb.is_file() else pbtxt.name,
        "variables": variables.is_dir() and any(variables.glob("variables.index")),
        "variables_dir": variables.is_dir(),
        "assets": (path / "assets").is_dir(),
        "fingerprint": (path / "fingerprint.pb").is_file(),
        "keras_metadata": (path / "keras_metadata.pb").is_file(),
    }
    details.update(_savedmodel_info(pb) if pb.is_file() else _savedmodel_text_info(pbtxt))
    keras_meta = path / "keras_metadata.pb"
    if keras_meta.is_file():
        with keras_meta.open("rb") as fh:
            m = re.search(rb'"keras_version":\s*"([^"]{1,40})"', fh.read(PREFIX))
        if m:
            details["keras_version"] = m.group(1).decode("ascii", "replace")
    return Detection("savedmodel", "keras" if details["keras_metadata"] else "tensorflow", None, details)


def _savedmodel_info(pb: Path) -> dict:
    """MetaInfoDef facts from saved_model.pb: SavedModel.meta_graphs(2) > MetaGraphDef.meta_info_def(1) >
    tags(4), tensorflow_version(5), tensorflow_git_version(6). Large graph fields are seeked over."""
    info: dict = {"tags": []}
    try:
        with pb.open("rb") as fh:
            reader = _Proto(fh, pb.stat().st_size)
            for num, wire, value in reader.fields():
                if num == 2 and wire == 2:
                    for num2, wire2, value2 in reader.fields(value):
                        if num2 == 1 and wire2 == 2:
                            for num3, wire3, value3 in reader.fields(value2):
                                if wire3 != 2:
                                    continue
                                if num3 == 4:
                                    info["tags"].append(reader.text(value3))
                                elif num3 == 5:
                                    info.setdefault("tensorflow_version", reader.text(value3))
                                elif num3 == 6:
                                    info.setdefault("tensorflow_git_version", reader.text(value3))
                            break
                elif num == 1 and wire == 0:
                    info["saved_model_schema_version"] = value
    except (_ProtoError, OSError) as exc:
        info["graph_error"] = f"saved_model.pb is not a readable SavedModel protobuf: {exc}"
    return info


def _savedmodel_text_info(pbtxt: Path) -> dict:
    with pbtxt.open("rb") as fh:
        text = fh.read(PREFIX)
    info: dict = {"tags": [t.decode("utf-8", "replace") for t in re.findall(rb'tags:\s*"([^"]*)"', text)]}
    m = re.search(rb'tensorflow_version:\s*"([^"]*)"', text)
    if m:
        info["tensorflow_version"] = m.group(1).decode("utf-8", "replace")
    return info


# -------------------------------------------------------------------------------------------- zips


def _zip(path: Path, head: bytes, size: int) -> Detection:
    import zipfile  # here, not at the top: a run that meets no archive never pays for it (nor shutil, bz2, lzma)

    from .scan.rawzip import ZIP_ERRORS

    try:
        with zipfile.ZipFile(readable(path)) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            fmt = zip_format(names)
            details = {"members": len(names)}
            from .scan import risky_member_names

            risky = risky_member_names(names)
            if risky:
                details["risky_members"] = risky[:50]
            details.update(_ZIP_DETAILS.get(fmt, _plain_zip_details)(zf, names))
    except ZIP_ERRORS as exc:
        raise BadInputError(f"a damaged zip archive: {exc}", path=path,
                            hint="re-save or re-download the file") from None
    return Detection(fmt, FORMATS[fmt].framework, None, details)


def _read_member(zf: zipfile.ZipFile, name: str, limit: int = JSON_MAX) -> bytes:
    with zf.open(name) as fh:
        return fh.read(limit)


def _json_member(zf: zipfile.ZipFile, name: str):
    from .scan.rawzip import ZIP_ERRORS

    try:
        return json.loads(_read_member(zf, name))
    except ZIP_ERRORS:  # includes ValueError: not JSON
        return None


def _text_member(zf: zipfile.ZipFile, name: str) -> str | None:
    from .scan.rawzip import ZIP_ERRORS

    try:
        return _read_member(zf, name, 256).decode("utf-8", "replace").strip()
    except ZIP_ERRORS:
        return None


def _torch_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    root = torch_root(names)
    pre = f"{root}/" if root else ""
    details = {
        "archive_root": root,
        "pickles": [n for n in names if n.endswith((".pkl", ".debug_pkl")) and "/code/" not in f"/{n}"],
        "storages": sum(1 for n in names if n.startswith(f"{pre}data/")),
    }
    for key, member in (("version", "version"), ("version", ".data/version"), ("byteorder", "byteorder")):
        if f"{pre}{member}" in names and key not in details:
            details[key] = _text_member(zf, f"{pre}{member}")
    code = [n for n in names if n.startswith(f"{pre}code/") and not n.endswith("/")]
    if code:
        details["code_files"] = [n for n in code if not n.endswith(".debug_pkl")]
    return details


def _export_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    details: dict = {"pickles": [n for n in names if n.endswith((".pkl", ".pt", ".pth"))]}
    for n in names:
        base = n.rsplit("/", 1)[-1]
        if base in ("archive_format", "archive_version") or n.endswith(".data/version"):
            key = "torch_archive_version" if n.endswith(".data/version") else base
            details[key] = _text_member(zf, n)
    models = [n for n in names if "/models/" in f"/{n}" and n.endswith(".json")]
    details["models"] = models
    if models:
        doc = _json_member(zf, models[0])
        if isinstance(doc, dict):
            schema = doc.get("schema_version")
            if isinstance(schema, dict):
                details["schema_version"] = f"{schema.get('major')}.{schema.get('minor')}"
            if isinstance(doc.get("torch_version"), str):
                details["torch_version"] = doc["torch_version"]
    return details


def _keras_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    details: dict = {}
    meta = _json_member(zf, "metadata.json")
    if isinstance(meta, dict):
        for key in ("keras_version", "date_saved"):
            if isinstance(meta.get(key), str):
                details[key] = meta[key]
    config = _json_member(zf, "config.json")
    details.update(keras_config_facts(config))
    return details


def keras_config_facts(config) -> dict:
    """What a Keras model config says about code: Lambda layers (Python bytecode that keras runs when
    loaded with safe_mode=False) and custom objects (classes from outside keras)."""
    facts: dict = {"lambda_layers": [], "custom_objects": []}
    if isinstance(config, dict):
        facts["model_class"] = config.get("class_name")
    stack = [config]
    seen = 0
    while stack and seen < 200_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            cls = node.get("class_name")
            if cls == "Lambda":
                name = (node.get("config") or {}).get("name", "?") if isinstance(node.get("config"), dict) else "?"
                facts["lambda_layers"].append(name)
            module = node.get("module")
            if isinstance(module, str) and isinstance(cls, str) and not module.startswith(("keras", "tensorflow",
                                                                                          "builtins", "tf_keras")):
                facts["custom_objects"].append(f"{module}.{cls}")
            elif isinstance(node.get("registered_name"), str) and ">" in node["registered_name"]:
                facts["custom_objects"].append(node["registered_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    facts["lambda_layers"] = sorted(set(facts["lambda_layers"]))
    facts["custom_objects"] = sorted(set(facts["custom_objects"]))
    return facts


def _skops_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    schema = _json_member(zf, "schema.json")
    details: dict = {"types": []}
    if not isinstance(schema, dict):
        details["schema_error"] = "schema.json is not readable JSON"
        return details
    for key in ("protocol", "_skops_version"):
        if key in schema:
            details[key.lstrip("_")] = schema[key]
    types, stack, seen = set(), [schema], 0
    while stack and seen < 500_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            mod, cls = node.get("__module__"), node.get("__class__")
            if isinstance(mod, str) and isinstance(cls, str):
                types.add((mod, cls))
            content = node.get("content")
            if isinstance(content, dict) and "_sklearn_version" in content and "sklearn_version" not in details:
                version = content["_sklearn_version"]
                if isinstance(version, dict) and isinstance(version.get("content"), str):
                    try:
                        details["sklearn_version"] = json.loads(version["content"])
                    except ValueError:
                        details["sklearn_version"] = version["content"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    details["types"] = sorted(f"{m}:{c}" for m, c in types)
    return details


def _npz_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    from .scan.rawzip import ZIP_ERRORS

    arrays, objects = [], []
    for name in names[:1000]:
        try:
            header = magic.npy_header(_read_member(zf, name, HEAD + 16))
        except ZIP_ERRORS:
            header = None
        arrays.append(name[:-4])
        if header is not None and magic.descr_has_object(header.get("descr")):
            objects.append(name[:-4])
    return {"arrays": arrays, "object_arrays": objects}


def _plain_zip_details(zf: zipfile.ZipFile, names: list[str]) -> dict:
    return {"member_names": names[:200]}


_ZIP_DETAILS = {"torch-zip": _torch_details, "torchscript": _torch_details, "torch-export": _export_details,
                "keras": _keras_details, "skops": _skops_details, "npz": _npz_details}


def _sevenzip(path: Path, head: bytes, size: int) -> Detection:
    """A 7-Zip archive: its member list when py7zr can read the header (the scan reads the members)."""
    from .scan.sevenzip import SevenZipError, names

    try:
        with path.open("rb") as fh:
            members = names(fh)
    except SevenZipError as exc:
        return Detection("7z", None, None, {"note": str(exc)})
    return Detection("7z", None, None, {"members": len(members), "member_names": members[:200]})


# ----------------------------------------------------------------------------------- hdf5 / numpy


def _hdf5(path: Path, head: bytes, size: int) -> Detection:
    """keras-h5 when the root attributes carry keras_version / model_config (h5py if importable, else a
    bounded byte search), plain hdf5 otherwise."""
    try:
        import h5py
    except ImportError:
        h5py = None
    if h5py is None:
        return _hdf5_by_bytes(path)
    try:
        with h5py.File(readable(path), "r") as f:
            attrs = {k: f.attrs[k] for k in list(f.attrs.keys())[:100]}
            roots = list(f.keys())[:100]
    except (OSError, ValueError) as exc:
        return Detection("hdf5", None, None, {"error": f"h5py cannot open it: {exc}", "corrupt": str(exc)})
    text = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in attrs.items()}
    if "keras_version" not in text and "model_config" not in text:
        return Detection("hdf5", None, None, {"groups": roots, "attributes": sorted(text)})
    details = {"groups": roots}
    for key in ("keras_version", "backend"):
        if isinstance(text.get(key), str):
            details[key] = text[key]
    if isinstance(text.get("model_config"), str):
        try:
            details.update(keras_config_facts(json.loads(text["model_config"])))
        except ValueError:
            details["model_config_error"] = "model_config is not JSON"
    return Detection("keras-h5", "keras", None, details)


def _hdf5_by_bytes(path: Path) -> Detection:
    """Without h5py: attribute names are stored inline, their string values in global-heap collections
    (``GCOL``), which are simple to walk. Reads at most the first 4 MB."""
    with path.open("rb") as fh:
        blob = fh.read(4 * PREFIX)
    if b"keras_version" not in blob and b"model_config" not in blob:
        return Detection("hdf5", None, None, {"inspected_with": "byte search"})
    details: dict = {"inspected_with": "byte search"}
    for value in _global_heap_objects(blob):
        # a version is short; the pattern backtracks quadratically over a long run of digits
        if "keras_version" not in details and len(value) <= 64 and re.fullmatch(rb"\d+\.\d+(\.\d+)?([a-z0-9.+-]*)",
                                                                              value):
            details["keras_version"] = value.decode("ascii")
        elif "model_class" not in details and value.startswith(b'{"class_name"'):
            try:
                details.update(keras_config_facts(json.loads(value)))
            except ValueError:
                pass
    return Detection("keras-h5", "keras", None, details)


def _global_heap_objects(blob: bytes):
    """Objects of every HDF5 global heap collection in ``blob``: "GCOL", version, 3 reserved bytes, 8-byte
    size, then objects (2-byte index, 2-byte refcount, 4 reserved, 8-byte size, data padded to 8)."""
    for m in re.finditer(b"GCOL", blob):
        start = m.start()
        end = min(len(blob), start + int.from_bytes(blob[start + 8:start + 16], "little"))
        pos = start + 16
        while pos + 16 <= end:
            index = int.from_bytes(blob[pos:pos + 2], "little")
            size = int.from_bytes(blob[pos + 8:pos + 16], "little")
            if index == 0 or pos + 16 + size > end:
                break
            yield blob[pos + 16:pos + 16 + size]
            pos += 16 + ((size + 7) // 8) * 8


def _npy(path: Path, head: bytes, size: int) -> Detection:
    header = magic.npy_header(head)
    if header is None:
        with path.open("rb") as fh:
            header = magic.npy_header(fh.read(PREFIX))
    if header is None:
        raise BadInputError("a .npy file with an unreadable header", path=path, hint="re-save it with numpy.save")
    details = {
        "npy_version": f"{head[6]}.{head[7]}",
        "descr": header.get("descr") if isinstance(header.get("descr"), str) else repr(header.get("descr")),
        "shape": list(header.get("shape", ())),
        "fortran_order": bool(header.get("fortran_order")),
        "object": magic.descr_has_object(header.get("descr")),
    }
    return Detection("npy", "numpy", None, details)


# ----------------------------------------------------------------------------------- safetensors


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, JSON_MAX) and head[8:9] == b"{"


def _safetensors(path: Path, head: bytes, size: int) -> Detection | None:
    n = int.from_bytes(head[:8], "little")
    with path.open("rb") as fh:
        fh.seek(8)
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    meta = header.pop("__metadata__", None)
    dtypes: dict = {}
    end = parameters = 0
    for name, entry in header.items():
        if not (isinstance(entry, dict) and "dtype" in entry and "data_offsets" in entry):
            return None
        dtypes[entry["dtype"]] = dtypes.get(entry["dtype"], 0) + 1
        shape = entry.get("shape")
        if isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape):
            parameters += math.prod(shape)
        offsets = entry["data_offsets"]
        if isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets):
            end = max(end, offsets[1])
    details = {"tensors": len(header), "parameters": parameters, "dtypes": dtypes, "data_bytes": end,
               "metadata": meta if isinstance(meta, dict) else {}}
    if 8 + n + end > size:
        details["corrupt"] = f"tensor data needs {8 + n + end} bytes, the file has {size}"
    fmt = details["metadata"].get("format") if isinstance(details["metadata"], dict) else None
    framework = {"pt": "torch", "tf": "tensorflow", "flax": "flax", "np": "numpy", "numpy": "numpy",
                 "mlx": "mlx"}.get(fmt)
    return Detection("safetensors", framework, None, details)


# ------------------------------------------------------------------------------------------ pickles


def _pickle(path: Path, head: bytes, size: int) -> Detection | None:
    """A pickle with a PROTO header, confirmed by the walk that is also its scan (one walk of the stream)."""
    from .scan import probe, scan_file

    if head.startswith(magic.TORCH_MAGIC_PICKLE):
        details: dict = {}
        second = head[len(magic.TORCH_MAGIC_PICKLE):]
        if second[:3] == b"\x80\x02M" and len(second) >= 6:
            details["torch_legacy_protocol"] = int.from_bytes(second[3:5], "little")
        return Detection("torch-legacy", "torch", None, details)
    details = {"protocol": head[1]}
    crlf = _crlf_pickle(head)
    if crlf:
        details["line_endings"] = "CRLF"
    scan = scan_file(path, Detection("pickle"))
    if not crlf and not _walks(scan, lambda: probe(head, complete=size <= len(head))):
        return None
    prefix = head
    if size > len(head):
        with path.open("rb") as fh:
            prefix = fh.read(PREFIX)
    return Detection("joblib" if b"NumpyArrayWrapper" in prefix else "pickle", None, None, details, scan=scan)


def _walks(scan: PickleScan, probe) -> bool:
    """Whether a file reads as a pickle: yes when its walk read a first stream to STOP; else the probe of its
    first bytes decides (a stream that breaks may still be a damaged pickle), as it did before the walk."""
    return bool(scan.streams) or probe()[0] != "invalid"


def _crlf_pickle(head: bytes) -> bool:
    """A pickle whose every LF byte became CRLF (a text-mode copy, git's autocrlf): it no longer parses,
    but it does once the conversion is undone. Detected so it is reported as a damaged pickle, not as
    unknown binary data."""
    from .scan import probe

    lf = head.count(b"\n")
    if not lf or head.count(b"\r\n") != lf:
        return False  # a LF without its CR: not converted (binary pickles hold LF bytes by chance, rarely all after CR)
    return probe(head.replace(b"\r\n", b"\n"), complete=False)[0] != "invalid"


def _is_compressed(head: bytes, size: int) -> bool:
    return magic.compression(head) is not None


def _compressed(path: Path, head: bytes, size: int) -> Detection | None:
    """A joblib file compressed with zlib/gzip/bz2/lzma/xz/lz4 (or joblib < 0.10's ZF): confirmed by the walk
    of what it decompresses to (which is also its scan), or, when that breaks, by finding a pickle in its first
    decompressed bytes."""
    from .scan import probe, scan_file
    from .scan.source import Halt, open_compressed

    compression = magic.compression(head)
    scan = scan_file(path, Detection("joblib", compression=compression))
    details: dict = {}
    if scan.streams:
        details["protocol"] = scan.metadata.get("protocol")  # PROTO's argument, when the stream starts with it
    else:
        try:
            with path.open("rb") as fh:
                inner = open_compressed(fh, compression).read(HEAD)
        except Halt as exc:  # lz4 without the lz4 module: the magic number is unambiguous
            return Detection("joblib", None, compression, {"note": str(exc)}, scan=scan)
        except Exception:  # any decompressor error: not this format
            return None
        if not inner or probe(inner, complete=len(inner) < HEAD)[0] == "invalid":
            return None
        details["protocol"] = inner[1] if inner[0] == 0x80 else None
    if compression == "zfile":
        details["legacy_format"] = "joblib < 0.10 (ZF)"
    return Detection("joblib", None, compression, details, scan=scan)


def _is_any(head: bytes, size: int) -> bool:
    return True


def _text_pickle(path: Path, head: bytes, size: int) -> Detection | None:
    """Pickles without a PROTO header (protocol 0/1, or any stream that starts with another opcode): whatever
    their first opcode, confirmed by walking opcodes (never executing them)."""
    from .scan import probe

    if not magic.may_start_pickle(head):
        return None
    with path.open("rb") as fh:
        prefix = fh.read(PREFIX)
    verdict, protocol = probe(prefix, complete=size <= PREFIX, strict=True)
    crlf = _crlf_pickle(prefix[:HEAD])
    if crlf and verdict == "invalid":
        verdict, protocol = probe(prefix.replace(b"\r\n", b"\n"), complete=size <= PREFIX, strict=True)
    if verdict == "invalid":
        return None
    details = {"protocol": protocol} if protocol is not None else {}
    if crlf:
        details["line_endings"] = "CRLF"
    return Detection("joblib" if b"NumpyArrayWrapper" in prefix else "pickle", None, None, details)


# --------------------------------------------------------------------------------------------- onnx


class _ProtoError(Exception):
    pass


class _Proto:
    """Just enough protobuf to walk fields of a file without loading it: varints and length-delimited
    fields, which are seeked over unless the caller descends into them."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size

    def _varint(self) -> int:
        shift = result = 0
        while True:
            b = self.fh.read(1)
            if not b:
                raise _ProtoError("ends inside a varint")
            result |= (b[0] & 0x7F) << shift
            if b[0] < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise _ProtoError("varint too long")

    def fields(self, span: tuple[int, int] | None = None):
        """Yield (field number, wire type, value): ints for varint/fixed, (start, end) for length-delimited."""
        start, end = span if span else (0, self.size)
        self.fh.seek(start)
        pos = start
        while pos < end:
            tag = self._varint()
            num, wire = tag >> 3, tag & 7
            if num == 0:
                raise _ProtoError("field number 0")
            if wire == 0:
                value = self._varint()
            elif wire == 1:
                value = int.from_bytes(self._exact(8), "little")
            elif wire == 5:
                value = int.from_bytes(self._exact(4), "little")
            elif wire == 2:
                length = self._varint()
                here = self.fh.tell()
                if here + length > end:
                    raise _ProtoError(f"field {num} runs past its end")
                value = (here, here + length)
                self.fh.seek(here + length)
            else:
                raise _ProtoError(f"wire type {wire}")
            pos = self.fh.tell()
            yield num, wire, value
            self.fh.seek(pos)
        if pos != end:
            raise _ProtoError("fields overrun their message")

    def _exact(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise _ProtoError("ends inside a field")
        return data

    def text(self, span: tuple[int, int], limit: int = 4096) -> str:
        self.fh.seek(span[0])
        return self.fh.read(min(span[1] - span[0], limit)).decode("utf-8", "replace")


# ModelProto field number -> (name, wire type)
_ONNX_FIELDS = {1: ("ir_version", 0), 2: ("producer_name", 2), 3: ("producer_version", 2), 4: ("domain", 2),
                5: ("model_version", 0), 6: ("doc_string", 2), 7: ("graph", 2), 8: ("opset_import", 2),
                14: ("metadata_props", 2), 20: ("training_info", 2), 25: ("functions", 2),
                26: ("configuration", 2)}


def _is_onnx(head: bytes, size: int) -> bool:
    if not head:
        return False
    num, wire = head[0] >> 3, head[0] & 7
    return num in _ONNX_FIELDS and _ONNX_FIELDS[num][1] == wire


def _onnx(path: Path, head: bytes, size: int) -> Detection | None:
    """ModelProto, confirmed by walking every top-level field tag to the end of the file."""
    details: dict = {"opsets": {}}
    try:
        with path.open("rb") as fh:
            reader = _Proto(fh, size)
            for num, wire, value in reader.fields():
                spec = _ONNX_FIELDS.get(num)
                if spec is None or spec[1] != wire:
                    return None
                name = spec[0]
                if name in ("ir_version", "model_version"):
                    details[name] = value
                elif name in ("producer_name", "producer_version", "domain"):
                    details[name] = reader.text(value)
                elif name == "opset_import":
                    domain, version = "", None
                    for num2, wire2, value2 in reader.fields(value):
                        if num2 == 1 and wire2 == 2:
                            domain = reader.text(value2)
                        elif num2 == 2 and wire2 == 0:
                            version = value2
                    details["opsets"][domain or "ai.onnx"] = version
                elif name == "graph":
                    details["graph_bytes"] = value[1] - value[0]
    except (_ProtoError, OSError):
        return None
    if "graph_bytes" not in details or "ir_version" not in details:
        return None
    if size <= ONNX_LOAD_MAX:
        details.update(_onnx_graph_details(path))
    return Detection("onnx", "onnx", None, details)


# ONNX messages (onnx/onnx.proto) by the fields that hold other messages: every one is walked, as onnx.load
# parses them, without importing onnx (a second or more on a cold disk)
_ONNX_MESSAGES = {
    "graph": {1: "node", 5: "tensor", 11: "value", 12: "value", 13: "value", 14: "annotation", 15: "sparse",
              16: "entry"},
    "node": {5: "attribute", 9: "entry", 10: "device"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 14: "type", 15: "type", 22: "sparse",
                  23: "sparse"},
    "tensor": {3: "segment", 13: "entry", 16: "entry"},
    "sparse": {1: "tensor", 2: "tensor"},
    "value": {2: "type", 4: "entry"},
    "type": {1: "type.tensor", 4: "type.one", 5: "type.map", 7: "type.opaque", 8: "type.tensor", 9: "type.one"},
    "type.tensor": {2: "shape"},
    "type.one": {1: "type"},
    "type.map": {2: "type"},
    "shape": {1: "dimension"},
    "annotation": {2: "entry"},
    "device": {2: "sharding"},
    "sharding": {3: "intlist", 4: "sharded"},
    "sharded": {2: "simple"},
    "function": {7: "node", 9: "opset", 11: "attribute", 12: "value", 14: "entry"},
    "training": {1: "graph", 2: "graph", 3: "entry", 4: "entry"},
    "model": {7: "graph", 8: "opset", 14: "entry", 20: "training", 25: "function", 26: "configuration"},
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _onnx_graph_details(path: Path) -> dict:
    """Graph facts, from a walk of every message in the file (external data not read): the main graph's inputs,
    outputs and node count, and where tensors anywhere in it keep their data outside the file."""
    from .protowire import WireError, fields, text, walk

    with path.open("rb") as fh:
        data = fh.read()
    external: dict = {}  # tensor span -> [stored outside?, location]
    top: dict = {"inputs": [], "outputs": [], "nodes": 0}

    def visit(kind, here, number, wire, value):
        if number not in (13, 14):
            return
        entry = external.setdefault(here, [False, None])
        if number == 14 and wire == 0:
            entry[0] = value == _EXTERNAL
        elif number == 13 and wire == 2:
            pair = {n: text(data, v) for n, w, v in fields(data, *value) if w == 2 and n in (1, 2)}
            if pair.get(1) == "location" and 2 in pair:
                entry[1] = pair[2]

    try:
        walk(data, (0, len(data)), "model", _ONNX_MESSAGES, visit, watch=("tensor",))
        graph = next((v for n, w, v in fields(data, 0, len(data)) if n == 7 and w == 2), None)
        for number, wire, value in fields(data, *graph) if graph else ():
            if number in (11, 12) and wire == 2:
                name = next((text(data, v) for n, w, v in fields(data, *value) if n == 1 and w == 2), "")
                top["inputs" if number == 11 else "outputs"].append(name)
            elif number == 1 and wire == 2:
                top["nodes"] += 1
    except WireError as exc:
        return {"corrupt": f"the protobuf does not parse: {exc}"}
    top["external_data"] = sorted({where for outside, where in external.values() if outside and where})
    return top


# ------------------------------------------------------------------------------------- description


# Order matters: specific signatures first; pickles without a header are walked last.
_SNIFFERS = (
    (lambda head, size: magic.is_zip(head), _zip),
    (lambda head, size: head.startswith(magic.SEVENZIP_MAGIC), _sevenzip),
    (lambda head, size: head.startswith(magic.HDF5_SIGNATURE), _hdf5),
    (lambda head, size: head.startswith(magic.NPY_MAGIC), _npy),
    (_is_safetensors, _safetensors),
    (lambda head, size: magic.is_proto_pickle(head), _pickle),
    (_is_compressed, _compressed),
    (_is_onnx, _onnx),
    (_is_any, _text_pickle),
)
