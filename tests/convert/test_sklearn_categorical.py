"""HistGradientBoosting with categorical features, as people fit it: a pandas DataFrame with
``pd.Categorical`` string columns (scikit-learn's default ``categorical_features="from_dtype"``), columns
named or masked as categorical, and integer-coded categories in a numpy array.

The converted graph is run with onnxruntime directly and compared with the fitted model itself on rows
holding unseen categories and missing values, never through modelport's own comparator."""

from __future__ import annotations

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

import compat
import convert
from convert.errors import UnsupportedModelError

CITIES = ["Oslo", "Zürich", "Lima", "Pune", "São Paulo"]
PLANS = ["basic", "pro", "team"]
CODES = [3, 7, 11, 40, 300, -2]  # integer categories, negative and beyond 255 included


def frame(n: int, seed: int = 0, missing: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, n).astype(object)
    grade = rng.choice([0.0, 1.0, 2.5, 5.0], n)
    if missing:
        city[rng.random(n) < 0.05] = None
        grade[rng.random(n) < 0.05] = np.nan
    spend = rng.normal(120.0, 40.0, n)
    spend[rng.random(n) < 0.03] = np.nan if missing else 0.0
    return pd.DataFrame({
        "city": pd.Categorical(city, categories=CITIES),
        "plan": pd.Categorical(rng.choice(PLANS, n)),
        "monthly spend": spend,  # a column name with a space: the graph input is sanitised, the CSV column is not
        "store": pd.Categorical(rng.choice(CODES, n)),
        "grade": grade,
        "tenure": rng.integers(0, 60, n).astype(float),
    })


def targets(df: pd.DataFrame, kind: str) -> np.ndarray:
    city = df["city"].astype(object)
    base = (city.isin(["Oslo", "Pune"]).to_numpy() * 2.0 + df["store"].astype(float).isin([7, 300]).to_numpy()
            + (np.nan_to_num(df["monthly spend"].to_numpy(), nan=100.0) > 110) + (df["plan"] == "team").to_numpy())
    if kind == "regression":
        return base * 10 + np.nan_to_num(df["grade"].to_numpy()) + df["tenure"].to_numpy() / 10
    if kind == "binary":
        return (base >= 2).astype(int)
    return np.digitize(base, [1.5, 2.5]).astype(int)


def model_for(kind: str, categorical="from_dtype", **kw):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if kind == "regression" else HistGradientBoostingClassifier
    return cls(max_iter=25, categorical_features=categorical, random_state=0, **kw)


def probe_frame() -> pd.DataFrame:
    """Rows a deployed model meets: unseen categories, None and NaN, an empty string, numbers that are not
    categories (a fraction, a negative, beyond the known ones), a category as a float (7.0 is 7)."""
    city = ["Oslo", "Zürich", "Bergen", "", None, np.nan, "Lima", "Pune", "São Paulo", "oslo"]
    plan = ["basic", "pro", "team", "enterprise", None, "basic", "pro", "", "team", "basic"]
    store = [3, 7, 12, np.nan, 300, 40, -2, 11, 7.0, 301]
    grade = [0.0, 1.0, 2.5, 5.0, np.nan, 3.0, -1.0, 2.4999999, 1.0, 0.0]
    n = 40
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "city": [city[i % 10] for i in range(n)],
        "plan": [plan[(i * 3) % 10] for i in range(n)],
        "monthly spend": np.where(rng.random(n) < 0.1, np.nan, rng.normal(120.0, 40.0, n)),
        "store": [store[(i * 7) % 10] for i in range(n)],
        "grade": [grade[(i * 9) % 10] for i in range(n)],
        "tenure": rng.integers(0, 60, n).astype(float),
    })


def feeds_for(session: ort.InferenceSession, loaded, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """What a user feeds the graph: one [N, 1] array per column; a missing category in a string column is
    given as an empty string (an ONNX string tensor has no None)."""
    feeds = {}
    types = {i.name: i.type for i in session.get_inputs()}
    for spec in loaded.signature.inputs:
        column = df[spec.column_names[0]]
        if types[spec.name] == "tensor(string)":
            values = np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in column],
                              dtype=object)
        else:
            values = column.astype(float).to_numpy().astype({"tensor(float)": np.float32}.get(types[spec.name],
                                                                                              np.float64))
        feeds[spec.name] = values.reshape(-1, 1)
    return feeds


def native_frame(df: pd.DataFrame, fitted: pd.DataFrame) -> pd.DataFrame:
    """The probe rows as the fitted model sees them (numbers in float64, categories as given)."""
    out = df.copy()
    for column in ("monthly spend", "grade", "tenure"):
        out[column] = out[column].astype(float)
    return out[list(fitted.columns)]


def ml_ops(model) -> set[str]:
    return {n.op_type for n in model.graph.node if n.domain == "ai.onnx.ml"}


def assert_agrees(model, converted_model, loaded, df, exact_floats: bool):
    session = ort.InferenceSession(converted_model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = feeds_for(session, loaded, df)
    # the native model sees what the graph sees: float32 inputs rounded the same way
    native_df = df.copy()
    for spec, inp in zip(loaded.signature.inputs, session.get_inputs()):
        if inp.type == "tensor(float)":
            native_df[spec.column_names[0]] = feeds[spec.name].reshape(-1).astype(np.float64)
    got = session.run(None, feeds)
    rtol = 1e-12 if exact_floats else 1e-6
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(got[0], model.predict(native_df))
        np.testing.assert_allclose(got[1], model.predict_proba(native_df), rtol=rtol, atol=1e-12)
    else:
        np.testing.assert_allclose(got[0].reshape(-1), model.predict(native_df), rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("how", ["from_dtype", "names", "mask"])
def test_dataframe_categories_convert_exactly_with_one_input_per_column(tmp_path, kind, how):
    df = frame(900)
    categorical = {"from_dtype": "from_dtype", "names": ["city", "plan", "store"],
                   "mask": [True, True, False, True, False, False]}[how]
    fitted = df if how == "from_dtype" else df.assign(store=df["store"].astype(float),
                                                      city=df["city"].astype(object), plan=df["plan"].astype(object))
    model = model_for(kind, categorical).fit(fitted, targets(df, kind))
    assert list(np.flatnonzero(model.is_categorical_)) == [0, 1, 3]
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)

    specs = {s.column_names[0]: s for s in loaded.signature.inputs}
    assert list(specs) == list(df.columns)
    assert all(s.shape == ("batch", 1) for s in specs.values())
    assert (specs["city"].dtype, specs["plan"].dtype, specs["store"].dtype) == ("string", "string", "float64")
    assert {specs[c].dtype for c in ("monthly spend", "grade", "tenure")} == {"float32"}
    assert set(specs["city"].domains[0].categories) == set(CITIES)
    assert set(specs["store"].domains[0].categories) == {float(c) for c in CODES}
    assert specs["monthly spend"].name == "monthly_spend"

    # skl2onnx's own converter ignores categorical splits: plain is never offered, nor used by a remedy
    assert None not in convert.remedies(loaded)
    with pytest.raises(UnsupportedModelError, match="categorical"):
        convert.to_onnx(loaded, remedy=None)
    probe = native_frame(probe_frame(), fitted)
    for remedy in ("exact-trees", "double"):
        converted = convert.to_onnx(loaded, remedy=remedy)
        ops = ml_ops(converted.model)
        assert "TreeEnsemble" in ops and not ops & {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}, ops
        membership = [a for n in converted.model.graph.node if n.op_type == "TreeEnsemble" for a in n.attribute
                      if a.name == "membership_values"]
        assert membership, "the categorical splits are set-membership splits"
        assert_agrees(model, converted.model, loaded, probe, exact_floats=remedy == "double")


def test_integer_coded_categories_in_a_numpy_array(tmp_path):
    """``categorical_features`` by index on a numpy array: one numeric input; categories that are not small
    integers (fractions, negatives, large values) are matched exactly, unseen ones and NaN go where
    scikit-learn sends missing values."""
    rng = np.random.default_rng(3)
    categories = np.array([-7.0, 0.0, 0.5, 2.0, 9.0, 1e6, 123456.0])
    n = 900
    x = np.column_stack([rng.choice(categories, n), rng.normal(size=n), rng.integers(0, 30, n)]).astype(np.float32)
    x[rng.random(n) < 0.05, 0] = np.nan
    y = (np.isin(x[:, 0], [0.5, 9.0, 1e6]) ^ (x[:, 1] > 0.2)).astype(int) + (x[:, 2] > 20)
    for categorical in ([0, 2], [True, False, True]):
        model = model_for("multiclass", categorical).fit(x, y)
        path = tmp_path / "m.joblib"
        joblib.dump(model, path)
        loaded = convert.load(path)
        assert [(s.name, s.dtype, s.shape) for s in loaded.signature.inputs] == [("X", "float32", ("batch", 3))]
        converted = convert.to_onnx(loaded, remedy="exact-trees")
        assert not ml_ops(converted.model) & {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}
        probe = np.column_stack([
            np.tile(np.concatenate([categories, [np.nan, 1.0, 0.25, -1.0, 1e6 + 1, 255.0, 256.0, 300.0]]), 8),
            rng.normal(size=120), np.tile(np.arange(-2, 33), 4)[:120]]).astype(np.float32)
        session = ort.InferenceSession(converted.model.SerializeToString(), providers=["CPUExecutionProvider"])
        label, proba = session.run(None, {"X": probe})
        np.testing.assert_array_equal(label, model.predict(probe))
        np.testing.assert_allclose(proba, model.predict_proba(probe), rtol=1e-6, atol=1e-7)


def test_string_categories_in_a_numpy_array_without_column_names(tmp_path):
    """An object array with strings, fitted without names: the inputs are called x0, x1..."""
    rng = np.random.default_rng(4)
    n = 600
    x = np.empty((n, 2), dtype=object)
    x[:, 0] = rng.choice(PLANS, n)
    x[:, 1] = rng.normal(size=n)
    y = ((x[:, 0] == "pro") ^ (x[:, 1].astype(float) > 0)).astype(int)
    model = model_for("binary", [0]).fit(x, y)
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)
    assert [(s.name, s.dtype) for s in loaded.signature.inputs] == [("x0", "string"), ("x1", "float32")]
    result = compat.convert(loaded, tmp_path / "m.onnx")
    assert result.passed, result.attempts
    session = ort.InferenceSession(str(result.output), providers=["CPUExecutionProvider"])
    plans = np.array(PLANS + ["free", ""] * 2, dtype=object)
    values = np.linspace(-1, 1, len(plans)).astype(np.float32)
    label, proba = session.run(None, {"x0": plans.reshape(-1, 1), "x1": values.reshape(-1, 1)})
    native = np.column_stack([plans, values.astype(np.float64)]).astype(object)
    np.testing.assert_array_equal(label, model.predict(native))
    np.testing.assert_allclose(proba, model.predict_proba(native), rtol=1e-6, atol=1e-7)


def test_string_categories_the_graph_cannot_take_are_refused_not_converted_wrong(tmp_path):
    """A step in front of the model hides its columns: the signature is one numeric input, which cannot
    carry string categories. That is refused with the reason (exit 3); skl2onnx's categorical converter,
    which would run and be wrong, is never the fallback."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    df = frame(600, missing=False)
    model = make_pipeline(FunctionTransformer(), model_for("binary")).fit(df, targets(df, "binary"))
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)
    assert None not in convert.remedies(loaded)
    for remedy in convert.remedies(loaded):
        with pytest.raises(UnsupportedModelError, match="strings"):
            convert.to_onnx(loaded, remedy=remedy)
    with pytest.raises(UnsupportedModelError) as err:
        compat.convert(loaded, tmp_path / "m.onnx")
    assert err.value.exit_code == 3 and not (tmp_path / "m.onnx").exists()


def test_the_csv_the_model_was_fitted_on_is_what_the_check_reads(tmp_path):
    """``df.to_csv`` of the training frame (missing categories become empty cells) is read by name,
    string columns as strings, and both models agree on every row of it."""
    df = frame(700)
    model = model_for("multiclass").fit(df, targets(df, "multiclass"))
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    csv = tmp_path / "train.csv"
    df.to_csv(csv, index=False)
    result = compat.convert(path, tmp_path / "m.onnx", inputs=csv)
    assert result.passed, result.attempts
    assert result.report.inputs["rows"] == 700 + 1000 and str(csv) in result.report.inputs["source"]
    # check on the CSV alone
    report = compat.check(path, result.output, inputs=csv, rows=0)
    assert report.passed and report.inputs["rows"] == 700
    loaded = convert.load(path)
    graph = onnx.load(str(result.output))
    assert [i.name for i in graph.graph.input] == list(loaded.signature.input_names)
    assert [i.type.tensor_type.elem_type for i in graph.graph.input][:2] == [onnx.TensorProto.STRING] * 2


def test_synthesized_rows_reach_unknown_and_missing_categories(tmp_path):
    """The check's own rows hold unseen categories and missing values for the categorical columns, so a
    wrong unknown/missing rule could not pass unseen."""
    from compat.checks.inputs import UNSEEN_CATEGORY, synthesize

    df = frame(600)
    model = model_for("binary").fit(df, targets(df, "binary"))
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    loaded = convert.load(path)
    batch = next(synthesize(loaded.signature, rows=1000, seed=0).batches(1000))
    assert (batch["city"] == UNSEEN_CATEGORY).any() and set(batch["city"].ravel()) - {UNSEEN_CATEGORY} <= set(CITIES)
    store = batch["store"].ravel()
    assert np.isnan(store).any() and (~np.isin(store[~np.isnan(store)], CODES)).any()
