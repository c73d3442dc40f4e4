"""Why an artifact does not load, in one line and one category, from the static facts or the error.

Categories: ``version-drift`` (a module path or data layout the installed release no longer reads, or a
file written by a newer release), ``missing-class`` (a class defined by the script that saved the file,
e.g. ``__main__.Foo``), ``corrupt`` (truncated, mangled by a line-ending conversion, ...), ``unsafe``
(refused by the static scan), ``out-of-memory`` (an allocation failed, or the sizes a file declares pass
``convert.memory``'s bounds: never ``corrupt``), ``needs-input`` (the file alone is not enough: ``--model-class``,
``--input``), ``dependency`` (a library is not installed), ``other``.

Each reason names what the file needs, the release that saved it (``Artifact.saved_with``) and the
release installed, and ends with what to do. The cases are checked against real files written by old
releases in fixtures/legacy/ (see fixtures/make_legacy.py and its MANIFEST.json).
"""

from __future__ import annotations

import importlib.util
import re

from convert import versions
from convert.errors import (
    BadInputError,
    EnvironmentProblem,
    MissingCodeError,
    ModelportError,
    OutOfMemoryError,
    UnsafeArtifactError,
    UnsupportedModelError,
)
from convert.memory import is_allocation_failure
from convert.versions import direction

# top-level modules of the libraries whose releases decide which module paths exist (the dists: convert.versions)
FRAMEWORKS = ("sklearn", "numpy", "scipy", "torch", "joblib", "keras", "tensorflow", "pandas", "xgboost", "lightgbm",
              "skl2onnx")
_FRAMEWORKS = "|".join(FRAMEWORKS)


def module_exists(module: str) -> bool | None:
    """Does ``module`` exist in what is installed? Only asked of framework modules (finding a submodule
    imports its parent packages: library code, never the artifact's); None for anything else."""
    top = module.split(".", 1)[0]
    if top not in FRAMEWORKS or versions.installed(top) is None:
        return None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _pinnable(saved: str | None) -> bool:
    return bool(saved) and re.fullmatch(r"\d+(\.\d+)+", saved) is not None


def advice(top: str, saved: str | None, installed: str | None) -> str:
    """What to do about a file the installed ``top`` cannot read: the remedy names the release."""
    dist = versions.dist_name(top)
    way = direction(saved, installed)
    if way == "newer":
        want = saved.lstrip("<>=") if saved else "the release that saved it"
        return f"upgrade {dist} to {want} or later"
    if _pinnable(saved):
        there = f"load it with {dist} {saved} (pip install {dist}=={saved}) and convert it to ONNX there"
    elif saved and saved.startswith("before "):
        there = f"load it with a {dist} release {saved} and convert it to ONNX there"
    else:
        there = f"load it with the {dist} release that saved it and convert it to ONNX there"
    return there + (f", or re-fit it with {installed}" if installed else ", or re-fit it")


def _saved_phrase(saved: str) -> str:
    return f"a release {saved}" if saved.startswith("before ") else saved


def _drift_reason(module: str, needs: str, saved_with: dict | None) -> str:
    """A path in ``module`` the installed release does not have: what, which releases, what to do."""
    top = module.split(".", 1)[0]
    dist = versions.dist_name(top)
    installed = versions.installed(top)
    saved = (saved_with or {}).get(top)
    way = direction(saved, installed)
    text = f"needs {needs}, which {dist} {installed} does not have" if installed else f"needs {needs}, which is missing"
    if saved:
        why = {"older": ": a path later releases renamed or removed",
               "newer": f": a path added after {installed}"}.get(way, "")
        text += f" (saved with {_saved_phrase(saved)}{why})"
    return f"{text}; {advice(top, saved, installed)}"


# --------------------------------------------------------------------------------------------- static


def global_problem(module: str, name: str, saved_with: dict) -> tuple[str, str] | None:
    """(category, reason) when a global cannot resolve here for a known reason, else None."""
    if module == "__main__" or module.startswith("__main__."):
        return "missing-class", _main_reason(f"{module}.{name}", name)
    top = module.split(".", 1)[0]
    exists = module_exists(module)
    if exists is False:
        return "version-drift", _drift_reason(module, f"module {module} (for {name})", saved_with)
    if exists is None and top not in FRAMEWORKS:
        try:
            found = importlib.util.find_spec(top) is not None  # a top-level name: located, never imported
        except (ImportError, ValueError):
            found = False
        if not found:
            return "missing-class", f"needs {module}.{name}: no module {top} is installed here (install it)"
    return None


def _main_reason(qualname: str, name: str) -> str:
    return (f"needs {qualname}, a class defined by the script that saved it: define or import {name} in the "
            "script that loads it, or re-save it with the class in an importable module")


def refusal(artifact) -> tuple[str, str]:
    """(category, reason) for an artifact the static scan did not pass: loading it is refused."""
    flagged = [g for g in artifact.globals if g.verdict != "safe"]
    unsafe = [g for g in flagged if g.verdict == "unsafe"]
    if artifact.safety == "unsafe":
        if unsafe:
            shown = ", ".join(g.qualname for g in unsafe[:3]) + (" ..." if len(unsafe) > 3 else "")
            return "unsafe", f"refused (unsafe): unpickling would call {shown}"
        first = next((f.what for f in artifact.findings if f.severity == "unsafe"), "code execution")
        return "unsafe", f"refused (unsafe): {first}"
    problems = [p for p in (global_problem(g.module, g.name, artifact.saved_with) for g in flagged) if p]
    if problems:
        category, reason = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return category, f"refused ({artifact.safety}): {reason}{more}"
    if flagged:
        shown = ", ".join(g.qualname for g in flagged[:3]) + (" ..." if len(flagged) > 3 else "")
        return "unsafe", f"refused ({artifact.safety}): would import {shown}, which the allowlist does not hold"
    first = next((f.what for f in artifact.findings if f.severity not in ("info",)), "the static scan could not vouch")
    return "unsafe", f"refused ({artifact.safety}): {first}"


# ---------------------------------------------------------------------------------------------- errors


def _node_dtype(m, saved_with, message):
    saved = (saved_with or {}).get("sklearn")
    installed = versions.installed("sklearn")
    when = f"saved with {_saved_phrase(saved)}; " if saved else ""
    return (f"a tree pickled before scikit-learn 1.3 ({when}node layout without missing_go_to_left), which "
            f"scikit-learn 1.3 and later{f' ({installed} here)' if installed else ''} cannot read: "
            + advice("sklearn", saved, installed))


def _main_missing(m, saved_with, message):
    return _main_reason(f"__main__.{m.group(1)}", m.group(1))


def _attribute_gone(m, saved_with, message):
    return _drift_reason(m.group(2), f"{m.group(2)}.{m.group(1)}", saved_with)


def _module_gone(m, saved_with, message):
    return _drift_reason(m.group(1), f"module {m.group(1)}", saved_with)


def _not_installed(m, saved_with, message):
    return f"needs module {m.group(1)}, which is not installed here (install it, or the package that provides it)"


def _crlf_module(m, saved_with, message):
    return (f"corrupt: the pickle names module {m.group(1)!r} with a carriage return: its line endings were "
            "converted (LF became CRLF: a text-mode copy or git autocrlf); restore the original bytes")


def _as_text(m, saved_with, message):
    return message


def _corrupt(m, saved_with, message):
    return message if message.lower().startswith("corrupt") else f"corrupt: {message}"


# (pattern on the error's text, category, reason builder(match, saved_with, message)); first match wins.
# The text is the error's one line with whitespace collapsed, except for the CRLF pattern (raw text).
_CAUSES = (
    (r"node array from the pickle has an incompatible dtype|a tree pickled before scikit-learn 1\.3 \(old node layout\)",
     "version-drift", _node_dtype),
    (r"Can't get attribute '([\w.]+)' on <module '__main__'", "missing-class", _main_missing),
    (rf"Can't get attribute '([\w.]+)' on <module '((?:{_FRAMEWORKS})(?:\.\w+)*)'", "version-drift", _attribute_gone),
    (rf"No module named '((?:{_FRAMEWORKS})(?:\.\w+)*)'", "version-drift", _module_gone),
    (r"No module named '([\w.]+)'", "missing-class", _not_installed),
    (r"CRLF|line endings", "corrupt", _corrupt),
    (r"corrupt|truncated|unpickling stack underflow|invalid load key|ran out of input|unexpected end|"
     r"not a zip file|bad magic|EOFError|EOF: reading array data|damaged", "corrupt", _corrupt),
    (r"Unsupported model IR version|opset .* is under development|Opset \d+ is not supported|"
     r"onnxruntime only supports|ONNX Runtime only \*guarantees\*", "version-drift", _as_text),
)
# a module name ending in a carriage return (the import error shows it escaped, as \r): the file went
# through a LF -> CRLF conversion
_CRLF_MODULE = re.compile(r"No module named '([\w.]+)(?:\\r|\r)'")
# pickle's lookup of a class on a module; the module that stands for __main__ is whatever ran the load
_MISSING_ATTRIBUTE = re.compile(r"Can't get attribute '([\w.]+)' on <module '([\w.]+)'")
_NEEDS_INPUT = re.compile(r"--model-class|--input\b|--signature|--state-key")


def _main_names(artifact) -> set[str]:
    """Names the static scan saw the file import from ``__main__``."""
    return {g.name for g in getattr(artifact, "globals", ())
            if g.module == "__main__" or g.module.startswith("__main__.")}


def classify(exc: BaseException, artifact=None) -> tuple[str, str, str]:
    """(status, category, reason) for an exception raised while loading or converting. ``artifact`` (the
    static facts) lets the reason name the release the file was saved with."""
    if isinstance(exc, ModelportError):  # the message and the hint: the file's path is no evidence
        raw = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    else:
        raw = f"{type(exc).__name__}: {exc}"
    text = " ".join(raw.split())[:400]
    message = exc.message if isinstance(exc, ModelportError) else text
    saved_with = getattr(artifact, "saved_with", None) or {}
    if isinstance(exc, UnsafeArtifactError):
        return "refused", "unsafe", f"refused: {message}"
    if isinstance(exc, MemoryError):
        return "out-of-memory", "out-of-memory", f"ran out of memory (the cap): {text[:200]}"
    if isinstance(exc, OutOfMemoryError) or (not isinstance(exc, ModelportError) and is_allocation_failure(exc)):
        return "out-of-memory", "out-of-memory", message if isinstance(exc, ModelportError) else \
            f"ran out of memory: {text[:200]}"
    if isinstance(exc, EnvironmentProblem):
        return "failed", "dependency", message
    if isinstance(exc, MissingCodeError):
        return "failed", *missing_code(exc, saved_with)
    crlf = _CRLF_MODULE.search(raw)
    if crlf:
        return "failed", "corrupt", _crlf_module(crlf, saved_with, message)
    missing = _MISSING_ATTRIBUTE.search(text)
    if missing and missing.group(2) != "__main__" and missing.group(1) in _main_names(artifact):
        return "failed", "missing-class", _main_reason(f"__main__.{missing.group(1)}", missing.group(1))
    for pattern, category, reason in _CAUSES:
        m = re.search(pattern, text)
        if m:
            return "failed", category, reason(m, saved_with, message)
    if isinstance(exc, (BadInputError, UnsupportedModelError)) and _NEEDS_INPUT.search(text):
        return "needs-input", "needs-input", text
    if isinstance(exc, UnsupportedModelError):
        return "unsupported", "other", message
    return "failed", "other", text


def missing_code(exc: MissingCodeError, saved_with: dict) -> tuple[str, str]:
    """(category, reason) for a file that needs classes not here: the script's own classes and libraries that are
    not installed are ``missing-class`` (never the fault of a version); a class a library removed is
    ``version-drift``, with the advice for the release that saved it."""
    first = exc.missing[0][0] if exc.missing else ""
    top = first.split(".", 1)[0]
    if top == "__main__" or not top or versions.installed(top) is None:
        return "missing-class", f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return "version-drift", f"{exc.message}; {advice(top, (saved_with or {}).get(top), versions.installed(top))}"


# ------------------------------------------------------------------------------------ disagreements

# scikit-learn 1.4 changed tree_.value of classification trees from weighted class counts to weighted
# fractions (changelog of 1.4.1, "Changed models", PR 27639; the code changed in 1.4.0). A classifier tree
# pickled before 1.4 still loads, but its value holds counts, which predict_proba returns as they are.
_TREE_VALUE_FRACTIONS = (1, 4)
_CLASSIFIER_TREES = frozenset(("DecisionTreeClassifier", "ExtraTreeClassifier"))


def disagreement(artifact) -> tuple[str, str] | None:
    """(category, reason) for a known cause of a native model disagreeing with its ONNX conversion,
    read from the static facts, or None. For the check step: when the check fails, this says why."""
    if artifact is None:
        return None
    saved = (artifact.saved_with or {}).get("sklearn")
    installed = versions.installed("sklearn")
    then, now = versions.parse(saved) if saved and not saved.startswith("before ") else None, versions.parse(installed)
    if then is None or now is None:
        return None
    trees = any(g.module.startswith("sklearn.tree") and g.name in _CLASSIFIER_TREES for g in artifact.globals)
    if trees and versions.cmp(then, _TREE_VALUE_FRACTIONS) < 0 <= versions.cmp(now, _TREE_VALUE_FRACTIONS):
        return "version-drift", (
            f"classification trees saved with scikit-learn {saved} store class counts in tree_.value; "
            f"scikit-learn {installed} expects fractions (changed in 1.4), so the loaded model's "
            "predict_proba (and a forest's predict) is wrong; the ONNX graph normalizes the counts and "
            f"computes what {saved} did: use the ONNX graph, or run the model under scikit-learn {saved}, or "
            f"re-fit it with {installed}")
    return None
