"""Static safety scan of Keras files and TensorFlow SavedModels: what loading them would run, read from
their bytes without importing TensorFlow or Keras.

- Keras ``.keras`` (zip: ``config.json``, ``metadata.json``) and ``.h5`` (root attributes ``model_config``,
  ``keras_version``, ``backend``): Lambda layers (marshalled Python bytecode, run by Keras when loaded with
  ``safe_mode=False``), custom objects (classes whose code is not in the file), references to Keras'
  non-modeling APIs (file download/save helpers, a known way around ``safe_mode``).
- SavedModel (``saved_model.pb``): graph ops that touch the file system (``WriteFile``, ``ReadFile``,
  ``MatchingFiles``, summary writers, dataset readers/writers, Python callbacks), walked in the protobuf
  wire format: every node of the graph and of every function in its library. The checkpoint machinery
  every SavedModel carries (``SaveV2``/``RestoreV2`` inside ``__inference__traced_save/restore``) is not
  reported. Also read: the signatures with their input and output specs, tags, TensorFlow version.

Both functions return ``(verdict, findings, facts)``; verdict is ``safe`` | ``suspicious`` | ``unsafe`` |
``unknown`` (unreadable). Nothing here runs code from the file.
"""

from __future__ import annotations

import json
import mmap
import zipfile
from pathlib import Path

from .artifact import Finding, worst

CONFIG_MAX = 64 << 20  # largest config.json / metadata.json read
MAX_NODES = 2_000_000  # config nodes walked before giving up (fail closed: "unknown")
MAX_FINDINGS = 200

# Packages whose classes Keras itself resolves (the code is installed, not in the file).
KNOWN_PACKAGES = ("keras", "keras_hub", "keras_nlp", "keras_cv", "tf_keras", "tensorflow", "builtins")
# Keras' own functions that are not model parts: loading a config that names them would download, read or
# write files, or turn safe mode off (keras.src.saving.serialization_lib.NON_MODELING_APIS, by last name).
NON_MODELING = frozenset({
    "clear_session", "enable_unsafe_deserialization", "load_model", "model_from_json", "save_model",
    "image_dataset_from_directory", "text_dataset_from_directory", "audio_dataset_from_directory",
    "timeseries_dataset_from_array", "load_img", "save_img", "deserialize_keras_object", "load_weights",
    "save_weights", "register_keras_serializable", "serialize_keras_object", "get_file", "array_to_img",
    "img_to_array", "model_from_config", "model_from_yaml",
})
# tf-keras layers wrapping a TensorFlow function named in the config (Keras 3 cannot load them)
TF_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
# Keras' markers for serialized Python values, not classes.
SPECIAL = frozenset({"__keras_tensor__", "__tuple__", "__numpy__", "__bytes__", "__typespec__", "__tensor__",
                     "__ellipsis__", "__slice__"})

# SavedModel ops that touch the file system or call back into Python, by kind.
_OPS_BY_KIND = {
    "write": ("WriteFile", "SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints", "DeleteFile",
              "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
              "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
              "WriteRawProtoSummary", "ImportEvent", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
              "SaveDataset", "SaveDatasetV2", "SnapshotDataset", "SnapshotDatasetV2", "DebugIdentityV2",
              "DebugIdentityV3"),
    "python": ("PyFunc", "PyFuncStateless", "EagerPyFunc"),
    "read": ("ReadFile", "MatchingFiles", "MatchingFilesDataset", "RestoreV2", "Restore", "RestoreSlice",
             "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
             "FixedLengthRecordDatasetV2", "TFRecordReaderV2", "TextLineReaderV2", "WholeFileReaderV2",
             "FixedLengthRecordReaderV2", "LoadDataset", "LoadAndRemapMatrix", "ImmutableConst", "CSVDataset",
             "CSVDatasetV2", "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset", "LMDBDataset",
             "ExperimentalLMDBDataset"),
    "asset": ("InitializeTableFromTextFile", "InitializeTableFromTextFileV2"),  # vocabularies in assets/
}
# kind -> (severity, what it means)
_KINDS = {"write": ("unsafe", "writes files"), "python": ("unsafe", "calls Python code of the process that saved it"),
          "read": ("suspicious", "reads files"), "asset": ("info", "reads a vocabulary file (an asset)")}
FILE_OPS = {op: kind for kind, ops in _OPS_BY_KIND.items() for op in ops}
# The save/restore functions every TF2 SavedModel carries, and the ops they are expected to hold.
CHECKPOINT_FUNCTIONS = ("__inference__traced_save", "__inference__traced_restore")
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})


# ---------------------------------------------------------------------------------------------- Keras


def scan_keras(path, fmt: str) -> tuple[str, list[Finding], dict]:
    """Scan a Keras v3 zip (``fmt="keras"``) or a legacy HDF5 file (``"keras-h5"``/``"hdf5"``)."""
    path = Path(path)
    facts: dict = {"format": fmt}
    config, error = (_zip_config if fmt == "keras" else _h5_config)(path, facts)
    if error:
        facts["config_error"] = error
        return "unknown", [Finding(f"model config unreadable: {error}", "unknown", "config")], facts
    return scan_keras_config(config, facts)


def scan_keras_config(config, facts: dict | None = None) -> tuple[str, list[Finding], dict]:
    """Scan an already-parsed Keras model config (the dict ``model.get_config()`` serializes)."""
    facts = dict(facts or {})
    facts.update(_config_facts(config))
    walk = _ConfigWalk()
    complete = walk.run(config)
    facts["lambda_layers"] = sorted(set(walk.lambdas))
    facts["custom_objects"] = sorted(set(walk.customs))
    facts["tf_op_layers"] = sorted(set(walk.tf_ops))
    findings = sorted(walk.findings, key=_severity_first)[:MAX_FINDINGS]
    if not complete:
        findings.append(Finding(f"config has more than {MAX_NODES} entries; scan stopped", "unknown", "config"))
    verdict = worst(f.severity for f in findings if f.severity != "info")
    return verdict, findings, facts


def _severity_first(finding: Finding):
    return ({"unsafe": 0, "suspicious": 1, "unknown": 2}.get(finding.severity, 3), finding.where, finding.what)


def _zip_config(path: Path, facts: dict):
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "metadata.json" in names:
                meta = _json(zf.open("metadata.json").read(CONFIG_MAX))
                if isinstance(meta, dict):
                    facts.update({k: meta[k] for k in ("keras_version", "date_saved") if isinstance(meta.get(k), str)})
            if "config.json" not in names:
                return None, "config.json is missing from the archive"
            raw = zf.open("config.json").read(CONFIG_MAX + 1)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        return None, f"damaged zip archive ({exc})"
    if len(raw) > CONFIG_MAX:
        return None, f"config.json is larger than {CONFIG_MAX >> 20} MiB"
    config = _json(raw)
    if not isinstance(config, dict):
        return None, "config.json is not a JSON object" if config is not None else "config.json is not valid JSON"
    return config, None


def _h5_config(path: Path, facts: dict):
    try:
        import h5py
    except ImportError:
        return None, "h5py is not installed (pip install h5py)"
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in ("model_config", "keras_version", "backend") if k in f.attrs}
            facts["weights"] = "model_weights" in f or "layer_names" in f.attrs
    except (OSError, ValueError) as exc:
        return None, f"h5py cannot open it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    text = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in attrs.items()}
    facts.update({k: text[k] for k in ("keras_version", "backend") if isinstance(text.get(k), str)})
    if "model_config" not in text:
        return None, "no model_config attribute: not a Keras model file (a weights-only file?)"
    config = _json(text["model_config"]) if isinstance(text["model_config"], str) else None
    if not isinstance(config, dict):
        return None, "model_config is not a JSON object"
    return config, None


def _json(raw):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _config_facts(config) -> dict:
    """Model class and the input/output layer names the functional config declares."""
    facts: dict = {"model_class": config.get("class_name") if isinstance(config, dict) else None}
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, dict):
        for key, fact in (("input_layers", "inputs"), ("output_layers", "outputs")):
            names = _layer_refs(inner.get(key))
            if names:
                facts[fact] = names
        layers = inner.get("layers")
        if isinstance(layers, list):
            facts["layers"] = len(layers)
    return facts


def _layer_refs(value) -> list[str]:
    """``[["a", 0, 0], ["b", 0, 0]]`` or ``["a", 0, 0]`` -> ``["a", "b"]`` (Keras' node references)."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
        return [value[0]]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _layer_refs(v)]
    if isinstance(value, list):
        return [n for v in value for n in _layer_refs(v)]
    return []


class _ConfigWalk:
    """Walks a Keras config iteratively (no recursion limit), remembering the enclosing layer for messages."""

    def __init__(self):
        self.findings: list[Finding] = []
        self.lambdas: list[str] = []
        self.customs: list[str] = []
        self.tf_ops: list[str] = []  # tf-keras TFOpLambda layers: TensorFlow functions named in the config

    def run(self, config) -> bool:
        stack = [(config, "config", False)]  # (node, where, inside a Lambda layer already reported)
        seen = 0
        while stack:
            node, where, in_lambda = stack.pop()
            seen += 1
            if seen > MAX_NODES:
                return False
            if isinstance(node, list):
                stack.extend((v, where, in_lambda) for v in node if isinstance(v, (dict, list)))
                continue
            if not isinstance(node, dict):
                continue
            in_lambda = self._visit(node, where, in_lambda)
            for key, value in node.items():
                if key == "layers" and isinstance(value, list):
                    stack.extend((v, _layer_label(v), in_lambda) for v in value if isinstance(v, dict))
                elif isinstance(value, (dict, list)):
                    stack.append((value, where, in_lambda))
        return True

    def _visit(self, node: dict, where: str, in_lambda: bool) -> bool:
        """Record what ``node`` is; returns whether its children are inside a reported Lambda layer."""
        cls, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
        if not isinstance(cls, str):
            return in_lambda
        if cls == "Lambda":
            inner = node.get("config") if isinstance(node.get("config"), dict) else {}
            name = str(inner.get("name", "?"))
            self.lambdas.append(name)
            self.findings.append(Finding(f"Lambda layer {name!r}: {_lambda_body(inner)}", "unsafe", where))
            return True
        if cls in TF_OP_LAYERS:
            inner = node.get("config") if isinstance(node.get("config"), dict) else {}
            self.tf_ops.append(str(inner.get("name", "?")))
            self.findings.append(Finding(f"{cls} layer calls TensorFlow function tf.{inner.get('function', '?')} "
                                         "(tf-keras only)", "info", where))
            return in_lambda
        if cls == "__lambda__":
            if not in_lambda:
                self.findings.append(Finding("Python bytecode (a lambda) in the config", "unsafe", where))
            return in_lambda
        if cls in SPECIAL or cls.startswith("__"):
            return in_lambda
        name = cls.rsplit(">", 1)[-1]
        if isinstance(module, str) and module.split(".")[0] in ("keras", "tf_keras") and name in NON_MODELING:
            self.findings.append(Finding(f"references {module}.{name}, a Keras function that is not a model part "
                                         "(file access or safe-mode switch)", "unsafe", where))
        elif _is_custom(cls, module, registered):
            label = registered if isinstance(registered, str) and registered else \
                f"{module}.{cls}" if isinstance(module, str) and module else cls
            self.customs.append(label)
            self.findings.append(Finding(f"custom object {label}: its code is not in the file", "suspicious", where))
        return in_lambda


def _layer_label(layer: dict) -> str:
    inner = layer.get("config")
    name = inner.get("name") if isinstance(inner, dict) else layer.get("name")
    return f"layer {name!r}" if isinstance(name, str) else "config"


def _lambda_body(inner: dict) -> str:
    fn = inner.get("function")
    bytecode_v3 = isinstance(fn, dict) and fn.get("class_name") == "__lambda__"
    bytecode_v2 = isinstance(fn, (list, str)) and inner.get("function_type", "lambda") == "lambda"
    if bytecode_v3 or bytecode_v2:
        return "Python bytecode that Keras runs when loading with safe_mode=False"
    if isinstance(fn, dict):
        return f"calls {fn.get('module') or ''}{'.' if fn.get('module') else ''}{fn.get('config', fn.get('class_name'))}"
    return "calls Python code"


def _is_custom(cls: str, module, registered) -> bool:
    if isinstance(registered, str) and ">" in registered:
        return not registered.startswith(KNOWN_PACKAGES)
    if ">" in cls:  # legacy h5 configs spell registered custom objects "package>Name"
        return True
    if isinstance(module, str) and module:
        return module.split(".")[0] not in KNOWN_PACKAGES
    return False


# ----------------------------------------------------------------------------------------- SavedModel


def scan_savedmodel(path) -> tuple[str, list[Finding], dict]:
    """Scan a SavedModel directory's ``saved_model.pb``: file-system ops, signatures, versions."""
    path = Path(path)
    pb = path / "saved_model.pb"
    facts: dict = {"variables": (path / "variables" / "variables.index").is_file()}
    if not pb.is_file():
        facts["error"] = "saved_model.pb is missing"
        return "unknown", [Finding("saved_model.pb is missing", "unknown", str(path))], facts
    try:
        with open(pb, "rb") as fh, _mapped(fh) as data:
            meta = _read_saved_model(_Wire(data))
    except (_WireError, OSError, ValueError) as exc:
        facts["error"] = f"saved_model.pb is not a readable SavedModel protobuf ({exc})"
        return "unknown", [Finding(facts["error"], "unknown", "saved_model.pb")], facts
    facts.update(meta.facts())
    findings = meta.findings()
    verdict = worst(f.severity for f in findings if f.severity != "info")
    return verdict, findings, facts


class _mapped:
    """A read-only memoryview of a file through mmap (an empty file maps to an empty view)."""

    def __init__(self, fh):
        self.fh, self.map, self.view = fh, None, None

    def __enter__(self):
        if self.fh.seek(0, 2) == 0:
            return memoryview(b"")
        self.map = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.view = memoryview(self.map)
        return self.view

    def __exit__(self, *exc):
        if self.view is not None:
            self.view.release()
        if self.map is not None:
            self.map.close()


class _WireError(Exception):
    """saved_model.pb does not parse as a protobuf message."""


class _Wire:
    """Protobuf wire format over a buffer: ``fields(start, end)`` yields ``(number, wire_type, value)``;
    for length-delimited fields the value is the ``(start, end)`` of the payload, never a copy."""

    def __init__(self, data):
        self.data = data

    def varint(self, pos: int) -> tuple[int, int]:
        result = shift = 0
        data = self.data
        while True:
            if pos >= len(data) or shift > 63:
                raise _WireError("truncated varint")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7

    def fields(self, start: int = 0, end: int | None = None):
        end = len(self.data) if end is None else end
        pos = start
        while pos < end:
            key, pos = self.varint(pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = self.varint(pos)
            elif wire == 1:
                value, pos = None, pos + 8
            elif wire == 2:
                length, pos = self.varint(pos)
                value, pos = (pos, pos + length), pos + length
            elif wire == 5:
                value, pos = None, pos + 4
            else:
                raise _WireError(f"unsupported wire type {wire} at byte {pos}")
            if pos > end or number == 0:
                raise _WireError(f"field runs past its message at byte {pos}")
            yield number, wire, value

    def text(self, span) -> str:
        return bytes(self.data[span[0]:span[1]]).decode("utf-8", "replace")

    def first(self, span, number: int):
        for num, wire, value in self.fields(*span):
            if num == number:
                return value
        return None


# tensorflow/core/framework/types.proto DataType -> modelport dtype names (as ONNX spells them)
TF_DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
             8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128", 19: "float16",
             20: "resource", 21: "variant", 22: "uint32", 23: "uint64"}


class _SavedModelFacts:
    """What the walk of saved_model.pb found."""

    def __init__(self):
        self.tags: list[str] = []
        self.versions: dict = {}
        self.signatures: dict[str, dict] = {}
        self.ops: dict[str, set[str]] = {}  # op type -> places (function names, or "graph")
        self.functions = 0
        self.nodes = 0

    def facts(self) -> dict:
        out = {"tags": self.tags, "signatures": self.signatures, "functions": self.functions, "nodes": self.nodes,
               "op_types": len(self.ops)}
        out.update(self.versions)
        return out

    def findings(self) -> list[Finding]:
        found = []
        for op, places in sorted(self.ops.items()):
            kind = FILE_OPS.get(op)
            if kind is None:
                continue
            severity, what = _KINDS[kind]
            places = {p for p in places if not (op in CHECKPOINT_OPS and p.startswith(CHECKPOINT_FUNCTIONS))}
            if not places:
                continue
            where = ", ".join(sorted(places)[:3]) + (f" (+{len(places) - 3} more)" if len(places) > 3 else "")
            found.append(Finding(f"graph op {op} {what}", severity, where))
        return sorted(found, key=_severity_first)[:MAX_FINDINGS]


def _read_saved_model(w: _Wire) -> _SavedModelFacts:
    out = _SavedModelFacts()
    for num, wire, value in w.fields():
        if num == 2 and wire == 2:  # SavedModel.meta_graphs
            _read_meta_graph(w, value, out)
        elif num == 1 and wire == 0:
            out.versions["saved_model_schema_version"] = value
    return out


def _read_meta_graph(w: _Wire, span, out: _SavedModelFacts):
    for num, wire, value in w.fields(*span):
        if wire != 2:
            continue
        if num == 1:  # meta_info_def
            for n2, w2, v2 in w.fields(*value):
                if w2 != 2:
                    continue
                if n2 == 4:
                    out.tags.append(w.text(v2))
                elif n2 == 5:
                    out.versions.setdefault("tensorflow_version", w.text(v2))
                elif n2 == 6:
                    out.versions.setdefault("tensorflow_git_version", w.text(v2))
        elif num == 2:  # graph_def
            _read_graph(w, value, out)
        elif num == 5:  # signature_def map entry
            key, sig = w.first(value, 1), w.first(value, 2)
            name = w.text(key) if key else ""
            if sig is not None and not name.startswith("__"):
                out.signatures[name] = _read_signature(w, sig)


def _read_graph(w: _Wire, span, out: _SavedModelFacts):
    for num, wire, value in w.fields(*span):
        if wire != 2:
            continue
        if num == 1:  # GraphDef.node
            _read_node(w, value, out, "graph")
        elif num == 2:  # GraphDef.library
            for n2, w2, v2 in w.fields(*value):
                if n2 == 1 and w2 == 2:  # FunctionDefLibrary.function
                    _read_function(w, v2, out)


def _read_function(w: _Wire, span, out: _SavedModelFacts):
    out.functions += 1
    name, nodes = "function", []
    for num, wire, value in w.fields(*span):
        if num == 1 and wire == 2:  # FunctionDef.signature (OpDef): its name
            key = w.first(value, 1)
            name = w.text(key) if key else name
        elif num == 3 and wire == 2:  # FunctionDef.node_def
            nodes.append(value)
    for node in nodes:
        _read_node(w, node, out, name)


def _read_node(w: _Wire, span, out: _SavedModelFacts, where: str):
    out.nodes += 1
    op = w.first(span, 2)  # NodeDef.op
    if op is not None:
        out.ops.setdefault(w.text(op), set()).add(where)


def _read_signature(w: _Wire, span) -> dict:
    sig: dict = {"inputs": {}, "outputs": {}}
    for num, wire, value in w.fields(*span):
        if wire != 2:
            continue
        if num in (1, 2):  # inputs / outputs map entries
            key, info = w.first(value, 1), w.first(value, 2)
            if key is not None and info is not None:
                sig["inputs" if num == 1 else "outputs"][w.text(key)] = _read_tensor_info(w, info)
        elif num == 3:
            sig["method"] = w.text(value)
    return sig


def _read_tensor_info(w: _Wire, span) -> dict:
    info: dict = {"dtype": None, "shape": None}
    for num, wire, value in w.fields(*span):
        if num == 2 and wire == 0:
            info["dtype"] = TF_DTYPES.get(value, f"tf-dtype-{value}")
        elif num == 3 and wire == 2:
            info["shape"] = _read_shape(w, value)
        elif num in (4, 5) and wire == 2:
            info["composite"] = True
    return info


def _read_shape(w: _Wire, span):
    dims = []
    for num, wire, value in w.fields(*span):
        if num == 3 and wire == 0 and value:
            return None  # unknown rank
        if num == 2 and wire == 2:
            size = w.first(value, 1) or 0
            size = size - (1 << 64) if size >= 1 << 63 else size
            dims.append(None if size < 0 else size)
    return dims
