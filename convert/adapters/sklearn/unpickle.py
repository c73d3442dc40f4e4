"""Pickle and joblib files unpickled through the safety gate (the sklearn adapter's formats).

The static scan decides first: a file whose verdict is not ``safe`` is refused unless the user trusts
it. Then, as defence in depth, the unpickler itself only resolves allowlisted globals (a scanner bug or
a parser differential cannot smuggle a callable through). ``trust=True`` lifts both. Files another release
wrote go through ``load_migrating`` (the same gate and allowlist, plus the history of names and state).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ...artifact import Artifact
from ...errors import BadInputError, UnsafeArtifactError
from ...formats import gate, restorable
from ...scan import is_allowed


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
    gate(artifact, trust)
    if restorable(artifact):  # only the migrating loader reads the bytes with their line endings restored
        return load_migrating(artifact, trust)[0]
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


def load_migrating(artifact: Artifact, trust: bool = False):
    """(object, Migration): a file written by another scikit-learn release, through the same gate, read by the
    migrating unpickler (restricted to the same allowlist; see ``migrate``)."""
    from .rescue import migrate

    gate(artifact, trust)
    return migrate.load(artifact, trust)
