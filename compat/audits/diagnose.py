"""Why an artifact does not load, in one line and one category, from the static facts or the error.

Categories: ``version-drift`` (a module path or data layout the installed release no longer reads, or a
file written by a newer release), ``missing-class`` (a class defined by the script that saved the file,
e.g. ``__main__.Foo``), ``corrupt`` (truncated, mangled by a line-ending conversion, ...), ``unsafe``
(refused by the static scan), ``out-of-memory`` (an allocation failed, or the sizes a file declares pass
``convert.adapters.memory``'s bounds: never ``corrupt``), ``needs-input`` (the file alone is not enough: ``--model-class``,
``--input``), ``dependency`` (a library is not installed), ``other``.

Each reason names what the file needs, the release that saved it (``Artifact.saved_with``) and the
release installed, and ends with what to do. Modules, classes and data layouts that cannot be read here are
diagnosed by ``convert.adapters.diagnosis``, which the adapters' own errors use too (``CannotLoadError`` carries its
category), so ``modelport convert`` and the audit say the same thing. The cases are checked against real
files written by old releases in fixtures/legacy/ (see fixtures/make_legacy.py and its MANIFEST.json).
"""

from __future__ import annotations

import re

from convert import versions
from convert.adapters.diagnosis import (  # one diagnosis for convert's errors and the audit's rows
    FRAMEWORKS,
    advice,
    global_problem,
    import_failure,
    module_exists,
    old_tree_layout_reason,
)
from convert.errors import (
    BadInputError,
    CannotLoadError,
    EnvironmentProblem,
    MissingCodeError,
    ModelportError,
    OutOfMemoryError,
    UnsafeArtifactError,
    UnsupportedModelError,
)
from convert.adapters.memory import is_allocation_failure

__all__ = ["FRAMEWORKS", "advice", "classify", "disagreement", "global_problem", "module_exists", "refusal"]


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
    return old_tree_layout_reason(saved_with)


def _as_text(m, saved_with, message):
    return message


def _corrupt(m, saved_with, message):
    return message if message.lower().startswith("corrupt") else f"corrupt: {message}"


# (pattern on the error's text, category, reason builder(match, saved_with, message)); first match wins. The
# text is the error's one line with whitespace collapsed. Modules and classes that cannot be found are
# convert.adapters.diagnosis.import_failure's, asked first.
_CAUSES = (
    (r"node array from the pickle has an incompatible dtype|a tree pickled before scikit-learn 1\.3 \(old node layout\)",
     "version-drift", _node_dtype),
    (r"CRLF|line endings", "corrupt", _corrupt),
    (r"corrupt|truncated|unpickling stack underflow|invalid load key|ran out of input|unexpected end|"
     r"not a zip file|bad magic|EOFError|EOF: reading array data|damaged", "corrupt", _corrupt),
    (r"Unsupported model IR version|opset .* is under development|Opset \d+ is not supported|"
     r"onnxruntime only supports|ONNX Runtime only \*guarantees\*", "version-drift", _as_text),
)
_NEEDS_INPUT = re.compile(r"--model-class|--input\b|--signature|--state-key")


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
    if isinstance(exc, CannotLoadError):  # the adapter diagnosed it already, with the same words
        return "failed", exc.category, message
    found = import_failure(raw, saved_with, getattr(artifact, "globals", ()))
    if found:
        return "failed", found[0], found[1]
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
