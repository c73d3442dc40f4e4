"""A fitted model's float parameters, perturbed at a given precision: how its noise floor is measured.

An ONNX graph computes in float32 (or float64) what scikit-learn computes in float64. How far apart two
honest implementations may land is a property of the model: the native model re-run with its float
parameters rounded to float32 (draw 0), moved by ``eps * |p|`` each (draw 1: every term of a sum moves
the same way, so the change is the rounding of the *magnitude of the terms summed*, not of their
cancelled total), or multiplied by ``1 + u*eps`` with ``u`` uniform in [-1, 1] (draws 2, 3, ...: seeded,
so a check is reproducible), differs from the exact model by what float32 arithmetic on this
computation costs. ``compat.checks`` turns that difference into each output's
noise floor, and into the evidence that a label difference is a tie the native model itself cannot break.

Only parameters that enter arithmetic are perturbed. What is *compared* with the inputs (split
thresholds, bin edges), *searched* (a neighbours model's training rows) or *named* (classes, categories,
vocabularies) is left exact: a correct conversion reproduces those decisions exactly (the exact-trees
remedy does), so their differences are never noise.
"""

from __future__ import annotations

import copy

import numpy as np

# attribute names (or parts of names) never perturbed, and why
EXACT_ATTRIBUTES = {
    "threshold": "split points and cut-offs are compared with inputs, not computed with",
    "bin_edges": "bin edges are compared with inputs",
    "_fit_X": "a neighbours model searches its training rows: a perturbed copy would search other rows",
    "classes": "labels, not numbers",
    "categories": "categories are matched, not computed with",
    "vocabulary": "tokens are matched",
    "stop_words": "tokens are matched",
    "feature_names": "names",
    "binarize": "a cut-off compared with inputs (BernoulliNB)",
}
# fields of structured node arrays (HistGradientBoosting's predictors) that are computed with
NODE_VALUE_FIELDS = ("value",)


def _exact(name: str) -> bool:
    return any(part in name for part in EXACT_ATTRIBUTES)


def perturbed_copy(est, eps: float, draw: int):
    """A deep copy of ``est`` whose float parameters are perturbed: draw 0 rounds them to the float type
    whose machine epsilon is ``eps`` (float32, or nothing for float64), draw 1 adds ``eps * |p|`` to each,
    draws >= 2 scale each value by ``1 + u*eps`` (``u`` uniform in [-1, 1], seeded by ``draw``)."""
    clone = copy.deepcopy(est)
    if draw == 0:
        dtype = np.float32 if eps >= np.finfo(np.float32).eps else None
        if dtype is None:
            return clone

        def change(a: np.ndarray) -> np.ndarray:
            return a.astype(dtype).astype(a.dtype)
    elif draw == 1:
        def change(a: np.ndarray) -> np.ndarray:
            return np.where(np.isfinite(a), a + eps * np.abs(np.nan_to_num(a)), a)
    else:
        rng = np.random.default_rng(draw)

        def change(a: np.ndarray) -> np.ndarray:
            return a * (1 + eps * rng.uniform(-1.0, 1.0, a.shape))
    with np.errstate(invalid="ignore", over="ignore"):
        _walk(clone, change, set())
    return clone


def _walk(obj, change, seen: set) -> None:
    if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool, np.generic)):
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _walk(item, change, seen)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            _walk(item, change, seen)
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for item in obj.ravel():
                _walk(item, change, seen)
        elif obj.dtype.names:
            for name in NODE_VALUE_FIELDS:
                if name in obj.dtype.names and obj.dtype[name].kind == "f":
                    obj[name] = change(obj[name])
        return
    module = type(obj).__module__ or ""
    if not module.startswith("sklearn"):
        return
    if type(obj).__name__ == "Tree":  # the compiled tree: leaf values are summed, thresholds compared
        value = obj.value  # a writable view of the tree's own buffer
        value[...] = change(value)
        return
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return
    for name, value in list(attrs.items()):
        if _exact(name):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not value.dtype.names:
            attrs[name] = change(value)
        elif isinstance(value, (float, np.floating)) and not isinstance(value, bool):
            attrs[name] = type(value)(change(np.array([float(value)]))[0])
        else:
            _walk(value, change, seen)
