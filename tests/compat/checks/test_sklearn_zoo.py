"""Dozens of ordinary scikit-learn models: each conversion either agrees with the original on held-out
real rows, or is refused (exit 1 or 3) with nothing written. Agreement is then verified independently
of modelport's comparator: onnxruntime is run here on the held-out rows and compared with numpy."""

from __future__ import annotations

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

import compat
import convert
import sklearn_zoo

CASES = sklearn_zoo.cases()


def holdout(loaded, x_te, folder):
    if hasattr(x_te, "columns"):
        path = folder / "holdout.csv"
        x_te.to_csv(path, index=False)
    elif loaded.signature.inputs[0].dtype == "string":
        path = folder / "holdout.csv"
        pd.DataFrame({"text": list(x_te)}).to_csv(path, index=False)
    else:
        path = folder / "holdout.npz"
        np.savez(path, X=np.asarray(x_te, dtype=np.float32))
    return path


def feeds_for(sess, loaded, x_te):
    inputs = {i.name: i.type for i in sess.get_inputs()}
    if hasattr(x_te, "columns"):
        out = {}
        for spec in loaded.signature.inputs:
            col = x_te[spec.column_names[0]].to_numpy().reshape(-1, 1)
            out[spec.name] = col.astype(object) if spec.dtype == "string" else col.astype(
                np.float64 if inputs[spec.name] == "tensor(double)" else np.float32)
        return out, x_te
    if loaded.signature.inputs[0].dtype == "string":
        return {"text": np.asarray(x_te, dtype=object).reshape(-1, 1)}, list(x_te)
    x32 = np.asarray(x_te, dtype=np.float32)
    return {"X": x32.astype(np.float64) if inputs["X"] == "tensor(double)" else x32}, x32.astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_converts_and_agrees_or_is_refused(tmp_path, case):
    model, x_te, _ = sklearn_zoo.fit(case)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    out = tmp_path / "model.onnx"
    try:
        loaded = convert.load(path)
        result = compat.convert(loaded, out, inputs=holdout(loaded, x_te, tmp_path))
    except convert.UnsupportedModelError as exc:
        assert exc.exit_code == 3 and not out.exists()
        return
    if not result.passed:
        assert not out.exists()
        return
    # agreement, verified without modelport's comparator
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds, native_x = feeds_for(sess, loaded, x_te)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    for name, method in [(o.spec.name, o.method) for o in loaded.runner.outputs]:
        native = np.asarray(getattr(model, method)(native_x))
        onnx_out = got[name].reshape(native.shape)
        if native.dtype.kind in "fc":
            np.testing.assert_allclose(onnx_out, native, rtol=1e-3, atol=1e-4, err_msg=name)
        else:
            differ = native.astype(str) != onnx_out.astype(str)
            if differ.any():  # only rows whose native scores are tied may differ
                scores_name = next((n for n in ("probabilities", "scores") if n in got), None)
                assert scores_name, name
                method = dict((o.spec.name, o.method) for o in loaded.runner.outputs)[scores_name]
                scores = np.asarray(getattr(model, method)(native_x), dtype=np.float64)[differ]
                if scores.ndim == 1:
                    tied = np.abs(scores) < 1e-4
                else:
                    s = np.sort(scores, axis=1)
                    scale = 1 + np.abs(s).max(axis=1)
                    tied = ((s[:, -1] - s[:, -2]) < 1e-4 * scale) | ((s[:, 1] - s[:, 0]) < 1e-4 * scale)
                assert tied.all(), (name, int(differ.sum()))
