"""Pickles written by older scikit-learn releases, loaded as today's objects, with every change listed.

The static scan and the gate decide first, exactly as for any pickle. Then an unpickler restricted to the same
allowlist reads the file, and where a name no longer resolves it follows the history table the scanner uses
(``convert/scan/legacy_names.json``, through ``convert.scan.legacy_name``): a name only ever maps onto another
allowlisted name, so migrating never widens what may be imported. Objects whose stored layout today's classes no
longer read are rewritten as they are rebuilt (``legacy_state.LAYOUTS``: tree node arrays, binary trees), and
after loading, each estimator's state is brought forward (``legacy_state.repair``: renamed attributes, parameters
added since, values derived from the fitted arrays, objects rebuilt from their owner's parameters).

What a file names that nothing here provides (a class of the script that saved it, a library not installed, a
private class scikit-learn removed) is held as an inert :class:`Missing` record, never called; a repair rule may
rebuild it from its owner, and any record left over fails the load naming exactly which class from which module
is missing, and where in the model it sits.

Also read: Python 2 pickles (their ``str`` opcodes decoded as latin-1, as numpy's buffers need), joblib < 0.10
files (the ``ZF`` container and companion ``.npy``/``.z`` files beside the pickle, read without pickles), and
pickles whose line endings a text-mode copy converted (read with CRLF restored, the bytes the scan read to
their end).
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
from pathlib import Path

from ....artifact import Artifact
from ....errors import BadInputError, MissingCodeError, UnsafeArtifactError
from ....scan.policy import is_allowed, legacy_name

from .changes import Change, Migration, Missing, find_missing, missing_class, walk  # noqa: F401 -- the loader's face


class _Refused(Exception):
    pass


# --------------------------------------------------------------------------------------------- loading


def load(artifact: Artifact, trust: bool = False):
    """(object, Migration) for a pickle or joblib file that passed the gate (the caller applies it)."""
    from . import state as legacy_state

    migration = Migration()
    path = Path(artifact.path)
    try:
        obj = _unpickle(artifact, path, trust, migration)
    except _Refused as exc:
        raise UnsafeArtifactError(f"unpickling tried to import {exc}, which the allowlist does not hold",
                                  path=path, hint="pass --trust only if you trust whoever wrote it") from None
    legacy_state.repair(obj, migration, artifact.saved_with.get("sklearn"))
    missing = list(find_missing(obj))
    if missing:
        raise missing_error(artifact, missing)
    return obj, migration


def _unpickle(artifact: Artifact, path: Path, trust: bool, migration: Migration):
    if artifact.details.get("corrupt_cause"):  # inspect found the damage to be a line-ending conversion
        from ....scan.source import CRLFRestored

        with open(path, "rb") as raw:
            data = _read_all(CRLFRestored(raw))
        migration.add("container", "line endings restored (every CRLF read back as LF: the file went through a "
                                   "text-mode copy)")
        return _run(path, io.BytesIO(data), trust, migration)
    if artifact.compression == "zfile":
        from joblib.numpy_pickle_compat import read_zfile

        with open(path, "rb") as raw:
            data = read_zfile(raw)
        migration.add("container", "joblib < 0.10 ZF container read", "joblib 0.10")
        return _run(path, io.BytesIO(data), trust, migration)
    if artifact.compression:
        from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

        with open(path, "rb") as raw, _validate_fileobject_and_memmap(raw, str(path), None) as (fobj, _):
            return _run(path, fobj, trust, migration)
    with open(path, "rb") as fh:
        return _run(path, fh, trust, migration)


def _read_all(stream) -> bytes:
    parts = []
    while chunk := stream.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _run(path: Path, fobj, trust: bool, migration: Migration):
    cls = _migrating_unpickler()
    params = inspect.signature(cls.__bases__[0].__init__).parameters
    extra = (True,) if "ensure_native_byte_order" in params else ()
    unpickler = cls(str(path), fobj, *extra)
    unpickler.setup(trust, migration, extra)
    return unpickler.load()


_UNPICKLER = None
_PY2_STRINGS = (pickle.STRING, pickle.BINSTRING, pickle.SHORT_BINSTRING)


def _migrating_unpickler():
    """joblib's NumpyUnpickler (the pure-Python unpickler: its BUILD can be seen), restricted and migrating."""
    global _UNPICKLER
    if _UNPICKLER is not None:
        return _UNPICKLER
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
    from joblib.numpy_pickle_compat import NDArrayWrapper, ZNDArrayWrapper

    from . import state as legacy_state

    base_build = NumpyUnpickler.dispatch[pickle.BUILD[0]]

    class Migrating(NumpyUnpickler):
        dispatch = dict(NumpyUnpickler.dispatch)

        def setup(self, trust: bool, migration: Migration, extra: tuple) -> None:
            self.trust, self.migration, self.extra = trust, migration, extra
            self.encoding, self.errors = "latin1", "strict"  # Python 2 str: numpy buffers, read byte for byte
            self.py2_strings = False

        def find_class(self, module, name):
            if not self.trust and not is_allowed(module, name):
                raise _Refused(f"{module}.{name}")
            try:
                found = super().find_class(module, name)
            except (ImportError, AttributeError):
                found = None
            if found is None:
                found = self.migrate_name(module, name)
            adapt = legacy_state.CONSTRUCTORS.get(_qualname(found))
            return adapt(found, self.migration) if adapt else found

        def migrate_name(self, module, name):
            target = legacy_name(module, name)
            if target is not None and not target.removed:
                if not is_allowed(target.module, target.name):  # the table never widens the allowlist
                    raise _Refused(f"{target.module}.{target.name} (for {module}.{name})")
                try:
                    found = super().find_class(target.module, target.name)
                except (ImportError, AttributeError):
                    found = None
                if found is not None:
                    self.migration.add("name", f"{module}.{name} -> {target.module}.{target.name}", target.since)
                    return found
            return missing_class(module, name, target.since if target is not None and target.removed else "")

        def load_build(self):
            state, inst = self.stack[-1], self.stack[-2]
            rewrite = legacy_state.LAYOUTS.get(_qualname(type(inst)))
            if rewrite is not None:
                self.stack[-1] = rewrite(inst, state, self.migration)
            if isinstance(inst, NumpyArrayWrapper) and isinstance(state, dict) \
                    and getattr(state.get("dtype"), "hasobject", False):
                # an object array is a pickle nested in the stream: read by this same migrating unpickler's kind
                pickle._Unpickler.load_build(self)
                self.stack.pop()
                inner = type(self)(self.filename, self.file_handle, *self.extra)
                inner.setup(self.trust, self.migration, self.extra)
                self.stack.append(inner.load())
                return
            if isinstance(inst, NDArrayWrapper):
                pickle._Unpickler.load_build(self)
                wrapper = self.stack.pop()
                self.stack.append(_companion(self._dirname, wrapper, isinstance(wrapper, ZNDArrayWrapper)))
                if not getattr(self, "_noted_companions", False):
                    self._noted_companions = True
                    self.migration.add("container", "joblib < 0.10 companion array files read beside the pickle",
                                       "joblib 0.10")
                return
            base_build(self)

        def py2_string(self, opcode):
            if not self.py2_strings:
                self.py2_strings = self.migration.python2 = True
                self.migration.add("encoding", "Python 2 strings decoded as latin-1 (numpy buffers byte for byte)")
            NumpyUnpickler.dispatch[opcode](self)

    Migrating.dispatch[pickle.BUILD[0]] = Migrating.load_build
    for op in _PY2_STRINGS:
        Migrating.dispatch[op[0]] = (lambda code: lambda self: Migrating.py2_string(self, code))(op[0])
    _UNPICKLER = Migrating
    return Migrating


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def _companion(folder: str, wrapper, compressed: bool):
    """The array a joblib < 0.10 wrapper names, read from its file beside the pickle: only a plain file name in
    that folder, and never a pickle (``allow_pickle=False``; the scan read the same files)."""
    import numpy as np

    name = getattr(wrapper, "filename", None)
    if type(name) is not str or not name or os.path.basename(name) != name or name in (".", ".."):
        raise BadInputError(f"a joblib companion file name points elsewhere: {name!r}")
    target = Path(folder) / name
    if not target.is_file():
        raise BadInputError(f"needs its joblib companion file {name}, which is not beside it",
                            path=Path(folder), hint="copy the pickle's _NN.npy files next to it")
    if not compressed:
        array = np.load(target, allow_pickle=False)
        return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
    from joblib.numpy_pickle_compat import read_zfile

    init_args, state = wrapper.init_args, wrapper.state
    if len(init_args) != 3 or init_args[0] is not np.ndarray or len(state) != 4 or state[3] is not False:
        raise BadInputError(f"joblib companion {name}: an array layout modelport does not read")
    with open(target, "rb") as fh:
        data = read_zfile(fh)
    return np.frombuffer(data, dtype=state[2]).reshape(state[1]).copy()


# ------------------------------------------------------------------------------------ what is missing


def missing_error(artifact: Artifact, missing: list) -> MissingCodeError:
    """One line naming each missing class, its module and where it sits: the script's own classes are never
    blamed on a library's version."""
    from .... import versions

    parts, hints = [], []
    for qualname, where, removed in missing[:4]:
        module, _, name = qualname.rpartition(".")
        top = module.split(".", 1)[0]
        installed = versions.installed(top) if top else None
        if top == "__main__":
            parts.append(f"{qualname} (in {where}), a class defined by the script that saved it")
            hints.append(f"define or import {name} where it is loaded, or re-save it with the class in an "
                         "importable module")
        elif installed is None:
            parts.append(f"{qualname} (in {where}): module {top} is not installed here")
            hints.append(f"install {top}")
        else:
            gone = f"removed in {removed}" if removed else "renamed or removed"
            parts.append(f"{qualname} (in {where}), which {versions.dist_name(top)} {installed} does not have "
                         f"({gone}) and modelport cannot rebuild")
    more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
    saved = artifact.saved_with.get("sklearn")
    if not hints:
        hints.append(f"convert it where scikit-learn {saved} is installed" if saved and saved[:1].isdigit()
                     else "convert it with the scikit-learn release that saved it")
    return MissingCodeError("needs " + "; ".join(parts) + more, missing, path=artifact.path,
                            hint="; ".join(dict.fromkeys(hints)))
