"""The audit as SARIF 2.1.0, for code-scanning dashboards: a result per finding, per failed step and per
version drift; locations relative to the audited folders, URIs percent-encoded from the names' bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from ...text import clean
from ..report import STEPS, AuditReport
from .rows import roots

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
ROOT_ID = "AUDITROOT"

# id, name, default level, short description, full description, help; ids are stable: never renumber
RULES = (
    ("MP001", "code-execution", "error", "Loading this artifact runs code",
     "The static scan found something loading would execute: a pickle global such as os.system, eval, exec or "
     "subprocess, or Python bytecode in a Keras Lambda layer. Whoever wrote the file chooses what runs.",
     "Do not load it. Ask for the model in a format that holds no code (ONNX, safetensors, skops), or "
     "re-export it from its source in a trusted environment."),
    ("MP002", "suspicious-content", "warning", "The scan cannot vouch for something in this artifact",
     "The artifact imports a global that is not on modelport's allowlist for its framework (often a class "
     "of the project that saved it), or carries a construct that could run code.",
     "Check the flagged names. If they are your own classes, load with --trust only in a process you "
     "would run that code in; otherwise treat the file as unsafe."),
    ("MP003", "unscannable", "warning", "The scan could not read this artifact to its end",
     "The file is corrupt or truncated, or uses a construct the scanner does not follow, so its safety is "
     "unknown (the verdict is fail-closed: never safe).",
     "Get an intact copy (compare its sha256 with the source) before loading it."),
    ("MP004", "load-failed", "warning", "The artifact does not load",
     "Loading it with its framework failed, crashed, ran out of time or memory in an isolated worker.",
     "Read the reason and category: version-drift means the installed release cannot read what an older or "
     "newer one wrote; missing-class means the code that defined the model is needed."),
    ("MP005", "convert-failed", "warning", "The artifact does not convert to ONNX",
     "The model loads, but the conversion to ONNX failed or no converter covers it.",
     "Run modelport convert on it for the full message and the remedies tried."),
    ("MP006", "check-failed", "warning", "The ONNX conversion computes something else",
     "The converted model disagrees with the original on synthesized inputs, or the comparison could not run.",
     "Run modelport check on it with your own rows (--inputs) to see which outputs differ and by how much."),
    ("MP007", "version-drift", "note", "Saved with another release than the one installed",
     "The artifact records a library version that differs from the installed one; it may load differently or "
     "not at all.",
     "Pin the release it was saved with, or re-save it with the installed one and record a golden record."),
    ("MP008", "scan-note", "note", "Something the scan noticed",
     "An informational finding of the static scan (for instance weights missing from a SavedModel).",
     "Nothing to do unless it is unexpected."),
)
_RULE_INDEX = {r[0]: i for i, r in enumerate(RULES)}
_BY_SEVERITY = {"unsafe": "MP001", "suspicious": "MP002", "unknown": "MP003", "info": "MP008"}
_BY_STEP = {"load": "MP004", "convert": "MP005", "check": "MP006"}
_SECURITY = {"MP001": "9.0", "MP002": "5.0", "MP003": "4.0"}  # GitHub code scanning's severity scale


def _uri(path: str) -> str:
    """A relative URI reference for a relative path, percent-encoded from its bytes."""
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")


def _root_uri(root: str) -> str:
    uri = Path(root).resolve().as_uri()
    return uri if uri.endswith("/") else uri + "/"


def to_sarif(report: AuditReport) -> dict:
    """SARIF 2.1.0: one run; a result per finding (MP001-MP003, MP008), per step that failed or could not be
    done (MP004-MP006) and per version drift (MP007). Locations are relative to ``AUDITROOT`` (the audited
    folder, as a file URI in ``originalUriBaseIds``); a second root is ``AUDITROOT2`` and so on."""
    from ...console import version as modelport_version

    version = report.environment.get("modelport") or modelport_version()
    base_ids = {root: ROOT_ID if i == 0 else f"{ROOT_ID}{i + 1}" for i, root in enumerate(roots(report))}
    rules = [{"id": rid, "name": name, "shortDescription": {"text": short}, "fullDescription": {"text": full},
              "help": {"text": help_text}, "defaultConfiguration": {"level": level},
              "properties": {"tags": ["security", "ml-model"] if rid in _SECURITY else ["ml-model"],
                             **({"security-severity": _SECURITY[rid]} if rid in _SECURITY else {})}}
             for rid, name, level, short, full, help_text in RULES]
    artifacts, results = [], []
    for index, row in enumerate(report.artifacts):
        location = {"uri": _uri(row.path), "uriBaseId": base_ids[row.root]}
        artifact = {"location": location, "length": row.size, "roles": ["analysisTarget"],
                    "properties": {"format": row.format, "framework": row.framework, "safety": row.safety}}
        if row.sha256:
            artifact["hashes"] = {"sha-256": row.sha256}
        artifacts.append(artifact)

        def result(rule: str, level: str, text: str, where: str = "", props: dict | None = None) -> None:
            loc: dict = {"physicalLocation": {"artifactLocation": dict(location, index=index)}}
            if where:
                loc["logicalLocations"] = [{"name": clean(where), "kind": "element"}]
            message = clean(text + (f" (at {where})" if where else ""))
            key = hashlib.sha256(f"{rule}\0{row.root}\0{row.path}\0{text}\0{where}".encode("utf-8", "surrogateescape"))
            item = {"ruleId": rule, "ruleIndex": _RULE_INDEX[rule], "level": level, "message": {"text": message},
                    "locations": [loc], "partialFingerprints": {"modelportResult/v1": key.hexdigest()[:32]}}
            if props:
                item["properties"] = props
            results.append(item)

        for f in row.findings:
            severity = f.get("severity", "unknown")
            rule = _BY_SEVERITY.get(severity, "MP003")
            level = {"unsafe": "error", "info": "note"}.get(severity, "warning")
            result(rule, level, str(f.get("what", "")), str(f.get("where") or ""),
                   {"safety": row.safety, "severity": severity})
        for step in STEPS:
            o = row.outcome(step)
            if o is None or not (o.failed or o.status in ("unsupported", "needs-input")):
                continue
            props = {"status": o.status, **({"category": o.category} if o.category else {})}
            result(_BY_STEP[step], "warning" if o.failed else "note", f"{step} {o.status}: {o.reason}", props=props)
        for key, d in row.drift.items():
            if d in ("older", "newer", "not installed"):
                now = row.installed.get(key)
                text = (f"saved with {key} {row.saved_with.get(key)}, " +
                        (f"installed {now} ({d})" if now else "not installed here"))
                result("MP007", "note", text, props={"library": key, "drift": d})
    run = {
        "tool": {"driver": {"name": "modelport", "version": version, "semanticVersion": version, "rules": rules}},
        "invocations": [{"executionSuccessful": True, "exitCode": report.exit_code,
                         "properties": {"options": report.options}}],
        "originalUriBaseIds": {bid: {"uri": _root_uri(root)} for root, bid in base_ids.items()},
        "artifacts": artifacts,
        "results": results,
        "properties": {"schema": report.schema, "summary": report.summary,
                       "skipped": [{"path": clean(sk.path), "reason": clean(sk.reason)} for sk in report.skipped],
                       "environment": report.environment, "confinement": report.confinement},
    }
    if not base_ids:  # nothing found: still say where we looked
        run["originalUriBaseIds"] = {ROOT_ID: {"uri": _root_uri(report.roots[0])}} if report.roots else {}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def to_sarif_json(report: AuditReport) -> str:
    return json.dumps(to_sarif(report), indent=2, default=str) + "\n"
