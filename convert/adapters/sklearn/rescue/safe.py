"""scikit-learn models in skops' format, a file that holds no code: written from a loaded (possibly migrated) model,
and read back trusting exactly the types modelport's allowlist calls safe.

skops asks its caller which types to trust (``skops.io.get_untrusted_types``); the answer here is the allowlist's
(``convert.scan.is_allowed``), never "everything in the file": a type the allowlist does not hold stops the load with
its name. skops is imported only here.
"""

from __future__ import annotations

from pathlib import Path

from ....atomic import write_atomic
from ....errors import EnvironmentProblem, UnsafeArtifactError
from ....scan.policy import is_allowed


def _skops_io():
    try:
        import skops.io as sio
    except ImportError as exc:
        raise EnvironmentProblem(f"skops is not installed ({exc})", hint="pip install 'modelport[sklearn]'") from None
    return sio


def save_skops(model, path: str | Path) -> Path:
    """Write ``model`` as a skops file, atomically. A text vectorizer's vocabulary indices are written as Python
    ints, the same numbers (scikit-learn keeps numpy ints after pruning by max_features or min_df/max_df, and skops
    0.16 writes each numpy scalar as a file of its own: a 90,000-term vocabulary took 195 s, now under one)."""
    sio = _skops_io()
    _plain_indices(model)
    return write_atomic(path, sio.dumps(model))


def _plain_indices(model) -> None:
    import numpy as np

    from .changes import walk

    for _, obj in walk(model):
        vocabulary = getattr(obj, "vocabulary_", None) if hasattr(obj, "get_params") else None
        if isinstance(vocabulary, dict) and any(isinstance(v, np.integer) for v in vocabulary.values()):
            obj.vocabulary_ = {k: int(v) for k, v in vocabulary.items()}


def trusted_types(path: str | Path) -> list[str]:
    """The types a skops file needs beyond skops' own defaults, all of which the allowlist must hold; raises
    UnsafeArtifactError naming those it does not."""
    untrusted = _skops_io().get_untrusted_types(file=str(path))
    refused = [t for t in untrusted if not is_allowed(*_split(t))]
    if refused:
        shown = ", ".join(refused[:5]) + (f" (+{len(refused) - 5} more)" if len(refused) > 5 else "")
        raise UnsafeArtifactError(f"the skops file names types the allowlist does not hold: {shown}", path=path,
                                  hint="nothing was loaded")
    return list(untrusted)


def load_skops(path: str | Path):
    """The object in a skops file, trusting only allowlisted types (see ``trusted_types``)."""
    return _skops_io().load(str(path), trusted=trusted_types(path))


def _split(qualname: str) -> tuple[str, str]:
    module, _, name = qualname.rpartition(".")
    return module, name
