"""Audit a folder of model files in one pass: what each file is, who wrote it, whether loading it would
run foreign code, and (unless ``static``) whether it still loads, converts to ONNX and computes the same.

    import compat
    report = compat.audit(["models/"], jobs=4)
    print(report.summary["safety"], report.exit_code)
    open("audit.json", "w").write(report.to_json())

Unless ``static``, every file is read in a fresh confined process of its own (``pool``, ``confine``):
the dynamic steps run with a timeout and a memory cap on every process the file starts, so a crash, a hang
or an out-of-memory costs one row, never the audit, and nothing one file does reaches another's row
(``report.workers`` counts the processes; ``report.confinement`` says which layers were in force). The time
spent importing a framework is not charged to the artifact's timeout. Without ``trust`` an artifact whose
static verdict is not ``safe`` is never loaded. A ``static`` audit runs no file's code: it is scanned in this
process, or in processes forked from it when there are many files (``static``), with the same one row per
file, whatever the scanner meets.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convert.detect import is_savedmodel
from convert.errors import BadInputError
from convert.storage import as_path, is_remote
from convert.versions import compare

from .sandbox.limits import default_jobs, default_memory
from .report import DEFAULT_TIMEOUT, STEPS, AuditReport, AuditRow, Outcome, Skipped

# ---------------------------------------------------------------------------------------------- walk


@dataclass(frozen=True)
class Entry:
    """A file (or SavedModel folder) to look at: absolute path (or URL), the root it was found under,
    relative path; for a store object, what the store said about it (``storage.ObjectInfo``)."""

    path: Path | str
    root: Path | str
    rel: str
    info: object = None


def walk(paths) -> tuple[list[Entry], list[Skipped]]:
    """Every file under ``paths`` (recursively, symlinks not followed; a SavedModel folder is one entry).
    A URL (``s3://bucket/prefix``, see ``convert.storage``) names one object or every object under a prefix.
    Raises BadInputError for a path that does not exist."""
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    seen: set = set()  # a file named twice (itself and inside a folder given too) is audited once

    def add(entry: Entry) -> None:
        if entry.path not in seen:
            seen.add(entry.path)
            entries.append(entry)

    for given in paths:
        if is_remote(given):
            for entry in walk_store(str(given)):
                add(entry)
            continue
        root = as_path(given)
        if not root.exists() and not root.is_symlink():
            raise BadInputError("no such file or directory", path=root, hint="check the path")
        if root.is_file() or is_savedmodel(root):
            add(Entry(root.resolve(), root.resolve().parent, root.name))
            continue
        base = root.resolve()
        for folder, dirs, files in os.walk(base, followlinks=False):
            here = Path(folder)
            dirs.sort()
            for d in list(dirs):
                sub = here / d
                if sub.is_symlink():
                    skipped.append(Skipped(_rel(sub, base), str(base), "symlink: not followed"))
                    dirs.remove(d)
                elif is_savedmodel(sub):
                    add(Entry(sub, base, _rel(sub, base)))
                    dirs.remove(d)
            for name in sorted(files):
                p = here / name
                rel = _rel(p, base)
                if p.is_symlink():
                    skipped.append(Skipped(rel, str(base), "symlink: not followed"))
                elif not p.is_file():
                    skipped.append(Skipped(rel, str(base), "not a regular file"))
                else:
                    add(Entry(p, base, rel))
    return entries, skipped


def _rel(p: Path, base: Path) -> str:
    return p.relative_to(base).as_posix()


def walk_store(url: str) -> list[Entry]:
    """The objects under a store URL (one object, or every object under the prefix), sorted; a prefix
    holding ``saved_model.pb`` is one SavedModel entry. Listing reads no object."""
    from convert.storage import ObjectInfo, filesystem, redact, store_errors

    fs, inner = filesystem(url)
    inner = inner.rstrip("/")
    with store_errors(url, "list it"):
        try:
            top = fs.info(inner)
        except FileNotFoundError:
            top = None
        if top is not None and top.get("type") != "directory":
            parent = fs.unstrip_protocol(posixpath.dirname(inner))
            return [Entry(fs.unstrip_protocol(inner), redact(parent), posixpath.basename(inner), ObjectInfo.of(top))]
        found = fs.find(inner, detail=True) if top is not None else {}
    if not found:
        raise BadInputError("no such object or prefix (nothing under it)", path=redact(url), hint="check the URL")
    objects = {key[len(inner) + 1:]: info for key, info in found.items()
               if key.startswith(inner + "/") and info.get("type") != "directory" and not key.endswith("/")}
    models = sorted({posixpath.dirname(rel) for rel in objects
                     if posixpath.basename(rel) in ("saved_model.pb", "saved_model.pbtxt") and "/" in rel}, key=len)
    folders: list[str] = []
    for folder in models:  # the outermost SavedModel folder is the entry; what is inside it is its files
        if not any(folder.startswith(f + "/") for f in folders):
            folders.append(folder)
    root = redact(fs.unstrip_protocol(inner))
    entries = []
    for folder in folders:
        members = {rel[len(folder) + 1:]: i for rel, i in objects.items() if rel.startswith(folder + "/")}
        entries.append(Entry(fs.unstrip_protocol(f"{inner}/{folder}"), root, folder, ObjectInfo.of_folder(members)))
    for rel, info in objects.items():
        if not any(rel.startswith(f + "/") for f in folders):
            entries.append(Entry(fs.unstrip_protocol(f"{inner}/{rel}"), root, rel, ObjectInfo.of(info)))
    return sorted(entries, key=lambda e: e.rel)


# ------------------------------------------------------------------------------------------- versions


def installed_versions() -> dict:
    """What is installed, under the keys of ``Artifact.saved_with`` (read from metadata: no imports; the ONNX
    levels, asked for by ONNX artifacts only, from onnx's release table: ``versions.onnx_levels``)."""
    from convert.versions import installed

    found = {k: installed(k) for k in ("sklearn", "torch", "keras", "tensorflow")}
    if found.get("keras"):
        found["keras_backend"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    return {k: v for k, v in found.items() if v}


def drift(saved_with: dict, installed: dict) -> dict:
    """Per library: ``same`` | ``older`` (saved with an older release than installed) | ``newer`` |
    ``supported`` (an older ONNX opset or IR version) | ``unknown`` (not comparable) | ``not installed``."""
    out = {}
    for key, saved in saved_with.items():
        if key not in _DRIFT_KEYS:
            continue
        now = installed.get(key)
        if now is None:
            out[key] = "not installed"
            continue
        if key == "keras_backend":
            out[key] = "same" if saved == now else "newer"
            continue
        way = compare(saved, now) or "unknown"
        if key in _FORMAT_LEVELS and way == "older":
            way = "supported"  # runtimes read every older opset and IR version: not drift
        out[key] = way
    return out


# ONNX opset and IR version are format levels, not releases: only a level above what is installed matters
_FORMAT_LEVELS = ("onnx_opset", "onnx_ir")
_DRIFT_KEYS = ("sklearn", "torch", "keras", "keras_backend", "tensorflow", "onnx_opset", "onnx_ir")


# ---------------------------------------------------------------------------------------------- audit


def audit(paths, *, static: bool = False, trust: bool = False, jobs: int | None = None,
          timeout: float = DEFAULT_TIMEOUT, memory: int | None = None, strict: bool = False,
          progress: Callable[[int, int, object], None] | None = None, journal=None, scheduler: str | None = None,
          cache=None) -> AuditReport:
    """Audit every artifact under ``paths`` (files, folders, or store URLs: ``s3://bucket/prefix``, ...).
    ``memory`` is bytes per file, for all the processes it starts (default: a share of the available
    memory, where the work runs); ``progress(done, total, row_or_skipped)`` is called as results come;
    ``journal`` (a path) gets one JSON line per row as it finishes, flushed, so a killed audit leaves every
    finished row on disk (see ``Journal``).

    ``scheduler``: None for this machine's pool, ``tcp://HOST:PORT`` for a running Dask cluster, ``local:N``
    for a LocalCluster of N workers (``runners``). ``cache``: a folder for the result cache
    (``compat.scale.cache``): a row whose artifact (same content hash, or same ETag, size and modification
    time in a store) was judged by the same versions with the same options is reused, not redone."""
    from convert.versions import environment, onnx_levels

    from .runners import runner

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise BadInputError("nothing to audit", hint="give one or more files or folders")
    if timeout is None or timeout <= 0:
        raise BadInputError(f"timeout must be positive, got {timeout}")
    t0 = time.perf_counter()
    jobs = jobs or default_jobs()
    if not scheduler:
        memory = memory or default_memory(jobs)
    entries, skipped = walk(paths)
    total = len(entries) + len(skipped)
    done = len(skipped)
    if progress:
        for s in skipped:
            progress(done, total, s)
    rows: list[AuditRow] = []
    installed = installed_versions()
    onnx_installed: dict | None = None
    tasks = [{"path": str(e.path), "rel": e.rel, "root": str(e.root), "static": static, "trust": trust}
             for e in entries]
    roots = [_shown(p) for p in paths]
    options = {"static": static, "trust": trust, "jobs": jobs, "timeout": timeout,
               "memory_mb": memory >> 20 if memory else None, "strict": strict}
    if scheduler:
        options["scheduler"] = _shown(scheduler)
    store = _open_cache(cache)
    with Journal(journal, roots, options) as log, runner(scheduler, jobs=jobs, timeout=timeout,
                                                         memory=memory, judging=store is not None) as work:
        for s in skipped:
            log.add(s)

        def emit(task: dict, result: dict) -> None:
            nonlocal done, onnx_installed
            done += 1
            if result.get("skip"):
                item: object = Skipped(task["rel"], task["root"], result["skip"])
                skipped.append(item)
            else:
                if result.get("format") == "onnx" and onnx_installed is None:
                    onnx_installed = onnx_levels()
                item = _row(task, result, dict(installed, **(onnx_installed or {})), static)
                rows.append(item)
            log.add(item)
            if progress:
                progress(done, total, item)

        todo = tasks
        if store is not None:
            from . import task as unit

            now = work.versions(unit.ALL_JUDGES)
            todo = []
            for task, identity in zip(tasks, _identities(entries)):
                task["identity"] = identity
                hit = store.get("audit", identity, _keyed(static, trust), now) if identity else None
                if hit is not None and _still_valid(hit, timeout, memory):
                    emit(task, hit["result"])
                else:
                    todo.append(task)
        for task, result in work.run(todo):
            judged = result.pop("judged_by", None)
            if store is not None:
                _store(store, task, result, judged, static, trust, timeout, memory)
            emit(task, result)
        workers = dict(work.stats(), cached=len(tasks) - len(todo)) if store is not None else work.stats()
        confinement = work.confinement()
        rows.sort(key=lambda r: (r.root, r.path))
        skipped.sort(key=lambda s: (s.root, s.path))
        report = AuditReport(roots, rows, skipped, options, environment(), time.perf_counter() - t0,
                             workers=workers, confinement=confinement,
                             cache=store.describe() if store is not None else {})
        log.end(report)
    if store is not None:
        store.close()
    if any(is_remote(t["path"]) for t in tasks):  # copies a killed run's workers left, once they are surely gone
        from convert.storage import sweep

        sweep("modelport-fetch-", again=True)
    return report


def _shown(path) -> str:
    from convert.storage import redact

    return redact(str(path))


def _open_cache(folder):
    if not folder:
        return None
    from ..scale.cache import ResultCache

    try:
        return ResultCache(folder)
    except (OSError, Exception) as exc:  # noqa: BLE001 -- sqlite3 and filesystem errors alike
        raise BadInputError(f"cannot use the result cache: {exc}", path=str(folder),
                            hint="give another folder with --cache, or --no-cache") from None


def _keyed(static: bool, trust: bool) -> dict:
    return {"static": bool(static), "trust": bool(trust)}


def _identities(entries: list[Entry]) -> list[str | None]:
    """What the cache keys each entry by: the store's identity for an object (no read), the content hash of a
    local file or folder (read here, several files at once)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..scale.cache import content_digest

    def one(entry: Entry) -> str | None:
        if entry.info is not None:
            return entry.info.identity
        try:
            return content_digest(entry.path)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, entries))


# step statuses that depend on the limits: a row that hit them is reused only under limits no larger
_LIMITED = {"timeout": "timeout", "out-of-memory": "memory"}


def _statuses(result: dict) -> set:
    return {o.get("status") for o in (result.get(s) for s in STEPS) if isinstance(o, dict)} | {result.get("lost")}


def _still_valid(hit: dict, timeout: float, memory: int | None) -> bool:
    result, limits = hit.get("result"), hit.get("limits") or {}
    if not isinstance(result, dict):
        return False
    statuses = _statuses(result)
    if "timeout" in statuses and not timeout <= (limits.get("timeout") or 0):
        return False
    return not ("out-of-memory" in statuses and (memory is None or limits.get("memory") is None
                                                 or memory > limits["memory"]))


def _store(store, task: dict, result: dict, judged: dict | None, static: bool, trust: bool, timeout: float,
           memory: int | None) -> None:
    """Keep a result for the next run, unless it says nothing lasting (a crashed or lost process, an object
    that could not be read) or the artifact changed while it was judged."""
    if not judged or "crashed" in _statuses(result) or result.get("lost") in ("crashed", "unreachable"):
        return
    identity = task.get("identity")
    if result.get("identity"):  # a store object: what the store said when it was opened
        identity = result["identity"]
    elif identity and identity.startswith("sha256:") and result.get("sha256"):
        if identity != "sha256:" + result["sha256"]:
            return  # the file changed between hashing it here and judging it
    elif identity:
        from ..scale.cache import content_digest

        try:
            if content_digest(task["path"]) != identity:
                return
        except OSError:
            return
    if not identity:
        return
    kept = {k: v for k, v in result.items() if k not in ("identity", "in_process", "fetch_seconds")}
    store.put("audit", identity, _keyed(static, trust), judged,
              {"result": kept, "limits": {"timeout": timeout, "memory": memory}})


JOURNAL_SCHEMA = "modelport.audit-rows/1"


class Journal:
    """JSON Lines written as the audit goes: a header (``schema``, ``roots``, ``options``), then one line
    per finished file (``{"artifact": row}`` or ``{"skipped": ...}``), each flushed at once, and a last
    ``{"summary": ..., "exit_code": ...}`` line when the audit ends. A reader of a killed audit's journal
    has every row that finished; the absence of the last line says the audit did not."""

    def __init__(self, path, roots: list[str], options: dict):
        try:
            self.fh = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115 -- closed in __exit__
        except OSError as exc:
            from convert.atomic import unwritable

            raise unwritable(path, exc) from None
        self._line({"schema": JOURNAL_SCHEMA, "roots": roots, "options": options})

    def _line(self, obj: dict) -> None:
        if self.fh is not None:
            import json

            self.fh.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
            self.fh.flush()

    def add(self, item) -> None:
        self._line({"artifact" if isinstance(item, AuditRow) else "skipped": item.to_dict()})

    def end(self, report: "AuditReport") -> None:
        self._line({"summary": report.summary, "exit_code": report.exit_code, "confinement": report.confinement})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()


def _row(task: dict, result: dict, installed: dict, static: bool) -> AuditRow:
    saved = result.get("saved_with", {})
    relevant = {k: v for k, v in installed.items() if k in saved}
    row = AuditRow(
        path=task["rel"], root=task["root"], format=result.get("format"), framework=result.get("framework"),
        size=result.get("size", 0), sha256=result.get("sha256", ""), saved_with=saved, installed=relevant,
        drift=drift(saved, installed), safety=result.get("safety", "unknown"), findings=result.get("findings", []),
        flagged=result.get("flagged", []), seconds=result.get("seconds", 0.0), peak_rss_mb=result.get("peak_rss_mb"))
    if not static:
        for step in STEPS:
            o = result.get(step)
            setattr(row, step, Outcome.from_dict(o) if o else Outcome("skipped", "not reached"))
    return row
