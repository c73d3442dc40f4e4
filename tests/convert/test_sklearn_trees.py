"""Exact tree ensembles: the converted graph must take the same branch as scikit-learn on every input,
including values sitting exactly on a split point and one float32 step either side. Verified here with
onnxruntime directly, not through modelport's comparator."""

import joblib
import numpy as np
import onnxruntime as ort
import pytest

import compat
import convert
from convert.errors import UnsupportedModelError


def boundary_rows(model, x, n_features):
    """Rows whose values sit on, just below and just above every split point of ``model``."""
    from convert.adapters.sklearn.domains import tree_thresholds

    rows = [x[i % len(x)].copy() for i in range(8)]
    for feature, values in tree_thresholds(model, n_features).items():
        for t in values[:40]:
            below = np.float32(t)
            if below > t:
                below = np.nextafter(below, np.float32(-np.inf))
            for v in (np.nextafter(below, np.float32(-np.inf)), below, np.nextafter(below, np.float32(np.inf))):
                row = x[len(rows) % len(x)].copy()
                row[feature] = v
                rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def run(converted, x):
    sess = ort.InferenceSession(converted.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})


def models():
    from sklearn import ensemble, tree

    return [
        ("DecisionTreeRegressor", tree.DecisionTreeRegressor(random_state=0), "regression"),
        ("RandomForestClassifier", ensemble.RandomForestClassifier(20, random_state=0), "multiclass"),
        ("ExtraTreesRegressor", ensemble.ExtraTreesRegressor(20, random_state=0), "regression"),
        ("GradientBoostingClassifier", ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0), "multiclass"),
        ("GradientBoostingClassifier-binary", ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0), "binary"),
        ("GradientBoostingRegressor", ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0), "regression"),
        ("HistGradientBoostingClassifier", ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0), "binary"),
        ("HistGradientBoostingRegressor", ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=0), "regression"),
    ]


def data(kind):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    loader = {"regression": load_diabetes, "multiclass": load_wine, "binary": load_breast_cancer}[kind]
    x, y = loader(return_X_y=True)
    return x.astype(np.float32), y


@pytest.mark.parametrize("name,model,kind", models(), ids=[m[0] for m in models()])
def test_exact_trees_agree_on_split_points(tmp_path, name, model, kind):
    x, y = data(kind)
    model.fit(x, y)
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)
    converted = convert.to_onnx(loaded, remedy="exact-trees")
    probe = boundary_rows(model, x, x.shape[1])
    outputs = run(converted, probe)
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(outputs[0], model.predict(probe))
        np.testing.assert_allclose(outputs[1], model.predict_proba(probe), rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_allclose(outputs[0], model.predict(probe), rtol=1e-6, atol=1e-6)


def test_float32_tree_disagreement_is_caught_and_remedied_never_passed(tmp_path):
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = data("regression")
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
    path = tmp_path / "hgb.joblib"
    joblib.dump(model, path)
    result = compat.convert(path, tmp_path / "hgb.onnx")
    plain = result.attempts[0]
    assert plain.remedy is None and plain.verdict == "fail" and plain.mismatched > 0
    assert result.passed and result.report.conversion["remedy"] in ("exact-trees", "double")
    probe = boundary_rows(model, x, x.shape[1])
    sess = ort.InferenceSession(str(result.output), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"X": probe.astype(np.float64) if sess.get_inputs()[0].type == "tensor(double)" else probe})[0]
    np.testing.assert_allclose(got, model.predict(probe), rtol=1e-6, atol=1e-6)


def test_hist_gradient_boosting_with_categorical_splits(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.integers(0, 12, 600), rng.normal(size=600)]).astype(np.float32)
    y = (np.isin(x[:, 0], [1, 4, 5, 9]) ^ (x[:, 1] > 0.3)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=25, categorical_features=[0], random_state=0).fit(x, y)
    path = tmp_path / "cat.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)
    # skl2onnx's own converter ignores categorical splits (silently wrong): never used
    with pytest.raises(UnsupportedModelError, match="categorical"):
        convert.to_onnx(loaded, remedy=None)
    converted = convert.to_onnx(loaded, remedy="exact-trees")
    probe = np.column_stack([np.tile(np.arange(-1, 14), 20), rng.normal(size=300)]).astype(np.float32)
    probe[::17, 0] = np.nan
    label, proba = run(converted, probe)
    np.testing.assert_array_equal(label, model.predict(probe))
    np.testing.assert_allclose(proba, model.predict_proba(probe), rtol=1e-6, atol=1e-7)
