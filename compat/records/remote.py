"""Records in a store (``s3://ci/records/churn.mprec``), and what a record names.

A record refers to its artifacts by paths relative to its own folder (``../models/churn.joblib``), and may
name a model class file the same way. ``local_record(url)`` copies the record and every file it names into
a private temporary folder, keeping those relative paths, so the replay reads them exactly as it would
beside the record; ``identity(path)`` is what the result cache keys a replay by: the record's content and
the content of every file it names (the store's ETag, size and date for objects; no download).
"""

from __future__ import annotations

import json
import posixpath
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

from convert import ClassSpec
from convert.errors import BadInputError, ModelClassError
from convert.storage import RemotePath, as_path, fetch, private_folder, readable, redact, store_errors


def manifest_of(path) -> dict:
    """The manifest of a record (local, or in a store: read with ranged requests)."""
    path = as_path(path)
    try:
        with zipfile.ZipFile(readable(path)) as zf:
            info = zf.getinfo("manifest.json")
            if info.file_size > 64 << 20:
                raise BadInputError("record manifest is implausibly large", path=str(path))
            manifest = json.loads(zf.read(info))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise BadInputError(f"not a readable modelport record ({type(exc).__name__})", path=str(path)) from None
    if not isinstance(manifest, dict):
        raise BadInputError("not a modelport record (its manifest is not an object)", path=str(path))
    return manifest


def named_files(manifest: dict) -> list[str]:
    """The paths (relative to the record's folder, or absolute) of the files a record names: its native
    artifact, its ONNX file when not embedded, and a model class file."""
    names = []
    for key in ("native", "onnx"):
        entry = manifest.get(key) or {}
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and not entry.get("embedded"):
            names.append(entry["path"])
    named = (manifest.get("hints") or {}).get("model_class")
    if isinstance(named, str):
        try:
            spec = ClassSpec.parse(named)
        except ModelClassError:
            spec = None
        if spec is not None and spec.is_file:
            names.append(spec.where)
    return names


def identity(path, model_class: str | None = None, trust: bool = False) -> str | None:
    """What a replay of this record is keyed by: the record and every file it names, by content hash (local)
    or the store's ETag, size and date, and the model class file given (``model_class``). None when the
    replay would import a module by name (``pkg.module:Class``): its code can change unseen, so its
    result is never reused."""
    from ..scale.cache import content_digest

    path = as_path(path)
    parts = []
    manifest = manifest_of(path)
    named = (manifest.get("hints") or {}).get("model_class")
    for spec, used in ((model_class, True), (named, trust and not model_class)):
        if used and isinstance(spec, str) and spec:
            try:
                parsed = ClassSpec.parse(spec)
            except ModelClassError:
                return None
            if not parsed.is_file:
                return None
            if spec is model_class:
                given = Path(parsed.where).expanduser().resolve()
                parts.append(f"model_class={given}:{content_digest(given) if given.is_file() else 'missing'}")
    if isinstance(path, RemotePath):
        parts.append(path.object_info().identity)
        for rel in named_files(manifest):
            target = _join(path, rel)
            try:
                parts.append(f"{rel}={target.fresh().object_info().identity}")
            except BadInputError:
                parts.append(f"{rel}=missing")
    else:
        parts.append(content_digest(path))
        base = Path(path).resolve().parent
        for rel in named_files(manifest):
            target = (base / rel).resolve()
            parts.append(f"{rel}={content_digest(target) if target.exists() else 'missing'}")
    return "\n".join(parts)


def _join(record: RemotePath, rel: str) -> RemotePath:
    inner = posixpath.normpath(posixpath.join(posixpath.dirname(record.inner), rel))
    return RemotePath(record.fs.unstrip_protocol(inner), record.fs, inner)


@contextmanager
def local_record(path):
    """A local path for the record ``path``: itself when local; for a store object, a private copy of the
    record with the files it names at the same relative paths (removed afterwards)."""
    path = as_path(path)
    if not isinstance(path, RemotePath):
        yield path
        return
    folder = private_folder("modelport-record-")
    try:
        names = named_files(manifest_of(path))
        if any(rel.startswith("/") for rel in names):
            raise BadInputError("a record in a store names a file by an absolute path", path=str(path),
                                hint="re-create the record with its artifacts beside it")
        depth = max((len(_ups(rel)) for rel in names), default=0)
        base = folder.joinpath(*[f"up{i}" for i in range(depth)])  # room for ``../`` paths, inside the folder
        base.mkdir(parents=True, exist_ok=True)
        local = fetch(path, base)
        for rel in names:
            target = (base / rel).resolve()
            if not str(target).startswith(str(folder.resolve()) + "/"):
                raise BadInputError(f"the record names a file outside any folder it could share: {rel}",
                                    path=str(path))
            source = _join(path, rel)
            if not source.exists():
                continue  # the replay reports the missing artifact, as for a local record
            target.parent.mkdir(parents=True, exist_ok=True)
            with store_errors(source.url, "download it"):
                fetched = fetch(source, target.parent)
            if fetched.name != target.name:
                fetched.rename(target)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ups(rel: str) -> list[str]:
    parts = posixpath.normpath(rel).split("/")
    return [p for p in parts if p == ".."]


def shown(path) -> str:
    return redact(str(path))
