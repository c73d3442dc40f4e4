"""modelport.convert: what a model file is, and how it becomes ONNX.

    import convert
    art = convert.inspect("model.joblib")        # static: never runs the file's code
    loaded = convert.load(art)                   # through the safety gate
    converted = convert.to_onnx(loaded)          # an onnx.ModelProto in converted.model
    convert.save(converted.model, "model.onnx")  # atomic write

Checking that the ONNX model computes what the original does is ``compat.check``; ``compat.convert``
does all of the above plus the check and its precision remedies.
"""

from __future__ import annotations

from pathlib import Path

from .artifact import Artifact
from .errors import (
    BadInputError,
    EnvironmentProblem,
    MissingCodeError,
    ModelClassError,
    ModelportError,
    UnsafeArtifactError,
    UnsupportedModelError,
)
from .findings import Finding, GlobalRef, PickleScan

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing's constant, without importing typing: nothing else on the static path needs it
if TYPE_CHECKING:  # names of the loading side, for annotations; imported lazily below
    from .adapters.base import Converted, Hints, Loaded

# the loading side of the face, imported when first used: a static scan (``inspect``) needs none of it
_LAZY = {"adapters": (".adapters", None), "ClassSpec": (".adapters.base", "ClassSpec"),
         "Converted": (".adapters.base", "Converted"), "Hints": (".adapters.base", "Hints"),
         "Loaded": (".adapters.base", "Loaded"), "save": (".onnxfile", "save"), "Domain": (".spec", "Domain"),
         "OutputSpec": (".spec", "OutputSpec"), "Signature": (".spec", "Signature"),
         "TensorSpec": (".spec", "TensorSpec"), "parse_dims": (".spec", "parse_dims")}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'convert' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module, __name__)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def inspect(path: str | Path) -> Artifact:
    """Format, framework, writer versions and pickle safety of ``path``, read from its bytes: a local path,
    or a URL fsspec reaches (``s3://``, ``gs://``, ``az://``, ``http(s)://``; read with ranged requests)."""
    from .artifact import inspect as _inspect

    return _inspect(path)


def load(source: str | Path | Artifact, hints: Hints | None = None, **hint_fields) -> Loaded:
    """Load a native model through its adapter. ``hint_fields`` are ``Hints`` fields (``trust=True``, ...).
    A format whose loading unpickles passes the gate (``formats.gate``) before any adapter is chosen."""
    from . import adapters, formats
    from .adapters.base import Hints
    from .storage import is_remote

    if is_remote(source.path if isinstance(source, Artifact) else source):
        raise BadInputError("a model in a store is loaded from a local copy", path=str(getattr(source, "path", source)),
                            hint="use convert.storage.local_copy(url) and load the path it gives")
    artifact = source if isinstance(source, Artifact) else inspect(source)
    hints = hints or Hints(**hint_fields)
    if artifact.format in formats.FORMATS and formats.get(artifact.format).unpickles:
        formats.gate(artifact, hints.trust, vouched=adapters.vouches(artifact))
    return adapters.for_artifact(artifact).load(artifact, hints)


def to_onnx(loaded: Loaded, opset: int | None = None, remedy: str | None = None) -> Converted:
    """Convert a loaded model; ``remedy`` picks one of ``remedies(loaded)`` (None: the plain conversion). The
    graph's metadata names the file it came from (``onnxfile.stamp_source``)."""
    from . import adapters
    from .onnxfile import stamp_source

    converted = adapters.get(loaded.adapter).to_onnx(loaded, opset=opset, remedy=remedy)
    stamp_source(converted.model, Path(loaded.artifact.path).name, loaded.artifact.sha256)
    return converted


def remedies(loaded: Loaded) -> tuple[str | None, ...]:
    """The conversions to try, in order, when the plain one disagrees with the native model."""
    from . import adapters

    return tuple(adapters.get(loaded.adapter).remedies(loaded))


def stages(loaded: Loaded) -> list[tuple[str, Loaded]]:
    """The model's leading parts as models of their own (a pipeline's prefixes), in order; [] when the
    adapter cannot split it. Used to find where a disagreeing conversion first diverges."""
    from . import adapters

    adapter = adapters.get(loaded.adapter)
    return list(adapter.stages(loaded)) if hasattr(adapter, "stages") else []


def known_causes(loaded: Loaded, symptoms: set[str]) -> list[tuple[str, str]]:
    """(component, why) for each known reason this model's conversion disagrees that matches a symptom seen
    by the check ("nan", "labels", "values")."""
    from . import adapters

    adapter = adapters.get(loaded.adapter)
    return list(adapter.known_causes(loaded, symptoms)) if hasattr(adapter, "known_causes") else []


__all__ = [
    "Artifact", "BadInputError", "ClassSpec", "Converted", "Domain", "EnvironmentProblem", "Finding", "GlobalRef",
    "Hints", "Loaded", "MissingCodeError", "ModelClassError", "ModelportError", "OutputSpec", "PickleScan",
    "Signature", "TensorSpec", "UnsafeArtifactError", "UnsupportedModelError", "inspect", "known_causes", "load",
    "parse_dims", "remedies", "save", "stages", "to_onnx",
]
