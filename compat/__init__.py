"""modelport.compat: same inputs through the original and the converted model, one verdict.

    import compat
    result = compat.convert("model.joblib")                   # convert, check, remedies, write model.onnx
    report = compat.check("model.joblib", "model.onnx")       # compare an existing conversion
    compat.record("model.joblib", output="model.mprec")       # a golden record for CI
    assert compat.verify("model.mprec").passed                # after an upgrade
    print(compat.audit(["models/"]).summary)                   # every model file under a folder
    print(report.verdict, [o.max_abs_error for o in report.outputs])
"""

from __future__ import annotations

import importlib

# name -> module: loaded on first use, so `import compat` (and `modelport --help`) stays cheap
_EXPORTS = {
    "ConversionResult": "harness", "check": "harness", "convert_and_check": "harness", "default_output": "harness",
    "DEFAULT_TOLERANCES": "compare", "OutputStats": "compare", "Tolerance": "compare",
    "InputSource": "inputs", "read_inputs": "inputs", "synthesize": "inputs",
    "RECORD_SCHEMA": "records", "Record": "records",
    "CHECK_SCHEMA": "report", "Attempt": "report", "Report": "report", "environment": "report",
    "VERIFY_SCHEMA": "replay", "VerifyReport": "replay", "verify": "replay",
    "BenchReport": "timing", "bench": "timing",
    "MatrixReport": "version_matrix", "matrix": "version_matrix",
    "AUDIT_SCHEMA": "audits", "AuditReport": "audits", "AuditRow": "audits", "audit": "audits",
}
# submodules are named apart from these functions (records.py, replay.py, audits.py, ...) so that importing
# one never replaces the function on the package
_ALIASES = {"convert": ("harness", "convert_and_check"), "record": ("records", "build")}


def __getattr__(name: str):
    if name in _ALIASES:
        module, attr = _ALIASES[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'compat' has no attribute {name!r}")


__all__ = sorted(set(_EXPORTS) | set(_ALIASES))
