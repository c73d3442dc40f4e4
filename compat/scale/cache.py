"""Results kept across runs: a re-run, or a run resumed after a crash, reuses every result that is still valid
and redoes only the rest.

An entry is keyed by what was judged and how: the job's kind, the item's ``identity`` (its content hash,
``sha256:...``, or for a store object the store's ETag, size and modification time, where hashing would
cost a download) and the options that change the answer. It holds the result and ``judged_by``: the
versions of modelport (its release and a digest of its own source, so an edited checkout never reuses
what older code said) and of the libraries that judged it. An entry is used only while every one of those
versions is still what the environment doing the work now has.

One SQLite file (``results.sqlite3``) in a folder only this user can read, written in WAL mode with a commit
per result: a client killed mid-run loses nothing it had stored, and several runs may share the folder.
Values are JSON, never pickles: reading the cache runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import time
from functools import lru_cache
from pathlib import Path

FILE = "results.sqlite3"


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/modelport`` (``~/.cache/modelport`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelport"


@lru_cache(maxsize=1)
def modelport_version() -> str:
    """The release plus a digest of the source of ``convert`` and ``compat`` (code and data files)."""
    import compat
    import convert

    from ..console import version

    digest = hashlib.sha256()
    for package in (convert, compat):
        root = Path(package.__file__).resolve().parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json") and p.is_file()):
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return f"{version()}+{digest.hexdigest()[:16]}"


def versions(names) -> dict:
    """``modelport``, ``python`` and the installed version of each distribution in ``names`` (None when it is
    not installed): read from metadata once per process, importing nothing. A long-lived process (a Dask
    worker) keeps reporting what it read first: that is also what it has imported and judges with."""
    out = {"modelport": modelport_version(), "python": platform.python_version()}
    out.update((name, _installed(name)) for name in names)
    return out


@lru_cache(maxsize=None)
def _installed(name: str) -> str | None:
    from convert.versions import installed_version  # dist-info folder names: no METADATA parsed

    return installed_version(name)


def consensus(reports: list[dict]) -> dict:
    """The versions every worker agrees on; a library they disagree on is ``"mixed"`` (matches no entry)."""
    out: dict = {}
    for report in reports:
        for key, value in report.items():
            if key in out and out[key] != value:
                out[key] = "mixed"
            else:
                out.setdefault(key, value)
    return out


def content_digest(path) -> str:
    """``sha256:`` + the hash of a file, or of a folder's files (relative paths and contents, sorted)."""
    path = Path(path)

    def file_hash(p: Path) -> str:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    if path.is_file():
        return "sha256:" + file_hash(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.is_symlink()):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_hash(p)}\n".encode())
    return "sha256-tree:" + h.hexdigest()


class ResultCache:
    """``cache = ResultCache(folder)``; ``cache.get(kind, identity, options, now)`` -> the stored value or
    None; ``cache.put(kind, identity, options, judged_by, value)``. ``stats`` counts hits, misses, stale
    entries (judged by versions that differ from ``now``) and stores."""

    def __init__(self, folder):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(self.folder / FILE, timeout=60, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                        "judged_by TEXT NOT NULL, value TEXT NOT NULL, stored REAL NOT NULL)")
        self.stats = {"hits": 0, "misses": 0, "stale": 0, "stored": 0}

    @staticmethod
    def key(kind: str, identity: str, options: dict) -> str:
        text = json.dumps({"kind": kind, "identity": identity, "options": options}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, kind: str, identity: str, options: dict, now: dict) -> dict | None:
        row = self.db.execute("SELECT judged_by, value FROM results WHERE key = ?",
                              (self.key(kind, identity, options),)).fetchone()
        if row is None:
            self.stats["misses"] += 1
            return None
        try:
            judged, value = json.loads(row[0]), json.loads(row[1])
        except ValueError:
            self.stats["misses"] += 1
            return None
        if not isinstance(judged, dict) or any(now.get(k, "absent") != v for k, v in judged.items()):
            self.stats["stale"] += 1
            return None
        self.stats["hits"] += 1
        return value

    def put(self, kind: str, identity: str, options: dict, judged_by: dict, value: dict) -> bool:
        """Store ``value`` (False, and nothing stored, when it is not plain JSON)."""
        try:
            text = json.dumps(value, allow_nan=False, default=str)
        except ValueError:
            return False
        self.db.execute("INSERT OR REPLACE INTO results (key, kind, judged_by, value, stored) VALUES (?, ?, ?, ?, ?)",
                        (self.key(kind, identity, options), kind, json.dumps(judged_by, sort_keys=True, default=str),
                         text, time.time()))
        self.stats["stored"] += 1
        return True

    def describe(self) -> dict:
        return {"dir": str(self.folder), **self.stats}

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
