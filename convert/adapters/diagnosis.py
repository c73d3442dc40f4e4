"""Why a model file does not load here, said once: an adapter's error (``modelport convert``) and an audit's
row (``compat.audits.diagnose``) use these same words and categories.

Categories: ``version-drift`` (a module path or data layout the installed release no longer reads, or a file
written by a newer release), ``missing-class`` (a class the file needs that is not importable here: defined
by the script that saved it, e.g. ``__main__.Foo``, or in a module of the user's project that is not
installed), ``corrupt`` (the bytes were mangled, e.g. by a line-ending conversion).

Each reason names what the file needs, the release that saved it and the release installed, and ends with
what to do. It reads the static facts (``Artifact.saved_with``, the globals the scan saw) and the error's
text; it imports nothing the file names (finding a framework submodule imports only library code).
"""

from __future__ import annotations

import importlib.util
import re

from .. import versions
from ..versions import direction

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


def _top_level_found(top: str) -> bool:
    """Is a top-level module of that name importable here? Located, never imported."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _pinnable(saved: str | None) -> bool:
    return bool(saved) and re.fullmatch(r"\d+(\.\d+)+", saved) is not None


def saved_phrase(saved: str) -> str:
    return f"a release {saved}" if saved.startswith("before ") else saved


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


def drift_reason(module: str, needs: str, saved_with: dict | None) -> str:
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
        text += f" (saved with {saved_phrase(saved)}{why})"
    return f"{text}; {advice(top, saved, installed)}"


def main_reason(qualname: str, name: str) -> str:
    return (f"needs {qualname}, a class defined by the script that saved it: define or import {name} in the "
            "script that loads it, or re-save it with the class in an importable module")


def not_installed_reason(module: str, needs: str | None = None) -> str:
    """A module of the user's project (or a library modelport does not know) that is not importable here."""
    top = module.split(".", 1)[0]
    what = needs or f"module {module}"
    return (f"needs {what}, but no module {top} is installed here: install the package that provides it, or run "
            f"where {top} is importable (PYTHONPATH)")


def old_tree_layout_reason(saved_with: dict | None) -> str:
    saved = (saved_with or {}).get("sklearn")
    installed = versions.installed("sklearn")
    when = f"saved with {saved_phrase(saved)}; " if saved else ""
    return (f"a tree pickled before scikit-learn 1.3 ({when}node layout without missing_go_to_left), which "
            f"scikit-learn 1.3 and later{f' ({installed} here)' if installed else ''} cannot read: "
            + advice("sklearn", saved, installed))


def global_problem(module: str, name: str, saved_with: dict) -> tuple[str, str] | None:
    """(category, reason) when a global cannot resolve here for a known reason, else None."""
    if module == "__main__" or module.startswith("__main__."):
        return "missing-class", main_reason(f"{module}.{name}", name)
    top = module.split(".", 1)[0]
    exists = module_exists(module)
    if exists is False:
        return "version-drift", drift_reason(module, f"module {module} (for {name})", saved_with)
    if exists is None and top not in FRAMEWORKS and not _top_level_found(top):
        return "missing-class", not_installed_reason(module, f"{module}.{name}")
    return None


# --------------------------------------------------------------------------------- errors of unpickling

# a module name ending in a carriage return (the import error shows it escaped, as \r): the file went
# through a LF -> CRLF conversion
_CRLF_MODULE = re.compile(r"No module named '([\w.]+)(?:\\r|\r)'")
_MISSING_ATTRIBUTE = re.compile(r"Can't get attribute '([\w.]+)' on <module '([\w.]+)'")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def crlf_reason(module: str) -> str:
    return (f"corrupt: the pickle names module {module!r} with a carriage return: its line endings were "
            "converted (LF became CRLF: a text-mode copy or git autocrlf); restore the original bytes")


def import_failure(text: str, saved_with: dict | None = None, globals_=()) -> tuple[str, str] | None:
    """(category, reason) for the text of an error unpickling raised when a module or class it names cannot
    be found, or None when the text names none. ``globals_`` (the static scan's GlobalRefs) lets the reason
    name the class a missing module was needed for, and the classes the file takes from ``__main__``."""
    crlf = _CRLF_MODULE.search(text)
    if crlf:
        return "corrupt", crlf_reason(crlf.group(1))
    flat = " ".join(text.split())
    main_names = {g.name for g in globals_ if g.module == "__main__" or g.module.startswith("__main__.")}
    missing = _MISSING_ATTRIBUTE.search(flat)
    if missing:
        name, module = missing.groups()
        # pickle looks __main__'s classes up on whatever module ran the load: the scan says where they came from
        if module == "__main__" or name in main_names:
            return "missing-class", main_reason(f"__main__.{name}", name)
        if module.split(".", 1)[0] in FRAMEWORKS:
            return "version-drift", drift_reason(module, f"{module}.{name}", saved_with)
        return "missing-class", (f"needs {module}.{name}, which the installed module {module} does not define: "
                                 f"use the version of {module.split('.', 1)[0]} the file was saved with")
    gone = _NO_MODULE.search(flat)
    if gone:
        module = gone.group(1)
        if module.split(".", 1)[0] in FRAMEWORKS:
            return "version-drift", drift_reason(module, f"module {module}", saved_with)
        wanted = [f"{g.module}.{g.name}" for g in globals_
                  if g.module == module or g.module.startswith(module + ".")]
        needs = ", ".join(wanted[:3]) + (" ..." if len(wanted) > 3 else "") if wanted else None
        return "missing-class", not_installed_reason(module, needs)
    return None
