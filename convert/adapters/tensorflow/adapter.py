"""TensorFlow and Keras: SavedModel folders, Keras v3 ``.keras`` zips and legacy ``.h5`` files -> ONNX.

What this adds to a bare tf2onnx call:
- the safety gate, enforced at load: a Keras file with Lambda layers (marshalled bytecode), custom objects or
  Keras' non-modeling APIs, or a SavedModel whose signatures or loader reach ops off the allowlist or ops that
  touch files, the network or Python, is refused without ``--trust`` (``convert.keras_scan`` and
  ``convert.savedmodel_scan`` read them without importing TensorFlow); symlinks out of a SavedModel folder
  are refused whatever the trust; Keras loads with ``safe_mode=True`` unless trusted;
- a signature named after the model: Keras input/output names (dict keys for dict-structured models, the last
  layer for a Sequential), or the SavedModel signature's keys (``--signature``, default ``serving_default``),
  with a dynamic batch dimension, and domains for inputs that feed an Embedding or a lookup layer;
- conversion of a concrete function with an explicit input signature (Keras 3 breaks tf2onnx's
  ``from_keras``), at the newest opset tf2onnx and the installed onnx both write, every unconvertible op named;
- a native runner that calls the same traced function, returning outputs under the ONNX names;
- TensorFlow's start-up chatter kept off the terminal; a tf2onnx that cannot be imported is an
  EnvironmentProblem (exit 3) naming the versions involved.
TensorFlow, Keras, tf2onnx and h5py are imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import time

from ...artifact import Artifact
from ...errors import BadInputError, UnsupportedModelError
from ...spec import Signature
from . import env, keras, savedmodel, to_onnx
from .graph import Runner
from ..base import Converted, Hints, Loaded, Stopwatch, warm_modules

KERAS_FORMATS = ("keras", "keras-h5", "hdf5")


class TensorFlowAdapter:
    name = "tensorflow"
    # plain "hdf5" too: an .h5 without a Keras model config deserves "not a Keras model" (exit 2), not "unsupported"
    formats = ("savedmodel", "keras", "keras-h5", "hdf5")
    modules = {"load": ("tensorflow", "keras"), "convert": ("tf2onnx",), "check": ("onnxruntime",)}

    def warm(self, step: str) -> list[str]:
        """TensorFlow, Keras and tf2onnx are imported through ``env`` (environment, Keras backend, quiet logs)."""
        return warm_modules(self.modules, step, {"tensorflow": env.tensorflow, "keras": env.keras,
                                                  "tf2onnx": env.tf2onnx})

    def can_load(self, artifact: Artifact) -> bool:
        return artifact.format in self.formats

    def load(self, artifact: Artifact, hints: Hints) -> Loaded:
        t0 = time.perf_counter()
        loader = _load_savedmodel if artifact.format == "savedmodel" else _load_keras
        loaded = loader(artifact, hints)
        loaded.seconds = time.perf_counter() - t0
        return loaded

    def remedies(self, loaded: Loaded) -> tuple[str | None, ...]:
        return (None,)

    def to_onnx(self, loaded: Loaded, opset: int | None = None, remedy: str | None = None) -> Converted:
        if remedy is not None:
            raise ValueError(f"unknown remedy {remedy!r}")
        steps: dict[str, float] = {}
        watch = Stopwatch(steps)
        notes: list[str] = []
        path = loaded.artifact.path
        with watch("import tf2onnx"):
            env.tf2onnx()
        opset = to_onnx.choose_opset(opset, path)
        with watch("tf2onnx"):
            model = to_onnx.to_onnx(loaded.model.serving, loaded.signature, opset, path, notes)
        with watch("finish"):
            model = _finish(model, path)
        return Converted(model, None, notes, steps)


ADAPTER = TensorFlowAdapter()


class TFModel:
    """The native model (``native``: a keras.Model, or the object tf.saved_model.load returned) and the traced
    function that is both run natively and converted."""

    def __init__(self, native, serving: to_onnx.Serving, kind: str):
        self.native, self.serving, self.kind = native, serving, kind

    def __repr__(self) -> str:
        return f"TFModel({self.kind}, inputs={self.serving.input_names}, outputs={self.serving.output_names})"


def _load_keras(artifact: Artifact, hints: Hints) -> Loaded:
    if hints.signature_name:
        raise BadInputError("--signature applies to SavedModel folders, not Keras files", path=artifact.path)
    notes: list[str] = []
    fmt = artifact.format if artifact.format in KERAS_FORMATS else "keras-h5"
    findings, facts = keras.scan_gate(artifact, fmt, hints.trust)
    model = keras.load_model(artifact, fmt, hints.trust, facts, notes)
    specs, tf_names = keras.input_specs(model, artifact, hints)
    serving = keras.serving(model, specs, tf_names, artifact.path)
    signature = Signature(tuple(specs), keras.outputs(serving))
    call = _keras_call(serving)
    facts_out = {
        "estimator": keras.describe(model), "model": f"Keras {type(model).__name__}", "format": fmt,
        "saved_with": _saved_with(facts), "layers": facts.get("layers"),
        "lambda_layers": facts.get("lambda_layers", []), "custom_objects": facts.get("custom_objects", []),
    }
    return Loaded(artifact, TFModel(model, serving, "keras"), signature,
                  Runner(call, specs, serving.output_names), ADAPTER.name, notes, facts_out)


def _keras_call(serving: to_onnx.Serving):
    names = serving.input_names

    def call(tensors):
        return serving.concrete(*[tensors[n] for n in names])

    return call


def _load_savedmodel(artifact: Artifact, hints: Hints) -> Loaded:
    notes: list[str] = []
    savedmodel.check_files(artifact)
    findings, facts = savedmodel.scan_gate(artifact, hints.trust, notes)
    savedmodel.check_variables(artifact, facts)
    obj = savedmodel.load(artifact)
    name, fn = savedmodel.pick_signature(obj, hints.signature_name, artifact.path, notes)
    serving, specs = savedmodel.serving(obj, name, fn, hints, artifact.path)
    signature = Signature(tuple(specs), savedmodel.outputs(serving))
    facts_out = {
        "estimator": f"SavedModel signature {name!r}", "model": f"SavedModel:{name}", "format": "savedmodel",
        "signature": name, "signatures": sorted(facts.get("signatures", {})), "saved_with": _saved_with(facts),
    }
    return Loaded(artifact, TFModel(obj, serving, "savedmodel"), signature,
                  Runner(lambda tensors: fn(**tensors), specs, serving.output_names), ADAPTER.name, notes, facts_out)


def _saved_with(facts: dict) -> dict:
    table = (("keras", "keras_version"), ("backend", "backend"), ("tensorflow", "tensorflow_version"))
    return {key: facts[fact] for key, fact in table if facts.get(fact)}


def _finish(model, path):
    """Opset imports and IR version onnxruntime accepts, checked; then onnxruntime must open it."""
    from ... import onnxfile

    try:
        model = onnxfile.finalize(model)
    except Exception as exc:
        raise UnsupportedModelError(f"tf2onnx produced an invalid ONNX graph: {env.first_line(exc)}",
                                    path=path, hint="nothing was written") from None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UnsupportedModelError(f"onnxruntime cannot run the converted graph: {env.first_line(exc)}",
                                    path=path, hint="nothing was written") from None
    return model
