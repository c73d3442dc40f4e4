"""Version matrix: replay a record inside throwaway virtualenvs, one per set of pinned versions.

Each environment is a venv under the cache folder (``$MODELPORT_CACHE`` or ``~/.cache/modelport/envs``),
keyed by the Python, the pins and the modelport version, so a second run reuses it. modelport itself is
installed from the same source as the one running (editable checkout or the released version), with the
extra the record's framework needs, and the ``--with`` pins on top; then ``modelport verify`` runs inside
and its JSON says: does the native model load, does it still agree with the record, does ONNX.

The record's model class is settled here, before any environment is built, exactly as ``verify`` settles
it (``model_class.choose``: the user's ``--model-class``, or the record's only with ``--trust``), and the
user's options are passed on made independent of the folder each environment's verify runs in.
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

from convert import ClassSpec
from convert.errors import BadInputError

from .model_class import choose
from .record import read

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
    import compat  # the folder holding the compat and convert packages

    root = Path(compat.__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "convert").is_dir():
        stamp = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()[:12]
        return f"-e {root}", f"src-{stamp}"
    from ..console import version as modelport_version

    version = modelport_version()
    return f"modelport=={version}", version


def parse_pin(text: str) -> str:
    if not PIN.match(text):
        raise BadInputError(f"--with {text!r} is not a requirement like scikit-learn==1.5.2")
    return text.strip()


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def telling_line(output: str) -> str | None:
    """The line of a failed command's output that says why: pip's last ``ERROR:`` line (its very last line is
    often a generic note), else the last line that is not a note."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or line.startswith("modelport:")]
    if errors:
        return errors[-1]
    plain = [line for line in lines if not line.startswith("note:")]
    return (plain or lines or [None])[-1]


def ensure_env(pins: list[str], extra: str | None, python: str = sys.executable,
               timeout: float = 1800) -> tuple[Path, str | None]:
    """A venv with modelport[extra] (``extra=None``: modelport alone, when the pins name an older framework than
    its extra allows) and ``pins`` installed, created once and cached. Returns (path, error)."""
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
    suffix = f"[{extra}]" if extra else ""
    target = (src[1] + suffix) if src[0] == "-e" else f"{requirement}{suffix}"
    steps.append(pip + (["-e", target] if src[0] == "-e" else [target]) + pins)
    for cmd in steps:
        try:
            done = _run(cmd, timeout)
        except subprocess.TimeoutExpired:
            return env, f"timed out: {' '.join(cmd[-3:])}"
        if done.returncode != 0:
            return env, telling_line(done.stderr or done.stdout) or f"exit {done.returncode}"
    marker.write_text(json.dumps({"pins": pins, "extra": extra}))
    return env, None


@dataclass(frozen=True)
class Replay:
    """The options each environment's ``modelport verify`` gets: ``model_class`` is an absolute file path or
    a module spec importable from ``pythonpath`` (the caller's folder, where it would import from locally)."""

    trust: bool = False
    model_class: str | None = None
    model_args: dict | None = None
    pythonpath: str = ""

    def options(self) -> list[str]:
        opts = ["--trust"] if self.trust else []
        if self.model_class:
            opts += ["--model-class", self.model_class]
        if self.model_args is not None:
            opts += ["--model-args", json.dumps(self.model_args)]
        return opts


def replay_options(record, record_path: Path, *, trust: bool = False, model_class: str | None = None,
                   model_args: dict | None = None, cwd: Path | None = None) -> Replay:
    """Settle the model class as ``verify`` would (raises the same exit-2 errors, before any environment is
    built) and spell the user's choice so that it means the same from inside an environment."""
    cwd = Path(cwd or os.getcwd())
    chosen = choose(record.manifest.get("hints") or {}, record_path, model_class=model_class,
                    model_args=model_args, trust=trust, cwd=cwd)
    if chosen.origin != "user":
        return Replay(trust, None, model_args)
    is_module = not ClassSpec.parse(chosen.spec).is_file
    return Replay(trust, chosen.spec, model_args, str(cwd) if is_module else "")


def verify_command(python: str, record_path: Path, report: Path, replay: Replay) -> list[str]:
    return [python, "-m", "compat.cli", "verify", str(record_path), "--report", str(report), *replay.options()]


def run_env(record_path: Path, pins: list[str], extra: str, replay: Replay = Replay()) -> EnvResult:
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
        cmd = verify_command(str(env / "bin" / "python"), record_path, out, replay)
        try:
            done = _run(cmd, 1800, cwd=tmp, env=dict(os.environ, PYTHONPATH=replay.pythonpath))
        except subprocess.TimeoutExpired:
            done = None
        if done is None or not out.exists():
            result.status = "verify-error"
            result.reason = (telling_line(done.stderr or done.stdout) if done else "timed out") or "verify did not run"
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
    that breaks); else, if the lowest versions fail and later ones pass, the last failing one below; else, if
    every environment fails, the lowest one (named, never None: a failing matrix always says where)."""
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
    if fails_below:
        return ordered[0].label + (" (and every environment above it)" if len(ordered) > 1 else "")
    return None


def matrix(record_path: str | Path, withs: list[list[str]], trust: bool = False, model_class: str | None = None,
           model_args: dict | None = None) -> MatrixReport:
    """``withs``: one list of pins per environment, e.g. [["scikit-learn==1.5.2"], ["scikit-learn==1.7.2"]].
    ``model_class``/``model_args``/``trust`` as for ``verify``; a record naming a class without either is
    refused (exit 2) before any environment is built."""
    record_path = Path(record_path).resolve()
    record = read(record_path)
    replay = replay_options(record, record_path, trust=trust, model_class=model_class, model_args=model_args)
    framework = record.manifest.get("adapter") or record.manifest["native"].get("framework") or "sklearn"
    extra = EXTRAS.get(framework, "sklearn")
    pinned = [[parse_pin(p) for p in pins] for pins in withs]
    results = [run_env(record_path, pins, extra, replay) for pins in pinned]
    return MatrixReport(str(record_path), results, first_breaking(results))


def render_text(report: MatrixReport, console) -> None:
    """A table of yes/no per environment; each failing environment's reason in full below it (a table cell
    would cut or fold it)."""
    from rich.markup import escape
    from rich.table import Table

    yes_no = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}
    table = Table(title=escape(f"version matrix: {report.record}"), title_justify="left", header_style="bold")
    for col in ("environment", "loads", "native agrees", "ONNX agrees", "verdict"):
        table.add_column(col)
    for r in report.results:
        verdict = "[green]pass[/]" if r.verdict == "pass" else f"[red]{r.status if r.status != 'ok' else 'fail'}[/]"
        table.add_row(escape(r.label), yes_no[r.loads], yes_no[r.native_agrees], yes_no[r.onnx_agrees], verdict)
    console.print(table)
    for r in report.results:
        if r.verdict != "pass" and r.reason:
            console.print(f"{r.label}: {r.reason}", markup=False, soft_wrap=True)
    if report.first_breaking:
        console.print(f"first breaking: [bold]{escape(report.first_breaking)}[/]")
