"""JUnit XML, the lowest common denominator every CI system reads (Jenkins, GitLab, GitHub, Azure...)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None  # the message; None: passed
    details: str = ""
    error: bool = False  # an error (could not run) rather than a failure (ran and disagreed)
    skipped: str | None = None


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)


def to_xml(suites: list[Suite]) -> bytes:
    root = ET.Element("testsuites")
    for suite in suites:
        failures = sum(1 for c in suite.cases if c.failure and not c.error)
        errors = sum(1 for c in suite.cases if c.failure and c.error)
        skipped = sum(1 for c in suite.cases if c.skipped)
        node = ET.SubElement(root, "testsuite", name=suite.name, tests=str(len(suite.cases)), failures=str(failures),
                             errors=str(errors), skipped=str(skipped),
                             time=f"{sum(c.seconds for c in suite.cases):.3f}")
        for case in suite.cases:
            tc = ET.SubElement(node, "testcase", name=case.name, classname=case.classname, time=f"{case.seconds:.3f}")
            if case.failure:
                el = ET.SubElement(tc, "error" if case.error else "failure", message=case.failure[:500])
                el.text = case.details or case.failure
            elif case.skipped:
                ET.SubElement(tc, "skipped", message=case.skipped)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write(suites: list[Suite], path: str | Path) -> Path:
    from convert.onnxfile import write_atomic

    return write_atomic(Path(path), to_xml(suites))


def _output_details(outputs) -> str:
    lines = []
    for o in outputs:
        line = f"{o.name}: mismatched {o.mismatched}/{o.total}, max abs err {o.max_abs_error}"
        if o.worst:
            line += f", worst row {o.worst['row']}: native {o.worst['native']!r} vs onnx {o.worst['onnx']!r}"
        lines.append(line)
    return "\n".join(lines)


def from_check(report) -> list[Suite]:
    """One test case per output of a check report."""
    suite = Suite("modelport.check")
    classname = Path(report.native).name
    for o in report.outputs:
        failure = None if o.passed else f"{o.name}: {o.mismatched} of {o.total} values disagree" + (
            f" ({o.note})" if o.note else "")
        suite.cases.append(Case(o.name, classname, report.timings.get("check", 0.0) / max(len(report.outputs), 1),
                                failure, _output_details([o])))
    return [suite]


def from_verify(reports) -> list[Suite]:
    """One suite per record; one case per comparison and output (or one error case when it cannot run)."""
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
                suite.cases.append(Case(f"{comp.name} :: {o.name}", classname, 0.0, failure, _output_details([o])))
        if r.reason and r.comparisons and r.status != "outputs-moved":
            suite.cases.append(Case(r.status, classname, 0.0, r.reason, error=True))
        suites.append(suite)
    return suites


# step statuses that are neither a pass nor a failure: the step was not done (see compat.audits.STATUSES)
_AUDIT_PASSED = ("ok", "pass", "weights")
_AUDIT_ERRORS = ("crashed", "timeout", "out-of-memory", "error")  # could not run, rather than ran and failed


def from_audit(report) -> list[Suite]:
    """One suite "modelport audit"; per artifact a case for its safety and, unless the audit was static, one
    each for load, convert and check. Unsafe and unknown fail, as they fail the exit code (with strict,
    suspicious too); a failed step
    fails, a crashed/timed-out/out-of-memory one is an error; a step not done is skipped."""
    from .audits import FAILED, STEPS
    from .audit_render import clean, display_path

    suite = Suite("modelport audit")
    several = len({r.root for r in report.artifacts}) > 1
    for row in report.artifacts:
        classname = display_path(row, several)
        findings = "\n".join(clean(f"{f.get('severity')}: {f.get('what')}" + (f" (at {f['where']})" if f.get("where")
                                                                                else "")) for f in row.findings)
        failure = None
        if report.failing(row) and row.safety != "safe":
            worst = next((f for f in row.findings if f.get("severity") == row.safety), None)
            failure = f"{row.safety}: " + (clean(worst["what"]) if worst else "the static scan does not vouch for it")
        suite.cases.append(Case("safety", classname, 0.0, failure, findings))
        for step in STEPS:
            o = row.outcome(step)
            if o is None:
                continue
            reason = clean(f"{o.status}: {o.reason}" + (f" ({o.category})" if o.category else ""))
            if o.status in FAILED:
                suite.cases.append(Case(step, classname, o.seconds, reason, error=o.status in _AUDIT_ERRORS))
            elif o.status in _AUDIT_PASSED:
                suite.cases.append(Case(step, classname, o.seconds))
            else:
                suite.cases.append(Case(step, classname, o.seconds, skipped=reason))
    return [suite]
