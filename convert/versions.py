"""Library versions: what is installed (read from package metadata, importing nothing) and how a version a
file was saved with compares with it. One table maps the names modelport uses (a ``saved_with`` key or a
top-level module) to the distribution that provides them; one parser reads versions."""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache

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
    for name in TENSORFLOW_DISTS if dist in TENSORFLOW_DISTS else (dist,):
        if not name:
            continue
        found = _metadata_version(name)
        if found:
            return found
    return None


def _metadata_version(name: str) -> str | None:
    """A distribution's version: from the name of its ``.dist-info`` folder where sys.path has one (the wheel
    format puts the version there), else from ``importlib.metadata`` (which parses the METADATA file as an email
    message: a tenth of a second for the first few). A name sys.path lacks is looked up with importlib.metadata
    only when something there is not a plain folder of ``.dist-info``s (eggs, zips, egg-info)."""
    index, complete = _dist_info_index()
    key = _normalized(name)
    if key in index:
        return index[key]
    if complete:
        return None
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _egg_info_version(path: str) -> str | None:
    """The ``Version:`` header of an ``.egg-info`` folder's PKG-INFO (or of an ``.egg-info`` file)."""
    target = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
    try:
        with open(target, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
                if not line.strip():
                    break
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def _dist_info_index() -> tuple[dict, bool]:
    """({normalized name: version} from the ``NAME-VERSION.dist-info`` folders on sys.path, the first one winning
    as for imports; whether that is everything importlib.metadata would find)."""
    index: dict[str, str] = {}
    complete = True
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except (NotADirectoryError, FileNotFoundError):
            complete = complete and not os.path.isfile(entry)  # a zip on sys.path may hold metadata
            continue
        except OSError:
            complete = False
            continue
        for n in names:
            if n.endswith(".dist-info"):
                dist, sep, version = n[:-len(".dist-info")].partition("-")
                if sep and version and "-" not in version:
                    index.setdefault(_normalized(dist), version)
                else:
                    complete = False
            elif n.endswith(".egg-info"):  # setuptools' metadata (a checkout's build leaves one): read its Version line
                found = _egg_info_version(os.path.join(entry or ".", n))
                if found:
                    index.setdefault(_normalized(n[:-len(".egg-info")].partition("-")[0]), found)
                else:
                    complete = False
            elif n.endswith(".egg"):
                complete = False
    return index, complete


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


# distributions whose versions a report records when installed (read from metadata: nothing is imported)
TRACKED = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "onnxscript", "torch", "tensorflow-cpu",
           "tensorflow", "keras", "tf2onnx", "joblib", "scipy", "pandas", "protobuf")


def environment() -> dict:
    """Python, platform and the installed versions of ``TRACKED`` and modelport, for a report (no imports)."""
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", "")
    env = {"python": ".".join(map(str, sys.version_info[:3])), "platform": f"{sys.platform}-{machine}"}
    for dist in (*TRACKED, "modelport"):
        found = _metadata_version(dist)
        if found:
            env[dist] = found
    return env


def onnx_levels() -> dict:
    """The newest ONNX opset and IR version the installed ``onnx`` release knows (``onnx_opset``, ``onnx_ir``),
    read from its release table in ``onnx/helper.py`` without importing it (the import costs a second or more
    on a cold disk); ``{}`` when onnx is not installed or the table cannot be read."""
    from importlib.util import find_spec
    from pathlib import Path

    now = parse(installed_version("onnx"))
    try:
        spec = find_spec("onnx")  # a top-level package: found, not imported
        folders = list(spec.submodule_search_locations or ()) if spec else []
        text = next((Path(f) / "helper.py").read_text("utf-8") for f in folders if (Path(f) / "helper.py").is_file())
    except (ImportError, ValueError, OSError, StopIteration):
        return {}
    table = text[text.find("VERSION_TABLE"):]
    best = None  # the last release in the table that is not newer than the installed one
    for m in re.finditer(r'\(\s*"(\d+(?:\.\d+)*)"\s*,\s*(\d+)\s*,\s*(\d+)', table[:table.find("]")]):
        release_, ir, opset = parse(m.group(1)), int(m.group(2)), int(m.group(3))
        if now is None or cmp(release_[:2], now[:2]) <= 0:
            best = {"onnx_opset": opset, "onnx_ir": ir}
    return best or {}
