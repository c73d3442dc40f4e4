"""Library versions: what is installed (read from package metadata, importing nothing) and how a version a
file was saved with compares with it. One table maps the names modelport uses (a ``saved_with`` key or a
top-level module) to the distribution that provides them; one parser reads versions."""

from __future__ import annotations

import re

# saved_with key / top-level module -> distribution whose release decides what it reads and which module
# paths exist
DISTS = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy", "torch": "torch", "joblib": "joblib",
         "keras": "keras", "tensorflow": "tensorflow-cpu", "pandas": "pandas", "xgboost": "xgboost",
         "lightgbm": "lightgbm", "skl2onnx": "skl2onnx", "skops": "skops", "onnx": "onnx",
         "onnxruntime": "onnxruntime", "tf2onnx": "tf2onnx", "onnxscript": "onnxscript"}
# TensorFlow is published under several distribution names; whichever is installed answers for all
TENSORFLOW_DISTS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos")


def installed_version(dist: str | None) -> str | None:
    """The installed version of a distribution, read from its metadata (imports nothing); None if absent."""
    from importlib import metadata

    for name in TENSORFLOW_DISTS if dist in TENSORFLOW_DISTS else (dist,):
        if not name:
            continue
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed(key: str) -> str | None:
    """The installed release for a ``saved_with`` key or top-level module (``sklearn`` -> scikit-learn's)."""
    return installed_version(DISTS.get(key))


def dist_name(key: str) -> str:
    """The distribution to ``pip install`` for a key or top-level module (``sklearn`` -> ``scikit-learn``)."""
    return DISTS.get(key, key)


def parse(version) -> tuple[int, ...] | None:
    """The leading numeric release of a version string (``1.3.2`` -> (1, 3, 2); ``before 0.18`` -> None)."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", version) if isinstance(version, str) else None
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version, reading ``before X.Y`` as X.Y (the bound it names)."""
    m = re.match(r"(?:before )?(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def cmp(a: tuple, b: tuple) -> int:
    """-1, 0 or 1 as release tuple ``a`` is below, equal to or above ``b`` (missing parts count as 0)."""
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def compare(saved, installed_now) -> str | None:
    """``older`` (the file was written by an older release than the one installed), ``newer``, ``same``, or
    None when the two cannot be compared. Understands ``before X``, numpy's ``<2`` / ``>=2``, and integer
    levels (ONNX opsets)."""
    saved, installed_now = (str(v) if isinstance(v, int) else v for v in (saved, installed_now))
    if not saved or not installed_now:
        return None
    now = parse(installed_now)
    if now is None:
        return None
    for prefix, older_if_below in (("before ", True), ("<", True), (">=", False)):
        if saved.startswith(prefix):
            bound = parse(saved[len(prefix):])
            if bound is None:
                return None
            below = cmp(now, bound) < 0
            if older_if_below:  # saved < bound: older when installed >= bound
                return None if below else "older"
            return "newer" if below else None  # saved >= bound: newer when installed < bound
    then = parse(saved)
    if then is None:
        return None
    c = cmp(then, now)
    return "older" if c < 0 else "newer" if c > 0 else "same"


def direction(saved: str | None, installed_now: str | None) -> str | None:
    """``older`` or ``newer`` (see ``compare``); None when the same or not comparable."""
    way = compare(saved, installed_now)
    return None if way == "same" else way
