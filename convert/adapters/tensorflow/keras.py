"""Keras ``.keras`` / ``.h5`` files: the safety gate, loading with ``safe_mode``, the signature read from the
model's own inputs and outputs, and a traced serving function with an explicit input signature.
"""

from __future__ import annotations

import re

from ...artifact import Artifact, Finding
from ...errors import BadInputError, UnsafeArtifactError, UnsupportedModelError
from ... import formats
from ...scan import scan_keras
from ...spec import Domain, OutputSpec, TensorSpec
from . import env
from .to_onnx import Serving
from .graph import apply_input_hints, dtype_name, symbolic_shape

MAX_CATEGORIES = 100_000  # Embedding/lookup vocabularies up to this size become input domains
TRUST_HINT = "inspect it with `modelport inspect`; pass --trust only if you trust whoever wrote it"
# words in a Keras load error that mean the bytes are damaged, not that the model is unusual
UNREADABLE = ("Unable to open", "Unable to synchronously open", "truncated", "File is not a zip", "bad magic",
              "No such file", "not a valid", "unexpected end")
# Keras load errors that mean "a class this config names is unknown here"
UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|class)[^']*'([^']+)'"
                           r"|Could not deserialize '([^']+)'")


def scan_gate(artifact: Artifact, fmt: str, trust: bool) -> tuple[list[Finding], dict]:
    """The static scan, enforced: a broken config is bad input (exit 2); Lambda layers, custom objects or
    non-modeling Keras APIs are refused without ``trust`` (exit 1)."""
    verdict, findings, facts = scan_keras(artifact.path, fmt)
    error = facts.get("config_error")
    if error:
        hint = "save the whole model with model.save('model.keras'), not save_weights" if "model_config" in error \
            else "re-save the model; nothing was written"
        raise BadInputError(f"not a loadable Keras model: {error}", path=artifact.path, hint=hint)
    formats.gate(artifact, trust)  # Lambda layers, custom objects, non-modeling APIs: refused without trust
    if facts.get("tf_op_layers"):
        raise UnsupportedModelError(f"tf-keras TFOpLambda layers ({', '.join(facts['tf_op_layers'][:3])}), which Keras 3 "
                                    "cannot load", path=artifact.path,
                                    hint="load it with tf-keras and export a SavedModel (model.export(path))")
    return findings, facts


def load_model(artifact: Artifact, fmt: str, trust: bool, facts: dict, notes: list[str]):
    keras, note = env.keras()
    if note:
        notes.append(note)
    saved = facts.get("keras_version")
    with env.quiet():
        try:
            model = keras.saving.load_model(str(artifact.path), compile=False, safe_mode=not trust)
        except Exception as exc:
            raise _load_error(exc, artifact, trust, saved, keras.__version__) from None
    if trust and facts.get("lambda_layers"):
        notes.append("loaded with safe_mode=False (--trust): the Lambda layers' Python code ran")
    if saved and saved != keras.__version__:
        notes.append(f"saved with Keras {saved}, loaded with Keras {keras.__version__}")
    backend = facts.get("backend")
    if backend and backend != "tensorflow":
        notes.append(f"saved with the {backend} backend, run on TensorFlow")
    return model


def _load_error(exc: Exception, artifact: Artifact, trust: bool, saved: str | None, installed: str):
    """Why Keras could not load the file, as the right error: an unknown class (unsafe without --trust,
    unsupported with it), an unreadable file (bad input), or a config Keras cannot rebuild (unsupported)."""
    reason = _keras_reason(exc)
    unknown = UNKNOWN_CLASS.search(str(exc))
    if unknown:
        name = next(g for g in unknown.groups() if g)
        if not trust:
            return UnsafeArtifactError(f"unknown custom object {name}: its code is not in the file",
                                       path=artifact.path, findings=(Finding(f"custom object {name}", "suspicious"),),
                                       hint=TRUST_HINT)
        return UnsupportedModelError(f"Keras does not know the custom object {name}", path=artifact.path,
                                     hint="import the module that registers it, then convert through the Python "
                                          "API (convert.load(path, trust=True))")
    if "lambda" in reason.lower() and "safe_mode" in reason:
        return UnsafeArtifactError(f"Keras refused Python bytecode in it: {reason}", path=artifact.path,
                                   hint=TRUST_HINT)
    if saved and saved.startswith("2.") and artifact.format == "keras":
        return BadInputError(f"a Keras {saved} (tf-keras) .keras file, which Keras {installed} cannot read: {reason}",
                             path=artifact.path, hint="re-save it with tf-keras as .h5 or as a SavedModel")
    if isinstance(exc, (OSError, EOFError, KeyError)) or any(w in reason for w in UNREADABLE):
        return BadInputError(f"Keras {installed} cannot read it: {reason}", path=artifact.path,
                             hint="is the file complete? nothing was written")
    return UnsupportedModelError(f"Keras {installed} cannot rebuild the model from this file: {reason}",
                                 path=artifact.path, hint="re-save it as .keras or export a SavedModel "
                                                          "(model.export); nothing was written")


def _keras_reason(exc: Exception) -> str:
    """Keras wraps the real error in a long message ending "Exception encountered: <the cause>"."""
    text = str(exc)
    marker = "Exception encountered:"
    if marker in text:
        cause = text.rsplit(marker, 1)[1].strip().splitlines()
        if cause:
            return f"{type(exc).__name__}: {cause[0][:200]}"
    return f"{type(exc).__name__}: {env.first_line(exc)}"


# ---------------------------------------------------------------------------------------------
# signature and serving function


def _input_plan(model):
    """(names, Keras tensors) of the model's inputs: a dict-structured model's own keys (what it is called
    with), else the input tensors' names (a Functional model also accepts a dict keyed by them)."""
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict) and all(hasattr(t, "shape") for t in struct.values()):
        return list(struct), list(struct.values())
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):
        tensors = []
    return [t.name for t in tensors], tensors


def input_specs(model, artifact: Artifact, hints) -> tuple[list[TensorSpec], list[str]]:
    """The signature's inputs (named after the Keras inputs) and the TensorFlow-safe name of each."""
    names, tensors = _input_plan(model)
    if not tensors and not hints.inputs:
        raise BadInputError(f"the {type(model).__name__} model does not say what inputs it takes",
                            path=artifact.path, hint="describe them with --input, e.g. --input x=batchx20")
    domains = _input_domains(model, tensors)
    specs = []
    for name, tensor in zip(names, tensors):
        if getattr(tensor, "sparse", False) or getattr(tensor, "ragged", False):
            raise UnsupportedModelError(f"input {name} is sparse or ragged; tf2onnx converts dense tensors",
                                        path=artifact.path)
        dtype = dtype_name(str(getattr(tensor.dtype, "name", tensor.dtype)), name, artifact.path)
        specs.append(TensorSpec(name, dtype, symbolic_shape(name, tensor.shape), domains.get(id(tensor), ())))
    specs = apply_input_hints(specs, hints.inputs, artifact.path)
    return specs, _tf_names([s.name for s in specs])


def _tf_names(names: list[str]) -> list[str]:
    """TensorFlow op names allow ``[A-Za-z0-9.][A-Za-z0-9_./-]*``; the ONNX graph is renamed back."""
    out, used = [], set()
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9_./-]", "_", name) or "input"
        safe = safe if re.match(r"[A-Za-z0-9.]", safe) else "x" + safe
        while safe in used:
            safe += "_"
        used.add(safe)
        out.append(safe)
    return out


def _input_domains(model, tensors) -> dict[int, tuple[Domain, ...]]:
    """Inputs that feed an Embedding or a lookup layer take indices/categories, not arbitrary values."""
    by_id = {id(t): t for t in tensors}
    found: dict[int, tuple[Domain, ...]] = {}
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind not in ("Embedding", "StringLookup", "IntegerLookup"):
            continue
        try:
            source = layer.input
        except (AttributeError, ValueError, RuntimeError):
            continue
        if id(source) not in by_id:
            continue
        if kind == "Embedding" and layer.input_dim <= MAX_CATEGORIES:
            found[id(source)] = (Domain(categories=tuple(range(int(layer.input_dim))), integer=True),)
        elif kind != "Embedding":
            vocab = [v for v in layer.get_vocabulary() if v not in ("[UNK]", -1, "")]
            if 0 < len(vocab) <= MAX_CATEGORIES:
                found[id(source)] = (Domain(categories=tuple(vocab), unknown_allowed=True),)
    return found


def serving(model, specs: list[TensorSpec], tf_names: list[str], path) -> Serving:
    """Trace ``model(x, training=False)`` with a dynamic batch dim; outputs come back as a dict named after
    the model's outputs (``output_names``, dict keys, or the last layer for a Sequential)."""
    tf = env.tensorflow()
    names = [s.name for s in specs]
    tf_specs = [tf.TensorSpec([d if isinstance(d, int) else None for d in s.shape], tf.as_dtype(s.dtype), name=n)
                for s, n in zip(specs, tf_names)]
    default_names = _output_names(model)

    def serve(*args):
        x = args[0] if len(args) == 1 else dict(zip(names, args))
        return _named(model(x, training=False), default_names)

    fn = tf.function(serve, input_signature=tf_specs)
    with env.quiet():
        try:
            concrete = fn.get_concrete_function()
        except Exception as exc:
            raise UnsupportedModelError(f"the model cannot be traced with inputs {', '.join(s.describe() for s in specs)}:"
                                        f" {type(exc).__name__}: {env.first_line(exc)}", path=path,
                                        hint="describe the inputs with --input") from None
    outputs = tuple(concrete.structured_outputs)
    return Serving(concrete, model, tuple(names), outputs)


def _output_names(model) -> list[str]:
    names = getattr(model, "output_names", None)
    if names:
        return [str(n) for n in names]
    layers = getattr(model, "layers", None)
    return [layers[-1].name] if layers else ["output_0"]


def _named(result, default_names: list[str]) -> dict:
    """A model's outputs (tensor, list, dict) as a flat dict with unique names."""
    if isinstance(result, dict):
        items = [(str(k), v) for k, v in result.items()]
    else:
        flat = list(result) if isinstance(result, (list, tuple)) else [result]
        names = default_names if len(default_names) == len(flat) else [f"output_{i}" for i in range(len(flat))]
        items = list(zip(names, flat))
    out: dict = {}
    for name, value in items:
        while name in out:
            name += "_"
        out[name] = value
    return out


def outputs(serving_: Serving) -> tuple[OutputSpec, ...]:
    return tuple(OutputSpec(n, "value") for n in serving_.output_names)


def describe(model) -> str:
    layers = getattr(model, "layers", [])
    kinds = []
    for layer in layers:
        kind = type(layer).__name__
        if kind not in kinds and kind != "InputLayer":
            kinds.append(kind)
    shown = ", ".join(kinds[:6]) + (" ..." if len(kinds) > 6 else "")
    return f"Keras {type(model).__name__} ({len(layers)} layers: {shown})" if layers else f"Keras {type(model).__name__}"

