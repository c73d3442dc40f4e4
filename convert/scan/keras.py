"""Static safety scan of Keras files and TensorFlow SavedModels: what loading them would run, read from
their bytes without importing TensorFlow or Keras.

- Keras ``.keras`` (zip: ``config.json``, ``metadata.json``) and ``.h5`` (root attributes ``model_config``,
  ``keras_version``, ``backend``): Lambda layers (marshalled Python bytecode, run by Keras when loaded with
  ``safe_mode=False``), custom objects (classes whose code is not in the file), references to Keras'
  non-modeling APIs (file download/save helpers, a known way around ``safe_mode``).
- SavedModel folders are scanned by ``convert.savedmodel_scan`` (``scan_savedmodel`` is re-exported here).

``scan_keras`` returns ``(verdict, findings, facts)``; verdict is ``safe`` | ``suspicious`` | ``unsafe`` |
``unknown`` (unreadable). Nothing here runs code from the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..findings import Finding, worst
from ..storage import as_path, readable

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

# ---------------------------------------------------------------------------------------------- Keras


def scan_keras(path, fmt: str) -> tuple[str, list[Finding], dict]:
    """Scan a Keras v3 zip (``fmt="keras"``) or a legacy HDF5 file (``"keras-h5"``/``"hdf5"``)."""
    path = as_path(path)
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
        with zipfile.ZipFile(readable(path)) as zf:
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
        with h5py.File(readable(path), "r") as f:
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
