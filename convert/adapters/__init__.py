"""The adapter registry: formats -> the adapter that loads and converts them.

A new framework is a new module here plus one line in ``_REGISTRY``; nothing else changes. Adapter
modules import their framework lazily, inside their functions, so importing the registry is cheap.
"""

from __future__ import annotations

import importlib

from ..artifact import Artifact
from ..errors import UnsupportedModelError
from .base import Adapter, Converted, Hints, Loaded

# adapter name -> (module, formats it may handle)
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "sklearn": ("convert.adapters.sklearn", ("pickle", "joblib")),
    "tensorflow": ("convert.adapters.tensorflow", ("savedmodel", "keras", "keras-h5", "hdf5")),
    "torch": ("convert.adapters.torch", ("torch-zip", "torch-legacy", "torchscript", "torch-export", "zip")),
}


def register(name: str, module: str, formats: tuple[str, ...]) -> None:
    """Add (or replace) an adapter. ``module`` must expose a module-level ``ADAPTER``."""
    _REGISTRY[name] = (module, tuple(formats))


def get(name: str) -> Adapter:
    module, _ = _REGISTRY[name]
    return importlib.import_module(module).ADAPTER


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def for_artifact(artifact: Artifact) -> Adapter:
    """The first registered adapter that takes this artifact, or UnsupportedModelError (exit 3)."""
    candidates = [name for name, (_, formats) in _REGISTRY.items() if artifact.format in formats]
    for name in candidates:
        adapter = get(name)
        if adapter.can_load(artifact):
            return adapter
    what = artifact.format + (f" ({artifact.framework})" if artifact.framework else "")
    if candidates:
        hint = f"adapters for this format ({', '.join(candidates)}) do not recognise its content"
    else:
        hint = "no adapter converts this format yet; `modelport inspect` shows what it is"
    raise UnsupportedModelError(f"cannot convert a {what} file", path=artifact.path, hint=hint)


__all__ = ["Adapter", "Converted", "Hints", "Loaded", "for_artifact", "get", "names", "register"]
