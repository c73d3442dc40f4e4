"""The adapter registry: formats -> the adapter that loads and converts them.

Which adapter takes which format is a column of the format table (``convert.formats``); this maps adapter
names to their modules. A new framework is a new subpackage here plus its rows in the format table. Adapter
packages import their framework lazily, inside their functions, so importing the registry is cheap.
"""

from __future__ import annotations

import importlib

from .. import formats
from ..artifact import Artifact
from ..errors import UnsupportedModelError
from .base import Adapter, Converted, Hints, Loaded

# adapter name -> module exposing ``ADAPTER``
_MODULES: dict[str, str] = {"sklearn": "convert.adapters.sklearn", "tensorflow": "convert.adapters.tensorflow",
                            "torch": "convert.adapters.torch"}


def register(name: str, module: str) -> None:
    """Add (or replace) an adapter. ``module`` must expose a module-level ``ADAPTER``; the formats it takes are
    the format table's rows naming ``name``."""
    _MODULES[name] = module


def get(name: str) -> Adapter:
    return importlib.import_module(_MODULES[name]).ADAPTER


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def find(artifact: Artifact) -> Adapter | None:
    """The adapter that takes this artifact, or None."""
    name = formats.get(artifact.format).adapter if artifact.format in formats.FORMATS else None
    if name is None or name not in _MODULES:
        return None
    adapter = get(name)
    return adapter if adapter.can_load(artifact) else None


def for_artifact(artifact: Artifact) -> Adapter:
    """The adapter that takes this artifact, or UnsupportedModelError (exit 3)."""
    adapter = find(artifact)
    if adapter is not None:
        return adapter
    what = artifact.format + (f" ({artifact.framework})" if artifact.framework else "")
    candidate = formats.get(artifact.format).adapter if artifact.format in formats.FORMATS else None
    if candidate:
        hint = f"the {candidate} adapter does not recognise its content"
    else:
        hint = "no adapter converts this format yet; `modelport inspect` shows what it is"
    raise UnsupportedModelError(f"cannot convert a {what} file", path=artifact.path, hint=hint)


def vouches(artifact: Artifact):
    """What the loader of this artifact enforces itself (see ``formats.gate``): a predicate on GlobalRefs, or None."""
    adapter = find(artifact)
    return getattr(adapter, "vouches", None) if adapter is not None else None


__all__ = ["Adapter", "Converted", "Hints", "Loaded", "find", "for_artifact", "get", "names", "register", "vouches"]
