"""Models fitted on raw, unscaled features (means ~1e3, scales 1..1e4; regression targets ~100): where a
float32 graph meets saturated probabilities, cancellation in sums and rows on thresholds. Each conversion
agrees end to end or is refused with a named cause; a classifier that passes gives exactly
``model.predict``'s labels on every held-out row, checked here with onnxruntime, not with modelport."""

from __future__ import annotations

import joblib
import pytest

import compat
import convert
import sklearn_zoo

CASES = sklearn_zoo.offcentre_cases()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_agrees_end_to_end_or_is_refused_with_a_cause(tmp_path, case):
    model, x_te, _ = sklearn_zoo.fit(case)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    out = tmp_path / "model.onnx"
    loaded = convert.load(path)
    try:
        result = compat.convert(loaded, out, inputs=sklearn_zoo.holdout_file(loaded, x_te, tmp_path))
    except convert.UnsupportedModelError as exc:
        assert exc.exit_code == 3 and exc.message and not out.exists()
        return
    if not result.passed:
        diagnosis = result.report.diagnosis
        assert not out.exists() and diagnosis is not None and diagnosis.cause and diagnosis.rows
        return
    assert sklearn_zoo.disagreements(model, loaded, result.report, out, x_te) == []
