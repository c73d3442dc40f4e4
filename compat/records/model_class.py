"""Which model class a record's replay may construct, and where its code comes from.

A record is data. It may name the class a torch state dict needs, but ``verify``, ``matrix`` and the pytest
plugin import nothing a record names unless the user trusts the record (``--trust``): the class comes from
the user (``--model-class``, the plugin's configuration) or, under trust, from the record. Nothing here
imports or calls anything; it only decides which spec the adapter gets (the adapter then refuses whatever is
not the framework's model class before calling it).

A file-based class is stored relative to the record's folder, with the sha256 of its source: a record made
in ``proj/ci/`` naming ``../nets.py:Net`` verifies from any folder, and a model source edited since the
record is reported like a changed artifact, not passed silently.

The record's ``model_args`` are used with a class the user gave (unless the user gives ``--model-args``):
they are JSON (numbers, strings, lists, objects), which cannot name code, and they only reach a constructor
the user chose, after the adapter checked it is the framework's model type.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from convert import ClassSpec
from convert.errors import BadInputError, ModelClassError

SHA_KEY = "model_class_sha256"  # next to "model_class" in a record's hints: the source file's sha256


@dataclass(frozen=True)
class Chosen:
    """The class a replay constructs (``spec`` None: none needed), as the adapter takes it: a file path
    made absolute, or a module spec. ``changed`` says how its source differs from the record's."""

    spec: str | None = None
    args: dict = field(default_factory=dict)
    origin: str = "none"  # "user" | "record" | "none"
    changed: str | None = None


class RecordNamesCode(BadInputError):
    """A record names a model class, and the caller neither named one nor trusts the record (exit 2).
    ``suggestion`` is the record's class as the caller could pass it from the current folder."""

    def __init__(self, record: Path, named: str, suggestion: str):
        self.record, self.named, self.suggestion = record, named, suggestion
        super().__init__(f"names the model class {named}; a record is data, so modelport imports no code it names",
                         path=record, hint=f"pass --model-class {suggestion} to name the class yourself, or "
                                           "--trust if you trust whoever wrote the record")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _absolute(where: str, base: Path) -> Path:
    path = Path(where).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def stored(spec: str | None, record_path: Path, cwd: Path | None = None) -> dict:
    """The record's entry for the class the user named at record time: a file path relative to the record's
    folder (``cwd`` is what the user's path was relative to) plus the source's sha256; a module as given."""
    if not spec:
        return {"model_class": None}
    parsed = ClassSpec.parse(spec)
    if not parsed.is_file:
        return {"model_class": str(parsed)}
    source = _absolute(parsed.where, Path(cwd or os.getcwd()))
    folder = Path(record_path).resolve().parent
    try:
        rel = os.path.relpath(source, folder).replace(os.sep, "/")
    except ValueError:  # another drive (Windows): only an absolute path can say where it is
        rel = str(source)
    if "/" not in rel and not rel.endswith(".py"):
        rel = "./" + rel  # stays a path when read back, not a module name
    return {"model_class": str(parsed.with_where(rel)),
            SHA_KEY: file_sha256(source) if source.is_file() else None}


def choose(entry: dict, record_path: Path, *, model_class: str | None = None, model_args: dict | None = None,
           trust: bool = False, cwd: Path | None = None) -> Chosen:
    """The class to construct for a record whose hints are ``entry``. ``model_class`` (the user's; a file path
    relative to ``cwd``) wins; without it, the record's own class only under ``trust``, else RecordNamesCode.
    A file that is not there is bad input (exit 2) naming the resolved path and the record."""
    record_path = Path(record_path)
    cwd = Path(cwd or os.getcwd())
    named = entry.get("model_class")
    recorded_args = entry.get("model_args") or {}
    if (named is not None and not isinstance(named, str)) or not isinstance(recorded_args, dict):
        raise BadInputError("corrupt record: its model class entry is not a string and an object of arguments",
                            path=record_path, hint="re-create it with `modelport record`")
    args = dict(model_args) if model_args is not None else dict(recorded_args)
    folder = record_path.resolve().parent
    recorded = _recorded_file(named, folder)
    if model_class:
        parsed = ClassSpec.parse(model_class)
        if not parsed.is_file:
            return Chosen(str(parsed), args, "user")
        path = _absolute(parsed.where, cwd)
        if not path.is_file():
            raise ModelClassError(f"the --model-class file is not there: {path}", path=record_path,
                                  hint="give a path relative to the current folder, or pkg.module:Class")
        changed = _changed(path, entry.get(SHA_KEY)) if recorded == path else None
        return Chosen(str(parsed.with_where(str(path))), args, "user", changed)
    if not named:
        return Chosen(None, args, "none")
    if not trust:
        raise RecordNamesCode(record_path, named, _suggestion(named, folder, cwd))
    parsed = ClassSpec.parse(named)
    if recorded is None:
        return Chosen(str(parsed), args, "record")
    if not recorded.is_file():
        raise ModelClassError(f"the model class file the record names is not there: {recorded} (stored as "
                              f"{parsed.where})", path=record_path,
                              hint="keep the model's source beside the record as when it was made, or pass "
                                   "--model-class path/to/file.py:Class")
    return Chosen(str(parsed.with_where(str(recorded))), args, "record", _changed(recorded, entry.get(SHA_KEY)))


def _recorded_file(named: str | None, folder: Path) -> Path | None:
    """The file a record's class lives in, resolved against the record's folder (None: a module spec)."""
    if not named:
        return None
    try:
        parsed = ClassSpec.parse(named)
    except ModelClassError:
        return None
    return _absolute(parsed.where, folder) if parsed.is_file else None


def _changed(path: Path, sha: str | None) -> str | None:
    if not sha or file_sha256(path) == sha:
        return None
    return f"model class source changed since record: {path}"


def _suggestion(named: str, folder: Path, cwd: Path) -> str:
    """The record's class spelled for --model-class from ``cwd`` (a file path relative to it)."""
    try:
        parsed = ClassSpec.parse(named)
    except ModelClassError:
        return named
    if not parsed.is_file:
        return named
    path = _absolute(parsed.where, folder)
    try:
        rel = os.path.relpath(path, cwd)
    except ValueError:
        rel = str(path)
    return str(parsed.with_where(rel if "/" in rel or rel.endswith(".py") else "./" + rel))


__all__ = ["Chosen", "RecordNamesCode", "choose", "stored"]
