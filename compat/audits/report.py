"""What an audit found, as data: one ``AuditRow`` per artifact (static facts and the outcome of each step),
the files skipped, the summary and the exit code. Views (``render``) and the JSON schema
``modelport.audit/1`` read these; nothing here runs anything."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

AUDIT_SCHEMA = "modelport.audit/1"
STEPS = ("load", "convert", "check")
DEFAULT_TIMEOUT = 300.0  # seconds per artifact, every step included
SAFETY = ("safe", "suspicious", "unsafe", "unknown")

# step statuses that mean "it was tried and did not work" (--strict fails on them)
FAILED = frozenset(("failed", "crashed", "timeout", "out-of-memory", "fail", "error"))
# statuses per step, for renderers and documentation
STATUSES = {
    "load": ("ok", "migrated", "weights", "needs-input", "refused", "failed", "unsupported", "crashed", "timeout", "out-of-memory",
             "skipped"),
    "convert": ("ok", "needs-input", "unsupported", "not-needed", "failed", "crashed", "timeout", "out-of-memory",
                "skipped"),
    "check": ("pass", "fail", "error", "skipped", "crashed", "timeout", "out-of-memory"),
}


@dataclass
class Outcome:
    """How one step went: ``status`` (see STATUSES), a one-line ``reason``, and for failures a ``category``:
    ``version-drift`` | ``missing-class`` | ``corrupt`` | ``unsafe`` | ``needs-input`` | ``dependency`` |
    ``crash`` | ``timeout`` | ``out-of-memory`` | ``other``."""

    status: str
    reason: str = ""
    category: str | None = None
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    def to_dict(self) -> dict:
        out = {"status": self.status, "reason": self.reason, "seconds": round(self.seconds, 3)}
        if self.category:
            out["category"] = self.category
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Outcome":
        return cls(d["status"], d.get("reason", ""), d.get("category"), d.get("seconds", 0.0), d.get("details", {}))


@dataclass
class AuditRow:
    """One artifact. ``path`` is relative to ``root``; ``load``/``convert``/``check`` are None with ``static``."""

    path: str
    root: str
    format: str | None
    framework: str | None
    size: int = 0
    sha256: str = ""
    saved_with: dict = field(default_factory=dict)
    installed: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)  # key -> "same" | "older" | "newer" | "unknown"
    safety: str = "unknown"
    findings: list[dict] = field(default_factory=list)  # {"what", "severity", "where"}
    flagged: list[str] = field(default_factory=list)  # globals that are not on the allowlist
    load: Outcome | None = None
    convert: Outcome | None = None
    check: Outcome | None = None
    seconds: float = 0.0
    peak_rss_mb: float | None = None

    def outcome(self, step: str) -> Outcome | None:
        return getattr(self, step)

    @property
    def failed(self) -> bool:
        return any(o is not None and o.failed for o in (self.load, self.convert, self.check))

    @property
    def drifted(self) -> list[str]:
        """``key saved → installed`` for every library whose version differs from the one installed."""
        return [f"{k} {self.saved_with.get(k)} → {self.installed.get(k)}" for k, d in self.drift.items()
                if d in ("older", "newer")]

    def to_dict(self) -> dict:
        out = {"path": self.path, "root": self.root, "format": self.format, "framework": self.framework,
               "size": self.size, "sha256": self.sha256, "saved_with": self.saved_with, "installed": self.installed,
               "drift": self.drift, "safety": self.safety, "findings": self.findings, "flagged": self.flagged}
        for step in STEPS:
            o = self.outcome(step)
            if o is not None:
                out[step] = o.to_dict()
        out["seconds"] = round(self.seconds, 3)
        if self.peak_rss_mb is not None:
            out["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        return out


@dataclass
class Skipped:
    """A file that is no model (or could not be read as one), counted with the reason."""

    path: str
    root: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "root": self.root, "reason": self.reason}


@dataclass
class AuditReport:
    roots: list[str]
    artifacts: list[AuditRow]
    skipped: list[Skipped] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    seconds: float = 0.0
    schema: str = AUDIT_SCHEMA
    workers: dict = field(default_factory=dict)  # {"processes", "lost", "slots"}: see pool.Pool.stats
    confinement: dict = field(default_factory=dict)  # layer -> {"in_force", "by", "missing"}: confine.summarize
    cache: dict = field(default_factory=dict)  # {"dir", "hits", "misses", "stale", "stored"} when a cache was used

    @property
    def strict(self) -> bool:
        return bool(self.options.get("strict"))

    def failing(self, row: AuditRow) -> bool:
        """Does this row make the audit exit 1? Unsafe, and unknown (the scan could not read to its end what
        a loader would read: fail closed), always; with strict also suspicious and any failed step."""
        if row.safety in ("unsafe", "unknown"):
            return True
        return self.strict and (row.safety != "safe" or row.failed)

    @property
    def found_nothing(self) -> bool:
        """With strict, an audit that found no model file fails: a mistyped folder in CI must not pass."""
        return self.strict and not self.artifacts

    @property
    def exit_code(self) -> int:
        if self.found_nothing:
            return 2
        return 1 if any(self.failing(r) for r in self.artifacts) else 0

    @property
    def summary(self) -> dict:
        def count(values) -> dict:
            return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], str(kv[0]))))

        reasons = count(_skip_kind(s.reason) for s in self.skipped)
        summary = {
            "artifacts": len(self.artifacts),
            "skipped": len(self.skipped),
            "skipped_by_reason": reasons,
            "formats": count(r.format or "unknown" for r in self.artifacts),
            "frameworks": count(r.framework or "unknown" for r in self.artifacts),
            "safety": {k: sum(r.safety == k for r in self.artifacts) for k in SAFETY},
        }
        if not self.options.get("static"):
            for step in STEPS:
                summary[step] = count(r.outcome(step).status for r in self.artifacts if r.outcome(step) is not None)
        summary["failed"] = sum(r.failed for r in self.artifacts)
        summary["drifted"] = sum(bool(r.drifted) for r in self.artifacts)
        summary["exit_code"] = self.exit_code
        return summary

    def to_dict(self) -> dict:
        return {"schema": self.schema, "roots": self.roots, "options": self.options, "summary": self.summary,
                "artifacts": [r.to_dict() for r in self.artifacts], "skipped": [s.to_dict() for s in self.skipped],
                "environment": self.environment, "seconds": round(self.seconds, 3), "workers": self.workers,
                "confinement": self.confinement, **({"cache": self.cache} if self.cache else {})}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=str) + "\n"


def _skip_kind(reason: str) -> str:
    """The short kind of a skip reason (``not a model: a CSV text file`` -> ``not a model``)."""
    return reason.split(":", 1)[0]
