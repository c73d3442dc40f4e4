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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from convert.detect import is_savedmodel
from convert.errors import BadInputError
from convert.versions import compare

from .report import DEFAULT_TIMEOUT, STEPS, AuditReport, AuditRow, Outcome, Skipped

# ---------------------------------------------------------------------------------------------- walk


@dataclass(frozen=True)
class Entry:
    """A file (or SavedModel folder) to look at: absolute path, the root it was found under, relative path."""

    path: Path
    root: Path
    rel: str


def walk(paths) -> tuple[list[Entry], list[Skipped]]:
    """Every file under ``paths`` (recursively, symlinks not followed; a SavedModel folder is one entry).
    Raises BadInputError for a path that does not exist."""
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()  # a file named twice (itself and inside a folder given too) is audited once

    def add(entry: Entry) -> None:
        if entry.path not in seen:
            seen.add(entry.path)
            entries.append(entry)

    for given in paths:
        root = Path(given)
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


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_memory(jobs: int) -> int:
    """Bytes per worker: 80% of the available memory shared by the workers, between 1 and 8 GiB."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        return 4 << 30
    return int(min(8 << 30, max(1 << 30, available * 0.8 / max(jobs, 1))))


def audit(paths, *, static: bool = False, trust: bool = False, jobs: int | None = None,
          timeout: float = DEFAULT_TIMEOUT, memory: int | None = None, strict: bool = False,
          progress: Callable[[int, int, object], None] | None = None, journal=None) -> AuditReport:
    """Audit every artifact under ``paths`` (files or folders). ``memory`` is bytes per file, for all the
    processes it starts (default: a share of the available memory); ``progress(done, total,
    row_or_skipped)`` is called as results come; ``journal`` (a path) gets one JSON line per row as it
    finishes, flushed, so a killed audit leaves every finished row on disk (see ``Journal``)."""
    from convert.versions import environment, onnx_levels

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise BadInputError("nothing to audit", hint="give one or more files or folders")
    if timeout is None or timeout <= 0:
        raise BadInputError(f"timeout must be positive, got {timeout}")
    t0 = time.perf_counter()
    jobs = jobs or default_jobs()
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
    options = {"static": static, "trust": trust, "jobs": jobs, "timeout": timeout, "memory_mb": memory >> 20,
               "strict": strict}
    with Journal(journal, [str(p) for p in paths], options) as log:
        for s in skipped:
            log.add(s)
        if static:
            from .static import StaticScan

            runner = StaticScan(jobs=jobs, timeout=timeout)
        else:
            from .pool import Pool

            runner = Pool(jobs=min(jobs, max(len(tasks), 1)), timeout=timeout, memory=memory)
        with runner as pool:
            for task, result in pool.run(tasks):
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
            workers = pool.stats()
            confinement = pool.confinement()
        rows.sort(key=lambda r: (r.root, r.path))
        skipped.sort(key=lambda s: (s.root, s.path))
        report = AuditReport([str(p) for p in paths], rows, skipped, options, environment(),
                             time.perf_counter() - t0, workers=workers, confinement=confinement)
        log.end(report)
    return report


JOURNAL_SCHEMA = "modelport.audit-rows/1"


class Journal:
    """JSON Lines written as the audit goes: a header (``schema``, ``roots``, ``options``), then one line
    per finished file (``{"artifact": row}`` or ``{"skipped": ...}``), each flushed at once, and a last
    ``{"summary": ..., "exit_code": ...}`` line when the audit ends. A reader of a killed audit's journal
    has every row that finished; the absence of the last line says the audit did not."""

    def __init__(self, path, roots: list[str], options: dict):
        self.fh = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115 -- closed in __exit__
        self._line({"schema": JOURNAL_SCHEMA, "roots": roots, "options": options})

    def _line(self, obj: dict) -> None:
        if self.fh is not None:
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
