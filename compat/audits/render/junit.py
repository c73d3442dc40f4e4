"""The audit as JUnit XML: a suite "modelport audit", a case per artifact and aspect."""

from __future__ import annotations

from ...junit import Case, Suite, to_xml
from ...text import clean
from ..report import FAILED, STEPS
from .rows import display_path

# step statuses that are neither a pass nor a failure: the step was not done (see compat.audits.STATUSES)
_AUDIT_PASSED = ("ok", "migrated", "pass", "weights")
_AUDIT_ERRORS = ("crashed", "timeout", "out-of-memory", "error")  # could not run, rather than ran and failed


def from_audit(report) -> list[Suite]:
    """One suite "modelport audit"; per artifact a case for its safety and, unless the audit was static, one
    each for load, convert and check. Unsafe and unknown fail, as they fail the exit code (with strict,
    suspicious too); a failed step
    fails, a crashed/timed-out/out-of-memory one is an error; a step not done is skipped."""
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


def to_junit(report) -> bytes:
    return to_xml(from_audit(report))
