"""Confinement of the audit's worker processes: every layer is tried, and the report says which held.

A file loaded with ``--trust`` runs its own code. What that code can reach is cut down in layers, each
detected on the machine it runs on (a kernel or a container may refuse some; none is assumed):

- ``enter_slot`` runs first thing in a worker slot, the process that forks one child per artifact. It
  unshares a network namespace (no interface is up: not even loopback answers), a pid namespace (the slot
  becomes its init: when it dies every process a file started dies with it, and after each artifact it
  kills whatever is left) and a mount namespace with a private /proc (the audit's own processes and the
  caller's are out of sight); as root it does this directly, otherwise inside a user namespace. Then
  no_new_privs, capabilities dropped (root keeps only reading files, so it can audit what it is given), a
  seccomp filter (sockets other than AF_UNIX, ptrace, io_uring, bpf, new namespaces) and the slot is made
  non-dumpable so its children cannot write into it.
- ``enter_artifact`` runs in each artifact's process before it reads the file: rlimits (FSIZE, NPROC,
  CORE=0, and a hard DATA: what the slot holds plus the memory cap, so a huge allocation fails at once
  with MemoryError) and Landlock (writes only beneath the artifact's own temp folder; no TCP bind or
  connect; no signals or abstract sockets outside it).

Each function returns ``Mechanism`` records; ``summarize`` folds those of every process into the report's
per-layer view. What the supervisor adds (fresh processes, environment, cgroups) is in ``pool`` and
``proctree``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import socket
from dataclasses import asdict, dataclass

# layer -> what it stops; the report lists every layer, in this order
LAYERS = {
    "fresh-process": "each file gets a new process: nothing one file does can reach another file's row",
    "environment": "a minimal environment: no credentials, tokens or agent sockets from the caller's",
    "network": "no network",
    "process-tree": "every process a file starts is counted and killed with it",
    "memory": "a memory cap on everything a file's processes allocate",
    "processes": "a cap on how many processes and threads a file may run",
    "file-size": "a cap on the size of any file a file's processes write",
    "filesystem": "writes only in the file's own temporary folder",
    "privileges": "no new privileges, capabilities dropped",
    "syscalls": "a seccomp filter on system calls a model never needs",
    "hidden-processes": "the audit's own processes and the caller's are out of sight",
}


@dataclass(frozen=True)
class Mechanism:
    """One way a layer is (or is not) put in force, in one process."""

    layer: str
    name: str
    in_force: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(mechanisms) -> dict:
    """``{layer: {"in_force", "by", "missing"}}`` over the mechanisms every process reported: a mechanism
    counts as in force only if it was in force wherever it was tried."""
    seen: dict[tuple[str, str], Mechanism] = {}
    for m in mechanisms:
        m = m if isinstance(m, Mechanism) else Mechanism(**m)
        key = (m.layer, m.name)
        if key not in seen or (seen[key].in_force and not m.in_force):
            seen[key] = m
    out = {}
    for layer in LAYERS:
        ms = sorted((m for (lay, _), m in seen.items() if lay == layer), key=lambda m: m.name)
        by = [m.name + (f" ({m.note})" if m.note else "") for m in ms if m.in_force]
        missing = [m.name + (f": {m.note}" if m.note else "") for m in ms if not m.in_force]
        out[layer] = {"in_force": bool(by), "by": by, "missing": missing}
    return out


# ------------------------------------------------------------------------------------------- libc

_CLONE = {"user": 0x10000000, "network": 0x40000000, "pid": 0x20000000, "mount": 0x00020000}
_CLONE_NEW_ANY = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS = 1, 4, 24, 28
_PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 36, 38, 47, 4
_SECBITS_LOCKED_NOROOT = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80  # noroot, no setuid fixup, no ambient
_CAP_DAC_READ_SEARCH = 2
_MS_REC, _MS_PRIVATE, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1 << 14, 1 << 18, 2, 4, 8


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _Libc:
    """The C library; a function it lacks (another system) raises OSError(ENOSYS) like a refused call."""

    def __init__(self):
        self._lib = ctypes.CDLL(None, use_errno=True)

    def __getattr__(self, name: str):
        try:
            return getattr(self._lib, name)
        except AttributeError:
            raise OSError(errno.ENOSYS, f"no {name}() here") from None


def _libc() -> _Libc:
    return _Libc()


def _call(func, *args) -> None:
    if func(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _prctl(option: int, arg: int = 0) -> None:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _call(libc.prctl, option, arg, 0, 0, 0)


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent dies (where the system allows); exit now if it already has."""
    try:
        _prctl(_PR_SET_PDEATHSIG, 9)
    except OSError:
        pass
    if expected_parent and os.getppid() != expected_parent:
        os._exit(1)


def _why(exc: OSError) -> str:
    return {errno.EPERM: "refused (EPERM)", errno.EINVAL: "not supported (EINVAL)",
            errno.ENOSYS: "not in this kernel (ENOSYS)", errno.EOPNOTSUPP: "disabled (EOPNOTSUPP)",
            errno.ENOSPC: "namespace limit reached (ENOSPC)"}.get(exc.errno, f"refused ({exc.strerror})")


# ------------------------------------------------------------------------------------------- slot


def enter_slot(tell_init) -> tuple[list[Mechanism], bool]:
    """Confine the current (single-threaded) slot process before it imports anything or reads any file.
    With a pid namespace this forks: the original process stays outside as a waiter and never returns
    (``tell_init(pid)`` reports the inner process's pid as the supervisor sees it); the inner one, pid 1
    of the new namespace, returns. Returns (mechanisms, in a pid namespace)."""
    out: list[Mechanism] = []
    root = os.geteuid() == 0
    spaces = _unshare(out, root)
    pid_ns = "pid" in spaces
    if pid_ns:
        inner = os.fork()
        if inner:  # the waiter: outside the namespace, holds nothing the slot uses
            tell_init(inner)
            _wait_and_exit(inner)
        # the waiter is outside the namespace (getppid() says 0 here); should it die before this line, the
        # supervisor's end of the control socket closes too, and the slot exits on that
        die_with_parent(0)
    else:
        tell_init(os.getpid())
    _private_proc(out, spaces)
    out.append(Mechanism("network", "network namespace", "network" in spaces,
                         "no interface up, not even loopback" if "network" in spaces else spaces.get("!network", "")))
    out.append(Mechanism("process-tree", "pid namespace", pid_ns,
                         "the slot is its init: what a file leaves behind is killed after it, and everything dies "
                         "with the slot" if pid_ns else spaces.get("!pid", "")))
    if not pid_ns:
        try:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
            out.append(Mechanism("process-tree", "subreaper", True, "orphans of a file's processes come back to "
                                 "the slot, which kills them after each file"))
        except OSError as exc:
            out.append(Mechanism("process-tree", "subreaper", False, _why(exc)))
    try:
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        out.append(Mechanism("privileges", "no_new_privs", True))
    except OSError as exc:
        out.append(Mechanism("privileges", "no_new_privs", False, _why(exc)))
    out.append(_drop_capabilities(root))
    try:
        _prctl(_PR_SET_DUMPABLE, 0)  # a file's process may not ptrace the slot or open its /proc/*/mem
    except OSError:
        pass
    out.extend(_seccomp())
    return out, pid_ns


def _unshare(out: list, root: bool) -> dict:
    """Namespaces entered, by name; ``!name`` keys hold why one was refused."""
    libc = _libc()
    got: dict[str, str] = {}
    if not root:
        uid, gid = os.getuid(), os.getgid()
        try:
            _call(libc.unshare, ctypes.c_int(_CLONE["user"]))
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
            got["user"] = ""
        except OSError as exc:
            for name in ("network", "pid", "mount"):
                got[f"!{name}"] = f"no user namespace to create it in: {_why(exc)}"
            out.append(Mechanism("privileges", "user namespace", False, _why(exc)))
            return got
        out.append(Mechanism("privileges", "user namespace", True, "capabilities only inside it"))
    for name in ("network", "pid", "mount"):
        try:
            _call(libc.unshare, ctypes.c_int(_CLONE[name]))
            got[name] = ""
        except OSError as exc:
            got[f"!{name}"] = _why(exc)
    return got


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _wait_and_exit(pid: int) -> None:
    os.closerange(3, 1 << 16)
    try:
        os.close(0)
        os.close(1)
    except OSError:
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if 0 <= code < 256 else 1)


def _private_proc(out: list, spaces: dict) -> None:
    """A /proc of the slot's own pid namespace: the processes outside it (the audit, its caller) vanish."""
    if "mount" not in spaces or "pid" not in spaces:
        out.append(Mechanism("hidden-processes", "private /proc", False,
                             spaces.get("!mount") or spaces.get("!pid") or "needs mount and pid namespaces"))
        return
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    try:
        _call(libc.mount, None, b"/", None, _MS_REC | _MS_PRIVATE, None)
        _call(libc.mount, b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
        out.append(Mechanism("hidden-processes", "private /proc", True, "pid and mount namespaces"))
    except OSError as exc:
        out.append(Mechanism("hidden-processes", "private /proc", False, _why(exc)))


def _drop_capabilities(root: bool) -> Mechanism:
    """Root keeps CAP_DAC_READ_SEARCH only (to read every file it was asked to audit); nothing regains the
    rest through exec (locked securebits, empty bounding set)."""
    if not root and not _has_capabilities():
        return Mechanism("privileges", "capabilities dropped", True, "none held")
    libc = _libc()
    try:
        _prctl(_PR_SET_SECUREBITS, _SECBITS_LOCKED_NOROOT)
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last + 1):
            if cap != _CAP_DAC_READ_SEARCH:
                try:
                    _prctl(_PR_CAPBSET_DROP, cap)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        keep = 1 << _CAP_DAC_READ_SEARCH
        data = (_CapData * 2)(_CapData(keep, keep, 0), _CapData(0, 0, 0))
        _call(libc.capset, ctypes.byref(_CapHeader(0x20080522, 0)), data)
    except OSError as exc:
        return Mechanism("privileges", "capabilities dropped", False, _why(exc))
    return Mechanism("privileges", "capabilities dropped", True, "kept: CAP_DAC_READ_SEARCH, to read the files")


def _has_capabilities() -> bool:
    try:
        with open("/proc/self/status") as fh:
            return any(line.startswith("CapEff:") and int(line.split()[1], 16) for line in fh)
    except OSError:
        return False


# system calls a model never needs and an escape often does; socket() is allowed for AF_UNIX only
DENIED_SYSCALLS = ("ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup", "io_uring_enter",
                   "io_uring_register", "bpf", "perf_event_open", "userfaultfd", "setns", "unshare", "mount",
                   "umount2", "pivot_root", "open_by_handle_at", "kexec_load", "add_key", "keyctl", "request_key")


def _seccomp() -> list[Mechanism]:
    try:
        import pyseccomp as sc

        f = sc.SyscallFilter(sc.ALLOW)
        f.add_rule(sc.ERRNO(errno.EACCES), "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
        for name in DENIED_SYSCALLS:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # flags behind a pointer: glibc falls back to clone
        for flag in _CLONE_NEW_ANY:
            f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        f.load()
    except Exception as exc:  # noqa: BLE001 -- no libseccomp, or the kernel refuses: say so, go on
        why = _why(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        return [Mechanism("syscalls", "seccomp", False, why),
                Mechanism("network", "seccomp: AF_UNIX sockets only", False, why)]
    return [Mechanism("syscalls", "seccomp", True, "denied: " + ", ".join(DENIED_SYSCALLS[:6]) + ", new namespaces, …"),
            Mechanism("network", "seccomp: AF_UNIX sockets only", True)]


# -------------------------------------------------------------------------------------- artifact


def process_limit() -> int:
    """Processes and threads one artifact may run at once (frameworks start a thread pool per core)."""
    return 256 + 8 * (os.cpu_count() or 1)


def enter_artifact(tmp: str, memory: int, alone: bool) -> list[Mechanism]:
    """Confine an artifact's process before it reads the file: rlimits and Landlock. ``tmp`` is its own
    folder (HOME and TMPDIR point there); ``memory`` its cap in bytes (also the largest file it may write);
    ``alone``: its slot's pid namespace and private /proc hide every other file's processes from it."""
    out: list[Mechanism] = []
    os.environ["HOME"] = os.environ["TMPDIR"] = tmp
    import tempfile

    tempfile.tempdir = None
    if alone:  # nothing else of the audit can see it: let the supervisor read its memory map (smaps)
        try:
            _prctl(_PR_SET_DUMPABLE, 1)
        except OSError:
            pass
    # (otherwise it stays undumpable, as the slot made it: another file's process of the same user could
    # open its /proc/PID/mem or fds; root reads smaps regardless, other users fall back to statm)
    _limit(out, "file-size", "RLIMIT_FSIZE", resource.RLIMIT_FSIZE, max(memory, 64 << 20),
           f"{max(memory, 64 << 20) >> 20} MB per file")
    _limit(out, "memory", "RLIMIT_CORE", resource.RLIMIT_CORE, 0, "no core dumps")
    if memory > 0:  # relative: what the slot holds (frameworks reserve ranges they never touch) plus the cap
        _limit(out, "memory", "RLIMIT_DATA", resource.RLIMIT_DATA, _data_held() + memory,
               f"hard, {memory >> 20} MB beyond what the slot holds")
    limit = process_limit()
    if os.getuid() == 0:  # the kernel never applies RLIMIT_NPROC to uid 0
        out.append(Mechanism("processes", "RLIMIT_NPROC", False, "the kernel does not apply it to root"))
    else:
        _limit(out, "processes", "RLIMIT_NPROC", resource.RLIMIT_NPROC, _my_processes() + limit,
               f"{limit} more than the user runs")
    out.extend(_landlock(tmp))
    return out


def _limit(out: list, layer: str, name: str, which: int, value: int, note: str) -> None:
    try:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
        out.append(Mechanism(layer, name, True, note))
    except (OSError, ValueError) as exc:
        out.append(Mechanism(layer, name, False, str(exc)))


def _data_held() -> int:
    try:
        with open("/proc/self/status", "rb") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(b"VmData:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _my_processes() -> int:
    """Tasks (processes and threads) of this real uid that RLIMIT_NPROC counts, as far as /proc shows."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


_LL_NET_TCP = 1 | 2  # LANDLOCK_ACCESS_NET_BIND_TCP | CONNECT_TCP (ABI 4)
_LL_SCOPE = 1 | 2  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | SIGNAL (ABI 6)


class _LandlockAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _landlock(tmp: str) -> list[Mechanism]:
    """Writes only beneath ``tmp`` (and /dev/null); with a recent enough kernel also no TCP and no signals or
    abstract sockets outside the artifact's own processes. The ``landlock`` package covers the file rules;
    its ruleset has no room for the network and scope rules, which take one raw syscall each."""
    try:
        import landlock
        from landlock import FSAccess

        abi = landlock.landlock_abi_version()
        writes = FSAccess.all() & ~(FSAccess.EXECUTE | FSAccess.READ_FILE | FSAccess.READ_DIR)
        if abi >= 5:
            writes &= ~FSAccess.IOCTL_DEV
        rules = landlock.Ruleset(restrict_rules=writes)
        rules.allow(tmp, rules=writes)
        rules.allow(os.devnull, rules=writes & FSAccess.all_file())
        rules.apply()
    except Exception as exc:  # noqa: BLE001 -- the package missing or the kernel refusing: say which
        why = _why(exc) if isinstance(exc, OSError) and exc.errno else f"{type(exc).__name__}: {str(exc)[:100]}"
        return [Mechanism("filesystem", "landlock", False, why.splitlines()[0])]
    out = [Mechanism("filesystem", "landlock", True, f"ABI {abi}: writes only in the artifact's temp folder")]
    extra = _LandlockAttr(0, _LL_NET_TCP if abi >= 4 else 0, _LL_SCOPE if abi >= 6 else 0)
    if not (extra.handled_access_net or extra.scoped):
        out.append(Mechanism("network", "landlock: no TCP", False, f"ABI {abi} < 4"))
        return out
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(444, ctypes.byref(extra), ctypes.sizeof(extra), 0)  # landlock_create_ruleset
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        try:
            if libc.syscall(446, fd, 0) != 0:  # landlock_restrict_self
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        finally:
            os.close(fd)
    except OSError as exc:
        out.append(Mechanism("network", "landlock: no TCP", False, _why(exc)))
        return out
    out.append(Mechanism("network", "landlock: no TCP", extra.handled_access_net != 0,
                         "bind and connect denied" if extra.handled_access_net else f"ABI {abi} < 4"))
    if extra.scoped:
        out.append(Mechanism("syscalls", "landlock scopes", True, "no signals or abstract sockets outside the file's "
                             "own processes"))
    return out
