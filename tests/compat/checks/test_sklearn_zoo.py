"""Dozens of ordinary scikit-learn models: each conversion either agrees with the original on held-out
real rows, or is refused (exit 1 or 3) with nothing written. Agreement is then verified independently
of modelport's comparator: onnxruntime is run here on the held-out rows and compared with the model's
own methods (labels row for row with ``predict``)."""

from __future__ import annotations

import joblib
import pytest

import compat
import convert
import sklearn_zoo

CASES = sklearn_zoo.cases()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_converts_and_agrees_or_is_refused(tmp_path, case):
    model, x_te, _ = sklearn_zoo.fit(case)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    out = tmp_path / "model.onnx"
    try:
        loaded = convert.load(path)
        result = compat.convert(loaded, out, inputs=sklearn_zoo.holdout_file(loaded, x_te, tmp_path))
    except convert.UnsupportedModelError as exc:
        assert exc.exit_code == 3 and not out.exists()
        return
    if not result.passed:  # refused with a reason
        assert not out.exists() and result.report.diagnosis.cause
        return
    # agreement, verified without modelport's comparator: labels equal predict on every held-out row
    assert sklearn_zoo.disagreements(model, loaded, result.report, out, x_te) == []
