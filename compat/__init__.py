"""modelport.compat: same inputs through the original and the converted model, one verdict.

    import compat
    result = compat.convert("model.joblib")                   # convert, check, remedies, write model.onnx
    report = compat.check("model.joblib", "model.onnx")       # compare an existing conversion
    compat.record("model.joblib", output="model.mprec")       # a golden record for CI
    assert compat.verify("model.mprec").passed                # after an upgrade
    print(compat.audit(["models/"]).summary)                   # every model file under a folder
    compat.audit(["s3://models/"], scheduler="tcp://dask:8786", cache="~/.cache/modelport")  # a registry
    print(report.verdict, [o.max_abs_error for o in report.outputs])
"""

from __future__ import annotations

import importlib

# name -> module: loaded on first use, so `import compat` (and `modelport --help`) stays cheap
_EXPORTS = {
    "ConversionResult": "checks.harness", "check": "checks.harness", "convert_and_check": "checks.harness",
    "default_output": "checks.harness",
    "DEFAULT_TOLERANCES": "checks.compare", "OutputStats": "checks.compare", "Tolerance": "checks.compare",
    "InputSource": "checks.inputs", "read_inputs": "checks.inputs", "synthesize": "checks.inputs",
    "CHECK_SCHEMA": "checks.report", "Attempt": "checks.report", "Report": "checks.report",
    "environment": "checks.report",
    "BenchReport": "checks.timing", "bench": "checks.timing",
    "RECORD_SCHEMA": "records.record", "Record": "records.record",
    "VERIFY_SCHEMA": "records.replay", "VerifyReport": "records.replay", "verify": "records.replay",
    "verify_all": "records.batch",
    "MatrixReport": "records.matrix", "matrix": "records.matrix",
    "AUDIT_SCHEMA": "audits.report", "AuditReport": "audits.report", "AuditRow": "audits.report",
    "audit": "audits.engine",
}
# the subpackages are named apart from these functions (checks/, records/, audits/) so that importing one
# never replaces the function on the package
_ALIASES = {"convert": ("checks.harness", "convert_and_check"), "record": ("records.record", "build")}


def __getattr__(name: str):
    if name in _ALIASES:
        module, attr = _ALIASES[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'compat' has no attribute {name!r}")


__all__ = sorted(set(_EXPORTS) | set(_ALIASES))
