"""Unpickling through the safety gate.

The static scan decides first: a file whose verdict is not ``safe`` is refused unless the user trusts
it. Then, as defence in depth, the unpickler itself only resolves allowlisted globals (a scanner bug or
a parser differential cannot smuggle a callable through). ``trust=True`` lifts both.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from .artifact import Artifact
from .errors import BadInputError, UnsafeArtifactError
from .pickles import is_allowed


def check_gate(artifact: Artifact, trust: bool) -> None:
    """Raise unless loading this artifact's pickles is allowed."""
    corrupt = artifact.details.get("corrupt")
    if corrupt and (trust or artifact.safety != "unsafe"):  # what a broken stream imports still decides first
        raise BadInputError(f"corrupt or truncated file: {corrupt}", path=artifact.path,
                            hint="restore it from the original source; nothing was loaded")
    if artifact.safety == "safe" or trust:
        return
    flagged = [g for g in artifact.globals if g.verdict != "safe"]
    if flagged:
        listed = ", ".join(g.qualname for g in flagged[:5]) + (" ..." if len(flagged) > 5 else "")
        what = f"{artifact.safety}: unpickling would import {listed}"
    else:
        reasons = [f.what for f in artifact.findings if f.severity != "info"][:2]
        what = f"{artifact.safety}: " + ("; ".join(reasons) if reasons else "the static scan could not vouch for it")
    raise UnsafeArtifactError(
        what, path=artifact.path, findings=artifact.findings,
        hint="inspect it with `modelport inspect`; pass --trust only if you trust whoever wrote it",
    )


class _Refused(Exception):
    pass


def _restricted(base):
    """A subclass of unpickler ``base`` whose find_class only resolves allowlisted globals."""
    class Restricted(base):
        def find_class(self, module, name):
            if not is_allowed(module, name):
                raise _Refused(f"{module}.{name}")
            return super().find_class(module, name)

    return Restricted


def load_pickle(artifact: Artifact, trust: bool = False):
    """Load a pickle or joblib file. Raises UnsafeArtifactError / BadInputError with one-line reasons."""
    check_gate(artifact, trust)
    path = Path(artifact.path)
    try:
        if artifact.format == "joblib" or artifact.compression:
            return _load_joblib(path, trust)
        with open(path, "rb") as fh:
            if trust:
                return pickle.load(fh)
            return _restricted(pickle.Unpickler)(fh).load()
    except _Refused as exc:
        raise UnsafeArtifactError(
            f"unpickling tried to import {exc}, which the allowlist does not hold",
            path=path, hint="pass --trust only if you trust whoever wrote it",
        ) from None


def _load_joblib(path: Path, trust: bool):
    import joblib

    if trust:
        return joblib.load(path)
    from joblib import numpy_pickle as npk

    validate = getattr(npk, "_validate_fileobject_and_memmap", None)
    unpickler = getattr(npk, "NumpyUnpickler", None)
    if validate is None or unpickler is None:  # a joblib without these internals: the static gate stands alone
        return joblib.load(path)
    with open(path, "rb") as raw, validate(raw, str(path), None) as (fobj, _):
        if isinstance(fobj, str):  # joblib < 0.10 companion-file format
            raise BadInputError("written by joblib < 0.10 (companion .npy files)", path=path,
                                hint="load it with --trust, then re-save it with a current joblib")
        return _restricted(unpickler)(str(path), fobj, True).load()
