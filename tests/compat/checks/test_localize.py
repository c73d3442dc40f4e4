"""Say why it disagrees: when every remedy fails, the first pipeline step whose own output diverges, the
rows, and a known cause; and the TF-IDF ``sublinear_tf`` gap closed. Real models, real graphs."""

from __future__ import annotations

import json

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import compat
import convert
import sklearn_zoo
from cli_run import modelport as run_modelport

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::sklearn.exceptions.ConvergenceWarning")


def saved(model, tmp_path, name="model.joblib"):
    path = tmp_path / name
    joblib.dump(model, path)
    return path


@pytest.fixture(scope="module")
def binned():
    """A KBinsDiscretizer -> LogisticRegression pipeline and held-out rows, some of them placed on a bin edge
    that float32 rounds down onto the row's value: scikit-learn (float64 edge) keeps them in the lower bin."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer

    x_tr, x_te, y_tr, _ = sklearn_zoo.datasets()["raw-multiclass"]
    model = make_pipeline(KBinsDiscretizer(5, encode="onehot-dense"), LogisticRegression(max_iter=300)).fit(x_tr, y_tr)
    edges = model[0].bin_edges_
    feature, edge = next((j, e) for j in range(len(edges)) for e in edges[j][1:-1] if np.float32(e) < e)
    rows = x_te[:60].astype(np.float32).copy()
    planted = [5, 17, 42]
    rows[planted, feature] = np.float32(edge)
    return model, rows, planted


def test_the_first_diverging_step_is_named_with_its_rows_and_a_known_cause(binned, tmp_path):
    model, rows, planted = binned
    out = tmp_path / "model.onnx"
    result = compat.convert(saved(model, tmp_path), out, inputs={"X": rows}, rows=0)
    assert not result.passed and not out.exists()
    d = result.report.diagnosis
    assert d.step.startswith("step 1 of 2") and "KBinsDiscretizer" in d.step
    assert d.outputs == ["transformed"] and d.rows == planted
    assert d.known and "bin edges as float32" in d.cause
    assert [s.verdict for s in d.steps] == ["fail"]
    data = json.loads(result.report.to_json())["diagnosis"]
    assert data["step"] == d.step and data["rows"] == planted and data["known_cause"] is True
    assert "KBinsDiscretizer" in data["summary"]


def test_the_command_line_says_why(binned, tmp_path):
    model, rows, planted = binned
    path = saved(model, tmp_path)
    np.savez(tmp_path / "rows.npz", X=rows)
    done = run_modelport("convert", path, "-o", tmp_path / "m.onnx", "--inputs", tmp_path / "rows.npz", "--rows", "0",
                         "--report", tmp_path / "r.json")
    assert done.returncode == 1, done.stderr
    assert "why: diverges first at step 1 of 2" in done.stdout and "bin edges as float32" in done.stdout
    assert json.loads((tmp_path / "r.json").read_text())["diagnosis"]["rows"] == planted


def test_a_failure_without_a_known_cause_says_what_was_seen(tmp_path):
    """One coefficient planted in a graph: no known cause, so the diagnosis states the observation."""
    from sklearn.linear_model import Ridge

    x_tr, x_te, y_tr, _ = sklearn_zoo.datasets()["raw-regression"]
    loaded = convert.load(saved(Ridge().fit(x_tr, y_tr), tmp_path))
    graph = convert.to_onnx(loaded, remedy="double").model
    coef = next(i for i in graph.graph.initializer if onnx.numpy_helper.to_array(i).size == x_tr.shape[1])
    values = onnx.numpy_helper.to_array(coef).copy()
    values.ravel()[0] *= 1.01
    coef.CopyFrom(onnx.numpy_helper.from_array(values, coef.name))
    report = compat.check(loaded, graph, inputs={"X": x_te.astype(np.float32)}, rows=0)
    assert not report.passed
    d = report.diagnosis
    assert not d.known and d.cause.startswith("prediction: ") and "beyond tolerance and noise floor" in d.cause
    assert d.rows and d.step is None


# ---------------------------------------------------------------------------------------------
# TfidfVectorizer(sublinear_tf=True)

DOCS = ["the service was great", "the food was bad", "service and food", "great great great food",
        "bad service bad food", "the the service", "food food food food service"]


@pytest.fixture(scope="module")
def tfidf_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    y = [1, 0, 1, 1, 0, 1, 1]
    return make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression()).fit(DOCS * 3, y * 3)


def test_sublinear_tf_is_one_plus_log_tf_in_the_graph(tfidf_pipeline, tmp_path):
    vectorizer = tfidf_pipeline[0]
    loaded = convert.load(saved(vectorizer, tmp_path))
    converted = convert.to_onnx(loaded)
    assert any("1 + log(tf)" in n for n in converted.notes)
    sess = ort.InferenceSession(converted.model.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = ["the the service", "food food food food", "nothing known here", "great food"]
    got = sess.run(None, {"text": np.array(texts, dtype=object).reshape(-1, 1)})[0]
    np.testing.assert_allclose(got, vectorizer.transform(texts).toarray(), atol=1e-6)
    # skl2onnx alone writes log(1 + tf): the repeated token is where it shows
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    from convert.adapters.sklearn.adapter import UNICODE_TOKEN_EXP

    bare = convert_sklearn(vectorizer, initial_types=[("text", StringTensorType([None, 1]))],
                           options={id(vectorizer): {"tokenexp": UNICODE_TOKEN_EXP}},
                           target_opset={"": 18, "ai.onnx.ml": 3})
    for node in bare.graph.node:  # a locale every machine has (en_US may be missing, see STACK.md)
        if node.op_type == "StringNormalizer":
            keep = [a for a in node.attribute if a.name != "locale"]
            del node.attribute[:]
            node.attribute.extend(keep + [onnx.helper.make_attribute("locale", "C.UTF-8")])
    raw = ort.InferenceSession(bare.SerializeToString(), providers=["CPUExecutionProvider"])
    wrong = raw.run(None, {"text": np.array([["the the service"]], dtype=object)})[0]
    assert np.abs(wrong - vectorizer.transform(["the the service"]).toarray()).max() > 1e-3


def test_a_tfidf_pipeline_converts_and_without_the_fix_the_step_is_named(tfidf_pipeline, tmp_path, monkeypatch):
    path = saved(tfidf_pipeline, tmp_path)
    held = {"text": np.array(DOCS, dtype=object).reshape(-1, 1)}
    result = compat.convert(convert.load(path), tmp_path / "ok.onnx", inputs=held)
    assert result.passed
    # the same pipeline with the converter gap left open (skl2onnx's own TF-IDF): localised to the vectorizer
    from convert.adapters.sklearn import text

    monkeypatch.setattr(text, "supported", lambda est: False)
    result = compat.convert(convert.load(path), tmp_path / "gap.onnx", inputs=held, rows=0)
    assert not result.passed
    d = result.report.diagnosis
    assert d.step.startswith("step 1 of 2") and "TfidfVectorizer" in d.step
    assert DOCS.index("the the service") in d.rows


def test_one_vs_rest_of_svcs_is_refused_with_its_cause(tmp_path):
    """skl2onnx's graph for a OneVsRestClassifier of SVCs gets the labels wrong: no file is written, and the
    diagnosis names that converter gap; the multiclass SVC it advises converts and agrees."""
    from sklearn.datasets import load_iris
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    out = tmp_path / "ovr.onnx"
    result = compat.convert(saved(OneVsRestClassifier(SVC()).fit(X, y), tmp_path, "ovr.joblib"), out, rows=300)
    assert not result.passed and not out.exists()
    d = result.report.diagnosis
    assert d.known and "multiclass SVC" in d.cause
    out = tmp_path / "svc.onnx"
    assert compat.convert(saved(SVC().fit(X, y), tmp_path, "svc.joblib"), out, rows=300).passed and out.exists()
