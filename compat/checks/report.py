"""The result of a check, and how it is shown: a terminal table, JSON (stable, versioned)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from convert.versions import TRACKED, environment  # noqa: F401 -- where reports have always found them

from ..text import fmt
from .compare import NOISE_DRAWS, NOISE_FACTOR, OutputStats

CHECK_SCHEMA = "modelport.check/1"




@dataclass
class Attempt:
    """One conversion tried by ``compat.convert``: which remedy, and how its check went."""

    remedy: str | None
    verdict: str  # "pass" | "fail" | "unavailable" | "unchecked"
    mismatched: int = 0
    reason: str | None = None
    seconds: float = 0.0
    within_noise: int = 0  # elements or labels that agree only within the native model's measured noise

    def to_dict(self) -> dict:
        return {"remedy": self.remedy or "none", "verdict": self.verdict, "mismatched": self.mismatched,
                "reason": self.reason, "seconds": round(self.seconds, 3), "within_noise": self.within_noise}


@dataclass
class Report:
    verdict: str  # "pass" | "fail"
    native: str
    onnx: str | None
    model: str = ""
    outputs: list[OutputStats] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # {"source": ..., "rows": ...}
    remedies: list[Attempt] = field(default_factory=list)
    conversion: dict = field(default_factory=dict)  # remedy in use, notes, opset, seconds
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=environment)
    migration: list[dict] = field(default_factory=list)  # what loading brought forward from an older release
    schema: str = CHECK_SCHEMA
    diagnosis: object | None = None  # localize.Diagnosis for a failed check: where and why

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "verdict": self.verdict,
            "native": self.native,
            "onnx": self.onnx,
            "model": self.model,
            "inputs": self.inputs,
            "outputs": [o.to_dict() for o in self.outputs],
            "remedies": [a.to_dict() for a in self.remedies],
            "conversion": self.conversion,
            "notes": self.notes,
            "migrated": self.migration,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "environment": self.environment,
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"


# ---------------------------------------------------------------------------------------------
# terminal


def render_text(report: Report, console) -> None:
    """Print ``report`` as a table plus a one-line verdict (``console`` is a rich Console)."""
    from rich.markup import escape
    from rich.table import Table

    title = escape(f"{report.native} → {report.onnx or '(in memory)'}")
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for col, just in (("output", "left"), ("compared", "right"), ("mismatched", "right"), ("max abs err", "right"),
                      ("max rel err", "right"), ("tolerance", "right"), ("margin", "right"), ("", "left")):
        table.add_column(col, justify=just, no_wrap=True)
    for o in report.outputs:
        mism = f"{o.mismatched}" + (f" ({o.mismatch_fraction:.1%})" if o.mismatched and o.total else "")
        if o.excused:
            mism += f" +{o.excused} tied"
        status = "[green]ok[/]" if o.passed else "[red]FAIL[/]"
        margin = f"{o.margin:.2g}" if o.margin is not None else ""
        table.add_row(escape(o.name), str(o.total), mism, fmt(o.max_abs_error), fmt(o.max_rel_error),
                      escape(tolerance_cell(o)), margin, status)
    console.print(table)
    plain = lambda text: console.print(text, markup=False)  # noqa: E731  (user text may hold brackets)
    for o in report.outputs:
        if o.note:
            plain(f"  note on {o.name}: {o.note}")
        for line in noise_lines(o):
            plain(f"  {line}")
        if not o.passed and o.worst:
            w = o.worst
            plain(f"  worst {o.name}: row {w['row']}" + (f" index {w['index']}" if w.get("index") else "")
                  + f": native {w['native']!r} vs onnx {w['onnx']!r}")
            if w.get("input"):
                plain(f"    input: {_short_dict(w['input'])}")
    if report.diagnosis is not None and not report.passed:
        d = report.diagnosis
        plain(f"  why: {d.line()}")
        for step in d.steps:
            plain(f"    {step.step}: {step.verdict}" + (f" ({step.reason})" if step.reason else "")
                  + (f", {step.mismatched} mismatched" if step.mismatched else ""))
    conv = report.conversion
    if conv:
        remedy = conv.get("remedy") or "none"
        plain(f"  conversion: remedy {remedy}" + (f", opset {conv['opset']}" if conv.get("opset") else "")
              + (f", {conv['seconds']:.2f} s" if conv.get("seconds") is not None else ""))
        for note in conv.get("notes", []):
            plain(f"    - {note}")
    if len(report.remedies) > 1:
        tried = ", ".join(f"{a.remedy or 'none'}: {a.verdict}" + (f" ({a.mismatched} mismatched)" if a.mismatched else "")
                          for a in report.remedies)
        plain(f"  tried: {tried}")
    for note in report.notes:
        plain(f"  note: {note}")
    rows = report.inputs.get("rows")
    src = escape(str(report.inputs.get("source", "?")))
    if report.passed:
        excused = sum(o.excused for o in report.outputs)
        extra = f" ({excused} label(s) on tied decisions excused)" if excused else ""
        console.print(f"[bold green]PASS[/]: outputs agree on {rows} rows from {src}{extra}")
    else:
        bad = escape(", ".join(o.name for o in report.outputs if not o.passed))
        console.print(f"[bold red]FAIL[/]: {bad} disagree(s) on {rows} rows from {src}")


SOURCE_TAGS = {"noise floor": "floor", "--tol": "--tol", "--rtol/--atol": "--rtol/--atol"}


def tolerance_cell(o: OutputStats) -> str:
    """``exact``, or ``atol/rtol`` followed by where it came from when that is not the dtype default."""
    if o.atol is None:
        return "exact"
    tag = SOURCE_TAGS.get(o.tolerance_source or "")
    return f"{o.atol:.0e}/{o.rtol:.0e}" + (f" {tag}" if tag else "")


def noise_lines(o: OutputStats) -> list[str]:
    """What agreement on this output rests on, beyond its default tolerance."""
    lines = []
    if o.noise_elements:
        lines.append(f"{o.name}: {o.noise_elements} value(s) beyond the default tolerance agree within their noise "
                     f"floor ({NOISE_FACTOR:g}x the change {NOISE_DRAWS} {o.noise_precision}-perturbed native runs "
                     f"show; largest floor {fmt(o.noise_floor_max)}, margin {o.margin:.2g})")
    if o.excused or (o.kind == "label" and o.mismatched and o.decided_by):
        by = o.decided_by or "decision"
        lines.append(f"{o.name}: judged by what predict decides with ({by}); {o.excused} label(s) differ where it is "
                     f"tied within its noise (excused, not hidden), {o.mismatched} where it is not")
    return lines


def _short_dict(d: dict, limit: int = 160) -> str:
    text = ", ".join(f"{k}={v}" for k, v in d.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def junit_suites(report) -> list:
    """JUnit: one test case per output of a check report."""
    from ..junit import Case, Suite, output_details

    suite = Suite("modelport.check")
    classname = Path(report.native).name
    for o in report.outputs:
        failure = None if o.passed else f"{o.name}: {o.mismatched} of {o.total} values disagree" + (
            f" ({o.note})" if o.note else "") + (f"; {report.diagnosis.line()}" if report.diagnosis is not None else "")
        suite.cases.append(Case(o.name, classname, report.timings.get("check", 0.0) / max(len(report.outputs), 1),
                                failure, output_details([o])))
    return [suite]
