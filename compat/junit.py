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
    from convert.atomic import write_atomic

    return write_atomic(Path(path), to_xml(suites))


def output_details(outputs) -> str:
    lines = []
    for o in outputs:
        line = f"{o.name}: mismatched {o.mismatched}/{o.total}, max abs err {o.max_abs_error}"
        if o.worst:
            line += f", worst row {o.worst['row']}: native {o.worst['native']!r} vs onnx {o.worst['onnx']!r}"
        lines.append(line)
    return "\n".join(lines)
