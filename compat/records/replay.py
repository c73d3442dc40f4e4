"""Replay a golden record in today's environment and say what moved, and which library upgrades are behind it.

Comparisons, each output by output:
- ``native now vs then``: today's framework on the recorded inputs against the recorded native outputs;
- ``onnx now vs then``: the recorded ONNX graph under today's onnxruntime against its recorded outputs;
- ``native vs onnx now``: today's native model against today's ONNX run (the original check, replayed);
- ``reconverted vs native now`` (graphs converted at record time): today's converter, run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import convert
from convert.errors import ModelClassError, ModelportError

from ..checks.compare import OutputComparison, OutputStats
from ..checks.report import environment
from .model_class import choose
from .record import Record, hints_from, read, sha256_of

VERIFY_SCHEMA = "modelport.verify/1"
# which installed libraries can move which comparison
MOVERS = {
    "native now vs then": ("scikit-learn", "numpy", "scipy", "joblib", "pandas", "torch", "tensorflow-cpu",
                           "tensorflow", "keras", "python"),
    "onnx now vs then": ("onnxruntime", "numpy", "python"),
    "native vs onnx now": ("scikit-learn", "numpy", "scipy", "torch", "tensorflow-cpu", "tensorflow", "keras",
                           "onnxruntime"),
    "reconverted vs native now": ("skl2onnx", "onnx", "onnxscript", "tf2onnx", "torch", "onnxruntime",
                                  "scikit-learn"),
}


@dataclass
class Comparison:
    name: str
    outputs: list[OutputStats] = field(default_factory=list)
    note: str | None = None
    drift: list[str] = field(default_factory=list)  # "scikit-learn 1.5.2 -> 1.9.1" for libraries that can move it

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and not (self.note and self.note.startswith("failed"))

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "note": self.note, "drift": self.drift,
                "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        return cls(d["name"], [OutputStats.from_dict(o) for o in d.get("outputs", [])], d.get("note"),
                   list(d.get("drift") or []))


@dataclass
class VerifyReport:
    record: str
    verdict: str = "pass"  # "pass" | "fail"
    status: str = "ok"  # "ok" | "outputs-moved" | "artifact-changed" | "load-failed" | "convert-failed"
    reason: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    versions: dict = field(default_factory=dict)  # library -> {"then": ..., "now": ...} where they differ
    model: str = ""
    rows: int = 0
    seconds: float = 0.0
    environment: dict = field(default_factory=environment)
    schema: str = VERIFY_SCHEMA

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {"schema": self.schema, "record": self.record, "verdict": self.verdict, "status": self.status,
                "reason": self.reason, "model": self.model, "rows": self.rows, "versions": self.versions,
                "comparisons": [c.to_dict() for c in self.comparisons], "seconds": round(self.seconds, 3),
                "environment": self.environment}

    @classmethod
    def from_dict(cls, d: dict) -> "VerifyReport":
        """Back from ``to_dict`` (a replay that ran on a Dask worker, or came from the result cache)."""
        return cls(d["record"], d.get("verdict", "fail"), d.get("status", "ok"), d.get("reason"),
                   [Comparison.from_dict(c) for c in d.get("comparisons", [])], dict(d.get("versions") or {}),
                   d.get("model", ""), int(d.get("rows", 0)), float(d.get("seconds", 0.0)),
                   dict(d.get("environment") or {}), d.get("schema", VERIFY_SCHEMA))


def version_changes(then: dict, now: dict) -> dict:
    keys = sorted(set(then) | set(now))
    return {k: {"then": then.get(k), "now": now.get(k)} for k in keys
            if k not in ("modelport", "platform") and then.get(k) != now.get(k)}


def _compare(name: str, record: Record, reference: dict, candidate: dict, scores_side: dict) -> Comparison:
    comp = Comparison(name)
    kinds = record.manifest.get("kinds", {})
    inputs = record.inputs
    for out in record.manifest["outputs"]["native"]:
        key = out["name"]
        if key not in reference or key not in candidate:
            continue
        a, b = np.asarray(reference[key]), np.asarray(candidate[key])
        kind = kinds.get(key, {})
        scores_from = kind.get("scores_from")
        tol_scores = None
        scores = scores_side.get(scores_from) if scores_from else None
        if scores is not None:
            tol_scores = record.tolerance(scores_from, np.asarray(scores), np.asarray(candidate.get(scores_from, scores)))
        oc = OutputComparison(key, kind.get("kind", "value"), record.tolerance(key, a, b), tol_scores,
                              kind.get("classes"))
        oc.update(a, b, 0, inputs, scores)
        comp.outputs.append(oc.result())
    return comp


def verify(path: str | Path, *, trust: bool = False, reconvert: bool = True, model_class: str | None = None,
           model_args: dict | None = None) -> VerifyReport:
    """Replay one record. Raises BadInputError (exit 2) for a corrupt or newer-schema record, and for a model
    class that cannot be used: one the record names while the caller neither gives ``model_class`` (a file
    path relative to the current folder, or pkg.module:Class) nor ``trust``s the record, a file that is not
    there, or something that is not the framework's model class. Everything else (a changed artifact or
    model source, a model that no longer loads, outputs that moved) is a failed report."""
    t0 = time.perf_counter()
    record = read(path)
    manifest = record.manifest
    chosen = choose(manifest.get("hints") or {}, Path(path), model_class=model_class, model_args=model_args,
                    trust=trust)
    report = VerifyReport(str(path), model=manifest.get("model", ""))
    report.versions = version_changes(manifest.get("environment", {}), report.environment)
    base = Path(path).resolve().parent
    native_path = (base / manifest["native"]["path"]).resolve()
    report.rows = int(next(iter(record.inputs.values())).shape[0]) if record.inputs else 0

    def fail(status: str, reason: str) -> VerifyReport:
        report.verdict, report.status, report.reason = "fail", status, reason
        report.seconds = time.perf_counter() - t0
        return report

    for label, entry, target in (("native", manifest["native"], native_path),
                                 ("onnx", manifest.get("onnx") or {}, None)):
        if label == "onnx" and not entry.get("path"):
            continue
        target = target or (base / entry["path"]).resolve()
        if not target.exists():
            return fail("artifact-changed", f"{label} artifact missing: {target}")
        if sha256_of(target) != entry["sha256"]:
            return fail("artifact-changed", f"artifact changed since record: {target}")
    if chosen.changed:
        return fail("artifact-changed", chosen.changed)
    hints = hints_from(manifest.get("hints") or {}, trust, chosen, Path(path))  # a corrupt entry: exit 2
    try:
        loaded = convert.load(native_path, hints)
    except ModelClassError as exc:  # the class given cannot be one: the caller's input, not today's environment
        raise ModelClassError(f"model class {exc.message}" if exc.path is None else
                              f"model class {exc.path}: {exc.message}", path=path, hint=exc.hint) from None
    except ModelportError as exc:
        return fail("load-failed", f"native model no longer loads: {exc.line()}")
    inputs = record.inputs
    feeds = {s.name: inputs[s.name] for s in loaded.signature.inputs if s.name in inputs}
    if len(feeds) != len(loaded.signature.inputs):
        return fail("load-failed", "the model's inputs today differ from the recorded ones: "
                                   f"{', '.join(loaded.signature.input_names)} vs {', '.join(inputs)}")
    try:
        native_now = loaded.run(feeds)
    except Exception as exc:  # a model that loads but no longer runs is a result, not a crash
        return fail("load-failed", f"native model no longer runs: {type(exc).__name__}: {str(exc)[:160]}")
    native_then, onnx_then = record.outputs("native"), record.outputs("onnx")
    c = _compare("native now vs then", record, native_then, native_now, native_then)
    report.comparisons.append(c)
    onnx_entry = manifest.get("onnx") or {}
    graph = record.onnx_bytes if onnx_entry.get("embedded") else (base / onnx_entry["path"]).read_bytes() \
        if onnx_entry.get("path") else None
    if graph is not None:
        from ..checks.run import OnnxRunner

        try:
            runner = OnnxRunner(graph)
            onnx_now = runner({n: inputs[n] for n in runner.input_names})
            report.comparisons.append(_compare("onnx now vs then", record, onnx_then, onnx_now, onnx_then))
            report.comparisons.append(_compare("native vs onnx now", record, native_now, onnx_now, native_now))
        except (ModelportError, KeyError) as exc:
            report.comparisons.append(Comparison("onnx now vs then", note=f"failed: {exc}"))
        if onnx_entry.get("embedded") and reconvert:
            report.comparisons.append(_reconverted(loaded, record, native_now))
    for comp in report.comparisons:
        movers = MOVERS.get(comp.name, ())
        comp.drift = [f"{k} {v['then']} -> {v['now']}" for k, v in report.versions.items() if k in movers]
    if not all(c.passed for c in report.comparisons):
        moved = [f"{o.name} ({c.name})" for c in report.comparisons for o in c.outputs if not o.passed]
        notes = [c.name + ": " + c.note for c in report.comparisons if c.note and c.note.startswith("failed")]
        return fail("outputs-moved", "; ".join(moved + notes))
    report.seconds = time.perf_counter() - t0
    return report


def _reconverted(loaded, record: Record, native_now: dict) -> Comparison:
    """Today's converter on today's native model, run on the recorded inputs. A remedy other than the one
    the record's graph needed (plain then, ``double`` now) is a change in the converter: it fails."""
    from ..checks.harness import convert_and_check
    from ..checks.run import OnnxRunner

    try:
        result = convert_and_check(loaded, rows=200, write=False)
    except ModelportError as exc:
        return Comparison("reconverted vs native now", note=f"failed: today's conversion: {exc.message}")
    if result.converted is None:
        return Comparison("reconverted vs native now", note="failed: no conversion")
    runner = OnnxRunner(result.converted.model)
    now = runner({n: record.inputs[n] for n in runner.input_names})
    comp = _compare("reconverted vs native now", record, native_now, now, native_now)
    onnx_entry = record.manifest.get("onnx") or {}
    then, today = onnx_entry.get("remedy"), result.converted.remedy
    if not result.passed:
        comp.note = "failed: today's conversion disagrees on synthesized rows"
    elif "remedy" in onnx_entry and then != today:
        tried = ", ".join(f"{remedy_name(a.remedy)} {a.verdict}" for a in result.attempts)
        comp.note = f"failed: remedy changed: {remedy_name(then)} -> {remedy_name(today)} (today: {tried})"
    return comp


def remedy_name(remedy: str | None) -> str:
    return remedy or "plain"


def verify_many(paths, *, trust: bool = False, reconvert: bool = True, model_class: str | None = None,
                model_args: dict | None = None) -> list[VerifyReport]:
    return [verify(p, trust=trust, reconvert=reconvert, model_class=model_class, model_args=model_args)
            for p in paths]


def render_text(report: VerifyReport, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..text import fmt

    status = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    console.print(f"{status} {escape(report.record)}  [dim]{escape(report.model)}, {report.rows} recorded rows[/]")
    if report.reason and not report.comparisons:
        console.print(f"  {escape(report.reason)}", markup=True)
    if report.comparisons:
        table = Table(header_style="bold", pad_edge=False)
        for col in ("comparison", "output", "mismatched", "max abs err", "atol/rtol", ""):
            table.add_column(col, justify="right" if col in ("mismatched", "max abs err", "atol/rtol") else "left")
        for comp in report.comparisons:
            if not comp.outputs:
                table.add_row(comp.name, "-", "-", "-", "-", "[red]FAIL[/]" if not comp.passed else "ok")
            for o in comp.outputs:
                tol = f"{o.atol:.0e}/{o.rtol:.0e}" if o.atol is not None else "exact"
                table.add_row(comp.name, escape(o.name), str(o.mismatched) + (f" +{o.excused} tied" if o.excused else ""),
                              fmt(o.max_abs_error), tol, "[green]ok[/]" if o.passed else "[red]FAIL[/]")
        console.print(table)
        for comp in report.comparisons:
            if comp.note:
                console.print(f"  {comp.name}: {comp.note}", markup=False)
            if not comp.passed and comp.drift:
                console.print(f"  {comp.name} moved; versions that differ from the record: {', '.join(comp.drift)}",
                              markup=False)
        if report.reason:
            console.print(f"  {report.reason}", markup=False)
    if report.versions:
        changed = ", ".join(f"{k} {v['then']} -> {v['now']}" for k, v in report.versions.items())
        console.print(f"  [dim]versions since the record: {escape(changed)}[/]")


def junit_suites(reports) -> list:
    """JUnit: one suite per record; one case per comparison and output (or one error case when it cannot run)."""
    from ..junit import Case, Suite, output_details

    suites = []
    for r in reports:
        suite = Suite(f"modelport.verify:{Path(r.record).name}")
        classname = Path(r.record).stem
        if not r.comparisons:
            suite.cases.append(Case(r.status, classname, r.seconds, r.reason or r.status, error=True))
        for comp in r.comparisons:
            if not comp.outputs:
                suite.cases.append(Case(comp.name, classname, 0.0, comp.note if not comp.passed else None, error=True))
            for o in comp.outputs:
                failure = None
                if not o.passed:
                    failure = f"{o.name} moved ({comp.name}): {o.mismatched} of {o.total} values"
                    if comp.drift:
                        failure += f"; versions changed: {', '.join(comp.drift)}"
                suite.cases.append(Case(f"{comp.name} :: {o.name}", classname, 0.0, failure, output_details([o])))
        if r.reason and r.comparisons and r.status != "outputs-moved":
            suite.cases.append(Case(r.status, classname, 0.0, r.reason, error=True))
        suites.append(suite)
    return suites


__all__ = ["Comparison", "VerifyReport", "VERIFY_SCHEMA", "verify", "verify_many", "render_text"]
