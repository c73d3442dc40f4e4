"""Version matrix: replay a record inside throwaway virtualenvs, one per set of pinned versions.

Each environment is a venv under the cache folder (``$MODELPORT_CACHE`` or ``~/.cache/modelport/envs``),
keyed by the Python, the pins and the modelport version, so a second run reuses it. modelport itself is
installed from the same source as the one running (editable checkout or the released version), with the
extra the record's framework needs, and the ``--with`` pins on top; then ``modelport verify`` runs inside
and its JSON says: does the native model load, does it still agree with the record, does ONNX.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from convert.errors import BadInputError

from .records import read

MATRIX_SCHEMA = "modelport.matrix/1"
EXTRAS = {"sklearn": "sklearn", "torch": "torch", "tensorflow": "tensorflow"}
PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(==|>=|<=|~=|!=|>|<)\s*([^\s;]+)\s*$")


@dataclass
class EnvResult:
    pins: list[str]
    status: str = "ok"  # "ok" | "install-failed" | "verify-error"
    loads: bool | None = None
    native_agrees: bool | None = None
    onnx_agrees: bool | None = None
    verdict: str = "fail"
    reason: str | None = None
    versions: dict = field(default_factory=dict)
    seconds: float = 0.0
    env: str = ""

    @property
    def label(self) -> str:
        return " ".join(self.pins) or "(record's own versions)"

    def to_dict(self) -> dict:
        return {"pins": self.pins, "status": self.status, "loads": self.loads, "native_agrees": self.native_agrees,
                "onnx_agrees": self.onnx_agrees, "verdict": self.verdict, "reason": self.reason,
                "versions": self.versions, "seconds": round(self.seconds, 1), "env": self.env}


@dataclass
class MatrixReport:
    record: str
    results: list[EnvResult]
    first_breaking: str | None = None
    schema: str = MATRIX_SCHEMA

    @property
    def passed(self) -> bool:
        return all(r.verdict == "pass" for r in self.results)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "record": self.record, "first_breaking": self.first_breaking,
                "environments": [r.to_dict() for r in self.results]}


def cache_dir() -> Path:
    base = os.environ.get("MODELPORT_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "modelport" / "envs"


def _modelport_source() -> tuple[str, str]:
    """(pip requirement for modelport, a key for caching). A source checkout installs editable."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "convert").is_dir():
        stamp = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()[:12]
        return f"-e {root}", f"src-{stamp}"
    from importlib import metadata

    version = metadata.version("modelport")
    return f"modelport=={version}", version


def parse_pin(text: str) -> str:
    if not PIN.match(text):
        raise BadInputError(f"--with {text!r} is not a requirement like scikit-learn==1.5.2")
    return text.strip()


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def ensure_env(pins: list[str], extra: str, python: str = sys.executable, timeout: float = 1800) -> tuple[Path, str | None]:
    """A venv with modelport[extra] and ``pins`` installed, created once and cached. Returns (path, error)."""
    requirement, source_key = _modelport_source()
    key = hashlib.sha256(json.dumps([python, sorted(pins), extra, source_key]).encode()).hexdigest()[:16]
    env = cache_dir() / key
    marker = env / ".modelport-ready"
    if marker.exists():
        return env, None
    env.parent.mkdir(parents=True, exist_ok=True)
    steps = [[python, "-m", "venv", "--clear", str(env)]]
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if extra == "torch" and not any(p.startswith("torch") for p in pins):
        steps.append(pip + ["torch==2.13.0"])  # the CPU wheel on this kind of machine; never an unpinned CUDA torch
    src = requirement.split(" ", 1)
    target = (src[1] + f"[{extra}]") if src[0] == "-e" else f"{requirement}[{extra}]"
    steps.append(pip + (["-e", target] if src[0] == "-e" else [target]) + pins)
    for cmd in steps:
        try:
            done = _run(cmd, timeout)
        except subprocess.TimeoutExpired:
            return env, f"timed out: {' '.join(cmd[-3:])}"
        if done.returncode != 0:
            tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            return env, (tail[-1] if tail else f"exit {done.returncode}")[:300]
    marker.write_text(json.dumps({"pins": pins, "extra": extra}))
    return env, None


def run_env(record_path: Path, pins: list[str], extra: str, trust: bool = False) -> EnvResult:
    t0 = time.perf_counter()
    result = EnvResult(pins)
    env, error = ensure_env(pins, extra)
    result.env = str(env)
    if error:
        result.status, result.reason = "install-failed", error
        result.seconds = time.perf_counter() - t0
        return result
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verify.json"
        cmd = [str(env / "bin" / "python"), "-m", "compat.cli", "verify", str(record_path), "--report", str(out)]
        if trust:
            cmd.append("--trust")
        try:
            done = _run(cmd, 1800, cwd=tmp, env=dict(os.environ, PYTHONPATH=""))
        except subprocess.TimeoutExpired:
            done = None
        if done is None or not out.exists():
            result.status = "verify-error"
            err = (done.stderr or done.stdout).strip().splitlines() if done else ["timed out"]
            result.reason = (err[-1] if err else "verify did not run")[:300]
            result.seconds = time.perf_counter() - t0
            return result
        data = json.loads(out.read_text())["records"][0]
    comps = {c["name"]: c["passed"] for c in data["comparisons"]}
    result.loads = data["status"] != "load-failed"
    result.native_agrees = comps.get("native now vs then") if result.loads else None
    onnx = [comps[k] for k in ("onnx now vs then", "native vs onnx now") if k in comps]
    result.onnx_agrees = all(onnx) if onnx else None
    result.verdict = data["verdict"]
    result.reason = data.get("reason")
    result.versions = {k: v for k, v in data["environment"].items() if k not in ("platform",)}
    result.seconds = time.perf_counter() - t0
    return result


def _version_key(result: EnvResult):
    parts = []
    for pin in result.pins:
        m = PIN.match(pin)
        if m:
            parts.extend(int(x) if x.isdigit() else x for x in re.split(r"[.\-]", m.group(3)))
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in parts]


def first_breaking(results: list[EnvResult]) -> str | None:
    """In ascending version order, the first environment that fails after one that passed (an upgrade
    that breaks); else, if the lowest versions fail and later ones pass, the last failing one below."""
    ordered = sorted(results, key=_version_key)
    seen_pass = False
    for r in ordered:
        if r.verdict == "pass":
            seen_pass = True
        elif seen_pass:
            return r.label
    fails_below = [r for r in ordered if r.verdict != "pass"]
    if fails_below and seen_pass:
        return fails_below[-1].label + " (and below)"
    return None


def matrix(record_path: str | Path, withs: list[list[str]], trust: bool = False) -> MatrixReport:
    """``withs``: one list of pins per environment, e.g. [["scikit-learn==1.5.2"], ["scikit-learn==1.7.2"]]."""
    record_path = Path(record_path).resolve()
    record = read(record_path)
    framework = record.manifest.get("adapter") or record.manifest["native"].get("framework") or "sklearn"
    extra = EXTRAS.get(framework, "sklearn")
    results = [run_env(record_path, [parse_pin(p) for p in pins], extra, trust) for pins in withs]
    return MatrixReport(str(record_path), results, first_breaking(results))


def render_text(report: MatrixReport, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    yes_no = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}
    table = Table(title=escape(f"version matrix: {report.record}"), title_justify="left", header_style="bold")
    for col in ("environment", "loads", "native agrees", "ONNX agrees", "verdict", "reason"):
        table.add_column(col)
    for r in report.results:
        verdict = "[green]pass[/]" if r.verdict == "pass" else f"[red]{r.status if r.status != 'ok' else 'fail'}[/]"
        table.add_row(escape(r.label), yes_no[r.loads], yes_no[r.native_agrees], yes_no[r.onnx_agrees], verdict,
                      escape((r.reason or "")[:90]))
    console.print(table)
    if report.first_breaking:
        console.print(f"first breaking: [bold]{escape(report.first_breaking)}[/]")
