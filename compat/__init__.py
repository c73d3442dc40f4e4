"""modelport.compat: same inputs through the original and the converted model, one verdict.

    import compat
    result = compat.convert("model.joblib")                   # convert, check, remedies, write model.onnx
    report = compat.check("model.joblib", "model.onnx")       # compare an existing conversion
    compat.record("model.joblib", output="model.mprec")       # a golden record for CI
    assert compat.verify("model.mprec").passed                # after an upgrade
    print(report.verdict, [o.max_abs_error for o in report.outputs])
"""

from __future__ import annotations

from .harness import ConversionResult, check, convert_and_check, default_output
from .compare import DEFAULT_TOLERANCES, OutputStats, Tolerance
from .inputs import InputSource, read_inputs, synthesize
from .record import RECORD_SCHEMA, Record
from .record import build as record
from .report import CHECK_SCHEMA, Attempt, Report, environment
from .verify import VERIFY_SCHEMA, VerifyReport, verify

convert = convert_and_check  # compat.convert(path) reads best next to convert.to_onnx(loaded)

__all__ = [
    "Attempt", "CHECK_SCHEMA", "RECORD_SCHEMA", "Record", "VERIFY_SCHEMA", "VerifyReport", "record", "verify", "ConversionResult", "DEFAULT_TOLERANCES", "InputSource", "OutputStats", "Report",
    "Tolerance", "check", "convert", "convert_and_check", "default_output", "environment", "read_inputs",
    "synthesize",
]
