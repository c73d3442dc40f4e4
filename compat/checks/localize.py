"""Why a conversion disagrees: the first step whose output diverges, the rows, and a cause.

When every remedy fails, "the outputs disagree" is not an answer. Like Polygraphy's ``debug reduce``, the
model is cut where the adapter can cut it (a scikit-learn pipeline after each step), each leading part is
converted with the same remedy and checked on the same rows, and the first part that disagrees names the
step. The cause is the adapter's known cause for what was seen (``convert.known_causes``) when there is
one, otherwise a description of what was observed: which output, how, on which rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import convert
from convert.errors import ModelportError

from .compare import OutputStats


@dataclass
class StepCheck:
    """One leading part of the model, converted and checked on its own."""

    step: str
    verdict: str  # "pass" | "fail" | "unavailable" (it does not convert on its own)
    mismatched: int = 0
    margin: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"step": self.step, "verdict": self.verdict, "mismatched": self.mismatched, "margin": self.margin,
                "reason": self.reason}


@dataclass
class Diagnosis:
    """Where and why: ``step`` the first part whose output diverges (None: not localised to a step),
    ``rows`` rows that disagree, ``cause`` the known cause (``known``) or what was observed."""

    outputs: list[str]
    rows: list[int]
    cause: str
    known: bool = False
    step: str | None = None
    steps: list[StepCheck] = field(default_factory=list)

    def line(self) -> str:
        where = f"diverges first at {self.step}" if self.step else "disagrees"
        rows = ", ".join(str(r) for r in self.rows[:8]) + (" ..." if len(self.rows) > 8 else "")
        return f"{where} ({', '.join(self.outputs)}; rows {rows}): {self.cause}"

    def to_dict(self) -> dict:
        return {"step": self.step, "outputs": self.outputs, "rows": self.rows, "cause": self.cause,
                "known_cause": self.known, "steps": [s.to_dict() for s in self.steps], "summary": self.line()}


def describe(loaded: convert.Loaded, outputs: list[OutputStats]) -> Diagnosis:
    """The cause of a failed check from its statistics alone: a known cause when the adapter has one for
    what was seen, else what was seen."""
    failed = [o for o in outputs if not o.passed]
    symptoms = set().union(*(o.symptoms for o in failed)) if failed else set()
    rows = sorted({r for o in failed for r in o.failed_rows})
    known = convert.known_causes(loaded, symptoms)
    if known:
        cause = "; ".join(f"{who}: {why}" for who, why in dict(known).items())
    else:
        cause = "; ".join(_observed(o) for o in failed) or "no output disagrees"
    return Diagnosis([o.name for o in failed], rows, cause, bool(known))


def localize(loaded: convert.Loaded, outputs: list[OutputStats], remedy: str | None, check_part) -> Diagnosis:
    """``describe``, plus the first leading part of the model (``convert.stages``) whose own conversion with
    ``remedy`` fails ``check_part(part_loaded, onnx_model) -> Report``."""
    diagnosis = describe(loaded, outputs)
    for name, part in convert.stages(loaded):
        try:
            converted = convert.to_onnx(part, remedy=remedy)
            report = check_part(part, converted.model)
        except ModelportError as exc:
            diagnosis.steps.append(StepCheck(name, "unavailable", reason=exc.message))
            continue
        out = report.outputs[0] if report.outputs else None
        diagnosis.steps.append(StepCheck(name, report.verdict, out.mismatched if out else 0,
                                         out.margin if out else None))
        if not report.passed:
            diagnosis.step = name
            part_diagnosis = describe(part, report.outputs)  # what the diverging step shows says more
            diagnosis.cause, diagnosis.known = part_diagnosis.cause, part_diagnosis.known
            diagnosis.outputs = part_diagnosis.outputs
            diagnosis.rows = part_diagnosis.rows or diagnosis.rows
            return diagnosis
    if diagnosis.steps and all(s.verdict == "pass" for s in diagnosis.steps):
        diagnosis.step = "the final step (every step before it agrees)"
    return diagnosis


def _observed(o: OutputStats) -> str:
    w = o.worst or {}
    at = f" (row {w['row']}: native {w.get('native')!r}, onnx {w.get('onnx')!r})" if "row" in w else ""
    if o.note_blocks:
        return f"{o.name}: {o.note}"
    if o.nan_mismatched:
        return f"{o.name}: NaN on one side only in {o.nan_mismatched} of {o.total} values{at}"
    if o.kind == "label":
        by = f" where the native {o.decided_by} is not tied within its noise" if o.decided_by else ""
        return f"{o.name}: {o.mismatched} of {o.total} labels differ{by}{at}"
    margin = f", up to {o.margin:.3g}x what is allowed" if o.margin is not None else ""
    return f"{o.name}: {o.mismatched} of {o.total} values beyond tolerance and noise floor{margin}{at}"
