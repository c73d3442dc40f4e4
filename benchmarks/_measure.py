"""Run commands as fresh processes and measure them: wall time and peak resident memory (the child's own
ru_maxrss, via wait4), median over repeats. Shared by the benchmark scripts."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DATA = ROOT / "benchmarks" / ".data"  # generated inputs, not committed


@dataclass
class Run:
    seconds: float
    peak_mb: float
    returncode: int
    output: str


def run_once(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None) -> Run:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                            env=dict(os.environ, **(env or {})))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(seconds, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace"))


def measure(cmd: list[str], repeats: int = 3, ok_codes: tuple | None = (0,), **kw) -> Run:
    """Median wall time and median peak memory over ``repeats`` runs; fails loudly if a run exits with a
    code outside ``ok_codes`` (None: any code, for scanners that exit non-zero when they find something)."""
    runs = [run_once(cmd, **kw) for _ in range(repeats)]
    for r in runs:
        if ok_codes is not None and r.returncode not in ok_codes:
            raise SystemExit(f"benchmark command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.output[-2000:]}")
    return Run(statistics.median(r.seconds for r in runs), statistics.median(r.peak_mb for r in runs), 0,
               runs[-1].output)


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}){mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def ratio_line(name: str, ours: float, base: float, target: float | None, unit: str = "s") -> str:
    r = ours / base if base else float("inf")
    verdict = "" if target is None else (" ✓" if r <= target else f" ✗ (target ≤ {target}×)")
    return f"| {name} | {ours:.2f} {unit} | {base:.2f} {unit} | {r:.2f}×{verdict} |"
