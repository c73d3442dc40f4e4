"""What every static scanner returns: findings, the globals a pickle would import, a pickle scan's result,
and how verdicts combine. A leaf: it imports nothing of modelport."""

from __future__ import annotations

from dataclasses import dataclass, field

SAFETY_ORDER = ("safe", "unknown", "suspicious", "unsafe")  # worst last


@dataclass(frozen=True)
class Finding:
    """Something a static pass noticed. ``severity``: ``unsafe`` | ``suspicious`` | ``unknown`` | ``info``."""

    what: str
    severity: str
    where: str = ""


@dataclass(frozen=True)
class GlobalRef:
    """A global a pickle would import (``module.name``) and what the allowlist says about it."""

    module: str
    name: str
    verdict: str  # "safe" | "suspicious" | "unsafe"
    where: str = ""  # first place seen, e.g. "stream 1 @ byte 312" or "archive/data.pkl @ byte 40"
    count: int = 1

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class PickleScan:
    """Result of a static scan of every pickle stream in one file.

    ``verdict`` is fail-closed: a stream that cannot be parsed makes it ``unknown``, never ``safe``."""

    verdict: str  # "safe" | "suspicious" | "unsafe" | "unknown"
    globals: tuple[GlobalRef, ...] = ()
    findings: tuple[Finding, ...] = ()
    streams: int = 0
    # facts read on the way: e.g. {"sklearn_version": "1.5.2", "protocol": 4, "joblib_arrays": 3}
    metadata: dict = field(default_factory=dict)


def worst(verdicts) -> str:
    """The worst of several safety verdicts (``safe`` < ``unknown`` < ``suspicious`` < ``unsafe``)."""
    verdicts = list(verdicts)
    if not verdicts:
        return "safe"
    return max(verdicts, key=SAFETY_ORDER.index)
