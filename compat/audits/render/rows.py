"""What the audit's views say about a row and about the whole report: the one headline per artifact, the
versions that wrote it, the verdict line, the summary lines. Shared by the terminal table, the HTML page
and SARIF; every text here may come from an untrusted file, so it goes through ``compat.text.clean``."""

from __future__ import annotations

from pathlib import Path

from ...text import clean
from ..report import FAILED, STEPS, AuditReport, AuditRow

SAFETY_RANK = {"unsafe": 0, "suspicious": 1, "unknown": 2, "safe": 3}  # worst first
_TONES = {"ok": "good", "migrated": "good", "pass": "good", "weights": "good", "not-needed": "good",
          "refused": "warn", "needs-input": "warn", "unsupported": "warn", "skipped": "muted"}
TONE_RANK = {"bad": 0, "warn": 1, "muted": 2, "good": 3}


def tone(status: str | None) -> str:
    """``good`` | ``warn`` | ``bad`` | ``muted`` for a step status."""
    if status is None:
        return "muted"
    return "bad" if status in FAILED else _TONES.get(status, "muted")


def roots(report: AuditReport) -> list[str]:
    seen: list[str] = []
    for r in report.artifacts:
        if r.root not in seen:
            seen.append(r.root)
    return seen


def display_path(row: AuditRow, several_roots: bool = False) -> str:
    """The row's path relative to its root (prefixed with the root's name when the audit had several)."""
    return clean(f"{Path(row.root).name}/{row.path}" if several_roots else row.path)


def versions(row: AuditRow) -> list[tuple[str, str]]:
    """(``library version``, drift note) for what wrote the artifact; the note is empty when the installed
    release is the same (``now 1.9.1``, ``not installed``)."""
    sw = row.saved_with
    out = []
    for key in ("sklearn", "skops", "torch", "keras", "tensorflow"):
        if sw.get(key):
            out.append((f"{key} {sw[key]}", _drift_note(row, key)))
    if sw.get("producer"):
        out.append((str(sw["producer"]), ""))
    if sw.get("onnx_opset"):
        out.append((f"opset {sw['onnx_opset']}", _drift_note(row, "onnx_opset")))
    if not out and sw.get("torch_archive_version"):
        out.append((f"torch archive v{sw['torch_archive_version']}", ""))
    return [(clean(text), note) for text, note in out]


def _drift_note(row: AuditRow, key: str) -> str:
    d = row.drift.get(key)
    if d in ("older", "newer"):
        now = row.installed.get(key)
        return f"max {now} here" if key == "onnx_opset" and d == "newer" else f"now {now}"
    return "not installed" if d == "not installed" else ""


def _finding_text(f: dict) -> str:
    return clean(str(f.get("what", "")))


def headline(row: AuditRow) -> tuple[str, str]:
    """(tone or safety, text): the one thing to know about an artifact, worst first: an unsafe finding,
    a failed step, a suspicious/unknown finding, a step that could not be done, version drift; else
    how it went."""
    def first(severity: str):
        return next((f for f in row.findings if f.get("severity") == severity), None)

    if row.safety == "unsafe":
        f = first("unsafe") or (row.findings[0] if row.findings else None)
        return "unsafe", _finding_text(f) if f else "the static scan calls it unsafe"
    for step in STEPS:
        o = row.outcome(step)
        if o is not None and o.failed:
            return "bad", clean(f"{step} {o.status}: {o.reason}")
    if row.safety in ("suspicious", "unknown"):
        f = first(row.safety) or (row.findings[0] if row.findings else None)
        return row.safety, _finding_text(f) if f else f"the static scan calls it {row.safety}"
    for step in STEPS:
        o = row.outcome(step)
        if o is not None and tone(o.status) == "warn":
            return "warn", clean(f"{step} {o.status}: {o.reason}")
    if row.drifted:
        return "warn", clean("saved with " + ", ".join(row.drifted))
    check = row.outcome("check")
    if check is not None and check.status == "pass":
        return "good", clean(check.reason)
    return "good", ""


def count_text(counts: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"


def summary_lines(report: AuditReport) -> list[str]:
    """The summary as plain lines: counts by safety and step outcome, skipped files with their reasons."""
    s = report.summary
    lines = [f"{s['artifacts']} artifact(s) · safety: {count_text(s['safety'])}"]
    steps = [f"{step}: {count_text(s[step])}" for step in STEPS if step in s]
    lines.append(" · ".join(steps) if steps else "static scan only: nothing was loaded, converted or checked")
    tail = [f"{s['skipped']} file(s) skipped" + (f" ({count_text(s['skipped_by_reason'])})" if s["skipped"] else "")]
    if s["drifted"]:
        tail.append(f"{s['drifted']} saved with another library release than the installed one")
    if report.options.get("scheduler"):
        workers = report.workers.get("dask_workers")
        tail.append(f"{report.seconds:.1f} s on Dask {report.options['scheduler']}"
                    + (f" ({workers} worker(s))" if workers else ""))
    else:
        tail.append(f"{report.seconds:.1f} s with {report.options.get('jobs', '?')} job(s)")
    lines.append(" · ".join(tail))
    if report.cache:
        c = report.cache
        lines.append(f"result cache: {c.get('hits', 0)} reused, {c.get('stored', 0)} stored"
                     + (f", {c['stale']} judged by other versions and redone" if c.get("stale") else "")
                     + f" ({c.get('dir', '')})")
    if report.confinement:
        lines.append(confinement_line(report.confinement))
    return lines


def confinement_line(confinement: dict) -> str:
    """One line: the confinement layers in force for every file's processes, and those that were not."""
    held = [layer for layer, c in confinement.items() if c.get("in_force")]
    lacking = [f"{layer} ({c['missing'][0]})" if c.get("missing") else layer
               for layer, c in confinement.items() if not c.get("in_force")]
    line = "confinement: " + (", ".join(held) or "none")
    return line + (f" · not in force: {'; '.join(lacking)}" if lacking else "")


def verdict(report: AuditReport) -> tuple[int, str]:
    """(exit code, one line saying why)."""
    if report.found_nothing:
        return 2, f"exit 2: no model files under {', '.join(report.roots)} (--strict fails an audit that finds none)"
    failing = [r for r in report.artifacts if report.failing(r)]
    if not failing:
        extra = "" if report.strict else " (--strict also fails on suspicious files and failed steps)"
        return 0, f"exit 0: no unsafe or unknown artifact{extra}"
    unsafe = sum(r.safety == "unsafe" for r in failing)
    unknown = sum(r.safety == "unknown" for r in failing)
    parts = [f"{unsafe} unsafe"] if unsafe else []
    if unknown:
        parts.append(f"{unknown} unknown (not read to its end)")
    if len(failing) > unsafe + unknown:
        parts.append(f"{len(failing) - unsafe - unknown} suspicious or failed (--strict)")
    names = ", ".join(clean(r.path) for r in failing[:3]) + (", …" if len(failing) > 3 else "")
    return 1, f"exit 1: {' and '.join(parts)} artifact(s): {names}"
