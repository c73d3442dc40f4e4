"""Which processes belong to one audited file, how much memory they hold, and how to kill them all.

Where cgroups can be written (cgroup v2 with the memory and pids controllers, or v1 ``memory`` and ``pids``
hierarchies, plus a v2 hierarchy without controllers for its one-write ``cgroup.kill``), each artifact's
process goes into a cgroup of its own before it reads the file, so every process it starts is in it too,
``setsid`` or not: the kernel caps its memory and process count, accounts the memory of the whole tree, and
one write kills it all. Without cgroups the tree is read from /proc: the descendants of the worker slot,
which is the init of its pid namespace or a subreaper, so orphans come back to it.

The supervisor also starts a reaper (``reap([WORKDIR, CGROUP...])`` in a process of its own session)
holding the read end of a pipe: when the supervisor goes, normally or killed, the reaper kills what is
left in the audit's cgroups (and any process still carrying the audit's marker), removes the cgroups and
the audit's temporary folder. ``sweep`` removes what an earlier audit whose reaper was killed too left.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "modelport-audit-"  # temporary folders and cgroups: PREFIX + supervisor pid + "-" + random
MARKER = "MODELPORT_AUDIT"  # environment variable every worker carries: the audit's folder
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --------------------------------------------------------------------------------------------- cgroups


@dataclass
class _Hierarchy:
    mount: Path
    version: int
    controllers: frozenset  # what this hierarchy is used for: "memory", "pids" (empty: kill and membership only)
    own: Path  # this process's cgroup in it


def _hierarchies() -> list[_Hierarchy]:
    """Mounted cgroup hierarchies, each with this process's own cgroup in it."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            own[names] = path
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in mounts:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3 or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        root, mount = parts[3], Path(parts[4])
        if rparts[0] == "cgroup2":
            path = own.get("")
            try:
                ctl = frozenset((mount / "cgroup.controllers").read_text().split()) & {"memory", "pids"}
            except OSError:
                continue
            version = 2
        else:
            opts = set(rparts[2].split(","))
            ctl = frozenset(opts & {"memory", "pids"})
            if not ctl:
                continue
            path = next((p for names, p in own.items() if set(names.split(",")) & ctl), None)
            version = 1
        if path is None:
            continue
        rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
        found.append(_Hierarchy(mount, version, ctl, (mount / rel).resolve() if rel != "." else mount))
    return found


def _write(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read_int(path: Path, key: str | None = None) -> int:
    text = path.read_text()
    if key is None:
        return int(text.split()[0])
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _kill_cgroup(folder: Path, wait: bool = True) -> None:
    """Kill every process in ``folder`` (and below); with ``wait``, until none is left."""
    kill = folder / "cgroup.kill"
    if kill.exists():
        try:
            _write(kill, "1")
            if not wait:
                return
        except OSError:
            pass
    for _ in range(200 if wait else 1):
        pids = _procs(folder)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if wait:
            time.sleep(0.005)


def _procs(folder: Path) -> list[int]:
    pids: list[int] = []
    for procs in [folder / "cgroup.procs", *folder.glob("*/cgroup.procs")]:
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def _remove_cgroup(folder: Path) -> None:
    """Kill what is inside, then remove the folder and its sub-cgroups (deepest first)."""
    if not folder.is_dir():
        return
    _kill_cgroup(folder)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        _rmdir(sub)
    _rmdir(folder)


def _rmdir(folder: Path) -> None:
    for _ in range(100):  # a killed process leaves the cgroup a moment after it dies
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


class Cgroups:
    """The audit's cgroup in every usable hierarchy; ``child()`` makes one per artifact. Empty (``bool()`` is
    False, ``why`` says why) where cgroups cannot be written."""

    def __init__(self, name: str):
        self.folders: list[tuple[_Hierarchy, Path]] = []
        self.why = ""
        chosen = _choose(_hierarchies())
        if not chosen:
            self.why = "no writable cgroup hierarchy with the memory and pids controllers"
            return
        for h in chosen:
            for base in (h.own, h.mount):  # our own cgroup first (keeps a delegated subtree's accounting)
                folder = base / name
                try:
                    folder.mkdir()
                    if h.version == 2 and h.controllers:
                        _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(h.controllers)))
                    self.folders.append((h, folder))
                    break
                except OSError as exc:
                    self.why = f"cannot create a cgroup in {base} ({exc.strerror})"
                    _rmdir(folder)
        if not {c for h, _ in self.folders for c in h.controllers} >= {"memory", "pids"}:
            self.remove()
            self.folders = []
            self.why = self.why or "the memory and pids controllers are not both available"

    def __bool__(self) -> bool:
        return bool(self.folders)

    def describe(self) -> str:
        """Which hierarchies serve what, e.g. ``v1 memory, v1 pids, v2 cgroup.kill``."""
        return ", ".join(f"v{h.version} " + (" and ".join(sorted(h.controllers)) or "cgroup.kill")
                         for h, _ in self.folders)

    def paths(self) -> list[str]:
        return [str(folder) for _, folder in self.folders]

    def child(self, name: str, memory: int, pids: int) -> "ArtifactGroup":
        return ArtifactGroup([(h, folder / name) for h, folder in self.folders], memory, pids)

    def remove(self) -> None:
        for _, folder in self.folders:
            _remove_cgroup(folder)


def _choose(found: list[_Hierarchy]) -> list[_Hierarchy]:
    """A v2 hierarchy with both controllers alone; else v1 memory and pids, plus v2 (if any) for cgroup.kill."""
    v2 = [h for h in found if h.version == 2]
    full = [h for h in v2 if h.controllers >= {"memory", "pids"}]
    if full:
        return full[:1]
    v1 = []
    for ctl in ("memory", "pids"):
        v1 += [h for h in found if h.version == 1 and ctl in h.controllers and h not in v1][:1]
    return v1 + [_Hierarchy(h.mount, 2, frozenset(), h.own) for h in v2[:1]]


@dataclass
class ArtifactGroup:
    """One artifact's cgroup (a folder in each hierarchy). The kernel limits: memory (``memory`` plus a
    quarter, so the supervisor's own check at ``memory`` usually fires first with a clearer reason; the
    kernel's OOM killer is the backstop) and ``pids`` tasks."""

    folders: list[tuple[_Hierarchy, Path]]
    memory: int
    pids: int
    made: list[Path] = field(default_factory=list)

    def create(self) -> None:
        for h, folder in self.folders:
            folder.mkdir()
            self.made.append(folder)
            if "memory" in h.controllers:
                limit = str(self.memory + self.memory // 4)
                if h.version == 2:
                    _write(folder / "memory.max", limit)
                    _try_write(folder / "memory.swap.max", "0")
                else:
                    _write(folder / "memory.limit_in_bytes", limit)
                    _try_write(folder / "memory.memsw.limit_in_bytes", limit)
            if "pids" in h.controllers:
                _write(folder / "pids.max", str(self.pids))

    def add(self, pid: int) -> None:
        for _, folder in self.folders:
            _write(folder / "cgroup.procs", str(pid))

    def usage(self) -> int:
        """Bytes the tree holds in anonymous and shared memory (page cache of files it read left out: the
        kernel reclaims that before it runs out)."""
        for h, folder in self.folders:
            if "memory" in h.controllers:
                stat = folder / "memory.stat"
                try:
                    if h.version == 2:
                        return _read_int(stat, "anon") + _read_int(stat, "shmem")
                    return _read_int(stat, "total_rss") + _read_int(stat, "total_shmem")
                except OSError:
                    return 0
        return 0

    def oom_kills(self) -> int:
        for h, folder in self.folders:
            if "memory" in h.controllers:
                try:
                    if h.version == 2:
                        return _read_int(folder / "memory.events", "oom_kill")
                    return _read_int(folder / "memory.oom_control", "oom_kill")
                except OSError:
                    return 0
        return 0

    def kill(self, wait: bool = True) -> None:
        """SIGKILL every process in the group; with ``wait``, until the group is empty."""
        for _, folder in sorted(self.folders, key=lambda hf: -hf[0].version):  # cgroup.kill first
            _kill_cgroup(folder, wait)
            if not wait:
                return

    def remove(self) -> None:
        self.kill()
        for folder in self.made:
            _rmdir(folder)
        self.made = []


def _try_write(path: Path, text: str) -> None:
    try:
        _write(path, text)
    except OSError:
        pass


# -------------------------------------------------------------------------------------- /proc trees


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of all its threads, recursively), as /proc shows them now."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                kids = [int(k) for k in Path(f"/proc/{parent}/task/{tid}/children").read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def private_memory(pid: int) -> int:
    """Bytes ``pid`` holds that no other process shares (what it allocated or copied on write)."""
    try:
        total = 0
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Swap:")):
                    total += int(line.split()[1]) * 1024
        return total
    except (OSError, ValueError, IndexError):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0


def kill_descendants(pid: int) -> None:
    """SIGKILL everything below ``pid`` until nothing is left (a process may fork while the first pass runs)."""
    for _ in range(50):
        below = descendants(pid)
        if not below:
            return
        for p in below:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------------------------- reaper, sweep


def start_reaper(workdir: Path, cgroups: list[str]):
    """The reaper process and the pipe end that keeps it waiting (close it, and the reaper cleans up)."""
    import subprocess

    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", launcher("compat.audits.sandbox.proctree", "reap"), str(workdir), *cgroups],
                            stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd="/", env=_reaper_env())
    os.close(read)
    return proc, write


def launcher(module: str, function: str) -> str:
    """``python -c`` code that runs ``module.function(sys.argv[1:])`` without the working directory on
    sys.path (what ``-P`` does from Python 3.11 on): nothing a file's process could write there gets
    imported by a process of the audit."""
    return (f"import sys\nif sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
            f"from {module} import {function}\nsys.exit({function}(sys.argv[1:]))")


def _reaper_env() -> dict:
    import compat  # the folder holding the compat and convert packages

    root = str(Path(compat.__file__).resolve().parents[1])
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}


def clean(workdir: Path, cgroups: list[str]) -> None:
    """Kill the audit's processes (in its cgroups, and any still carrying its marker), remove the cgroups
    and its temporary folder."""
    for folder in cgroups:
        _remove_cgroup(Path(folder))
    marker = f"{MARKER}={workdir}".encode()
    for _ in range(3):
        found = [pid for pid in _pids() if pid != os.getpid() and marker in _environ(pid)]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not found:
            break
        time.sleep(0.05)
    shutil.rmtree(workdir, ignore_errors=True)


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def sweep(tmp: Path) -> list[str]:
    """Remove temporary folders and cgroups of earlier audits whose supervisor is gone (its reaper killed too,
    or the machine restarted); what was removed."""
    removed = []
    candidates = [p for p in tmp.glob(PREFIX + "*") if p.is_dir()]
    for h in _hierarchies():
        for base in {h.own, h.mount}:
            candidates += [p for p in base.glob(PREFIX + "*") if p.is_dir()]
    for path in candidates:
        owner = path.name[len(PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or alive(int(owner)):
            continue
        if str(path).startswith(("/sys/fs/cgroup", "/sys/fs/cgroup/")) or (path / "cgroup.procs").exists():
            _remove_cgroup(path)
        else:
            clean(path, [])
        removed.append(str(path))
    return removed


def reap(argv: list[str]) -> int:
    """Wait for the supervisor's end of stdin to close, then clean up after it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    clean(Path(argv[0]), argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(reap(sys.argv[1:]))
