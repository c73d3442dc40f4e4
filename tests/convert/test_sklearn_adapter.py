"""The scikit-learn adapter: signatures read from fitted models, output names, conversions, refusals."""

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

import compat
import convert
from convert.errors import UnsupportedModelError


def save(model, tmp_path, name="model.joblib"):
    path = tmp_path / name
    joblib.dump(model, path)
    return path


def session(model_proto):
    return ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_numeric_model_signature_and_outputs(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_wine(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(data.data, data.target)
    loaded = convert.load(save(model, tmp_path))
    (spec,) = loaded.signature.inputs
    assert (spec.name, spec.dtype, spec.shape) == ("X", "float32", ("batch", 13))
    assert spec.column_names == tuple(data.data.columns)
    assert spec.domains[0].mean == pytest.approx(model[0].mean_[0])
    assert loaded.signature.output_names == ("label", "probabilities")
    out = loaded.run({"X": data.data.to_numpy()[:5].astype(np.float32)})
    np.testing.assert_array_equal(out["label"], model.predict(data.data.iloc[:5].astype(np.float32)))


def test_column_transformer_gets_one_input_per_column_with_string_dtypes(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"age": [20.0, 30, 40, 50, 60, 70], "home town": ["Oslo", "Zürich"] * 3,
                          "n": [1, 2, 1, 2, 3, 1]})
    ct = ColumnTransformer([("num", StandardScaler(), ["age"]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["home town", "n"])])
    model = make_pipeline(ct, LogisticRegression()).fit(frame, [0, 1, 0, 1, 1, 0])
    loaded = convert.load(save(model, tmp_path))
    specs = {s.column_names[0]: s for s in loaded.signature.inputs}
    assert specs["home town"].name == "home_town" and specs["home town"].dtype == "string"
    assert specs["home town"].domains[0].categories == ("Oslo", "Zürich")
    assert specs["home town"].domains[0].unknown_allowed
    assert specs["n"].dtype == "int64" and specs["age"].dtype == "float32"
    result = compat.convert(loaded, tmp_path / "m.onnx")
    assert result.passed
    feeds = {"age": np.array([[25.0]], np.float32), "home_town": np.array([["Zürich"]], object),
             "n": np.array([[2]], np.int64)}
    label, proba = session(result.converted.model).run(None, feeds)
    native = model.predict_proba(pd.DataFrame({"age": [25.0], "home town": ["Zürich"], "n": [2]}))
    np.testing.assert_allclose(proba, native, atol=1e-5)


def test_text_pipeline_takes_strings_and_handles_non_ascii_words(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = ["le café est crème", "école de musique", "Café au lait", "musique à l'école"] * 5
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(docs, [0, 1, 0, 1] * 5)
    loaded = convert.load(save(model, tmp_path))
    (spec,) = loaded.signature.inputs
    assert spec.dtype == "string" and "école" in spec.domains[0].vocabulary
    result = compat.convert(loaded, tmp_path / "m.onnx")
    assert result.passed, result.report.to_json()
    sess = session(result.converted.model)
    probe = np.array([["CAFÉ ÉCOLE"], ["musique"]], dtype=object)
    np.testing.assert_allclose(sess.run(None, {"text": probe})[1], model.predict_proba(probe.ravel()), atol=1e-5)


def test_binary_decision_function_keeps_scikit_learn_shape_and_sign(tmp_path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), SVC()).fit(x, y)
    loaded = convert.load(save(model, tmp_path))
    assert loaded.signature.output_names == ("label", "scores")
    converted = convert.to_onnx(loaded)
    scores = session(converted.model).run(["scores"], {"X": x[:20].astype(np.float32)})[0]
    assert scores.shape == (20,)
    np.testing.assert_allclose(scores, model.decision_function(x[:20].astype(np.float32)), atol=1e-4)


def test_regressor_prediction_is_one_dimensional_like_predict(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    loaded = convert.load(save(Ridge().fit(x, y), tmp_path))
    out = session(convert.to_onnx(loaded).model).run(None, {"X": x[:7].astype(np.float32)})[0]
    assert out.shape == (7,)


def test_estimator_wrapped_in_a_dict_is_found_and_reported(tmp_path):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0))
    loaded = convert.load(save({"model": model, "version": "3"}, tmp_path))
    assert loaded.model.coef_.tolist() == model.coef_.tolist()
    assert any("key 'model'" in n for n in loaded.notes)


def test_model_without_a_converter_is_refused_with_its_name(tmp_path):
    from sklearn.kernel_ridge import KernelRidge

    model = KernelRidge().fit(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20.0))
    loaded = convert.load(save(model, tmp_path))
    with pytest.raises(UnsupportedModelError, match="no converter for KernelRidge") as err:
        compat.convert(loaded, tmp_path / "m.onnx")
    assert err.value.exit_code == 3
    assert not (tmp_path / "m.onnx").exists()


def test_voting_classifier_flatten_transform_is_worked_around_visibly(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.ensemble import VotingClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_wine(return_X_y=True)
    model = VotingClassifier([("nb", GaussianNB()), ("dt", DecisionTreeClassifier(max_depth=3, random_state=0))],
                             voting="soft").fit(x, y)
    result = compat.convert(save(model, tmp_path), tmp_path / "m.onnx")
    assert result.passed
    assert any("flatten_transform" in n for n in result.converted.notes)
    assert model.flatten_transform is True  # the loaded model itself is left as it was
