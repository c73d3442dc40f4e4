"""Memory a load would take, judged before it starts, and allocation failures told apart from damage.

A zip archive declares each member's inflated size in its central directory, and torch's reader allocates that
many bytes for a record before it inflates it: a 2 MB archive of deflated zeros can declare gigabytes. So the
declared sizes are read (nothing is decompressed) and a load is refused when they pass either bound:

- a compression bomb: the members inflate to more than ``BOMB_RATIO`` times the archive's size, and to more
  than ``BOMB_FLOOR`` (below it no archive is a danger, whatever its ratio). torch writes its members
  uncompressed; real weights deflate by less than 2x, so only archives of mostly zeros come near;
- this process's memory: more than it can get (the smallest of the machine's available memory, the address
  space and data segment limits left, and the memory cgroup's room).

Both raise ``OutOfMemoryError`` (exit 2) naming the sizes; so does an allocation that fails during a load
(``MemoryError``, ``std::bad_alloc``, torch's "DefaultCPUAllocator: not enough memory", numpy's "Unable to
allocate", TensorFlow's "OOM when allocating"), which is no sign of a damaged file.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutOfMemoryError

BOMB_RATIO = 100
BOMB_FLOOR = 256 << 20
ALLOCATION_FAILED = re.compile(r"std::bad_alloc|not enough memory|Unable to allocate|(?:can't|cannot) allocate memory|"
                               r"OOM when allocating|out of memory|MemoryError|failed to allocate", re.IGNORECASE)


@dataclass(frozen=True)
class Inflation:
    """What a zip archive's central directory declares."""

    members: int
    inflated: int  # declared uncompressed sizes, summed
    compressed: int  # compressed sizes, summed
    archive: int  # size of the archive file
    largest: str = ""

    @property
    def ratio(self) -> float:
        return self.inflated / max(self.archive, 1)


def declared(path) -> Inflation | None:
    """Declared sizes of a zip archive's members, or None when it is no readable zip."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    largest = max(infos, key=lambda i: i.file_size).filename if infos else ""
    return Inflation(len(infos), sum(i.file_size for i in infos), sum(i.compress_size for i in infos),
                     path.stat().st_size, largest)


def check_archive(path, what: str = "archive") -> Inflation | None:
    """Raise ``OutOfMemoryError`` when loading the zip archive at ``path`` would inflate past a bound."""
    found = declared(path)
    if found is None:
        return None
    sizes = (f"declares {human(found.inflated)} when inflated ({found.members} members in a {human(found.archive)} "
             f"{what}, {found.ratio:,.0f}x)")
    if found.inflated > BOMB_FLOOR and found.inflated > BOMB_RATIO * found.archive:
        raise OutOfMemoryError(f"{sizes}: a compression bomb, refused before loading", path=path,
                               hint=f"nothing was loaded; archives that inflate past {BOMB_RATIO}x their size and "
                                    f"past {human(BOMB_FLOOR)} are refused; torch itself stores members uncompressed")
    budget = available()
    if budget is not None and found.inflated > budget:
        raise OutOfMemoryError(f"{sizes}: more than the {human(budget)} of memory this process can get", path=path,
                               hint="nothing was loaded; run it where more memory is free")
    return found


def available() -> int | None:
    """Bytes this process can still allocate: the smallest of MemAvailable, the RLIMIT_AS and RLIMIT_DATA room
    left, and the memory cgroup's room (None when none can be read)."""
    bounds = []
    meminfo = _fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        bounds.append(meminfo["MemAvailable"])
    status = _fields("/proc/self/status")
    try:
        import resource

        for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
            soft = resource.getrlimit(limit)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                bounds.append(max(soft - status.get(used, 0), 0))
    except (ImportError, OSError, ValueError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _number(limit_file), _number(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            bounds.append(max(limit - usage, 0))
    return min(bounds) if bounds else None


def is_allocation_failure(exc: BaseException) -> bool:
    """Did ``exc`` come from a failed allocation (not from damaged input)?"""
    return isinstance(exc, MemoryError) or bool(ALLOCATION_FAILED.search(f"{type(exc).__name__}: {exc}"[:2000]))


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _fields(path: str) -> dict[str, int]:
    """``Name: 123 kB`` lines of a /proc file, in bytes."""
    out = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[name] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    except OSError:
        pass
    return out


def _number(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
