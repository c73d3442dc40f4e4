"""The independent evaluators (convert.adapters.sklearn.rescue.reference) against scikit-learn itself, on models fitted
here with real library calls: each evaluator that claims to be exact must reproduce every method it offers, and an
estimator it does not know gets no evaluator (the caller then says "not verified")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from convert.adapters.sklearn.rescue import reference


def _data(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 5))
    if kind == "binary":
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    elif kind == "multi":
        y = np.digitize(X[:, 0] + X[:, 2], [-0.7, 0.7])
    elif kind == "labels":
        y = np.array(["low", "mid", "high"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    else:
        y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(scale=0.1, size=len(X))
    return X, y


def _models():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, GradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, LinearSVC, LinearSVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    return [
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0), "multi"),
        ("tree regressor", DecisionTreeRegressor(max_depth=5, random_state=0), "value"),
        ("forest", RandomForestClassifier(n_estimators=7, random_state=0), "labels"),
        ("extra trees", ExtraTreesClassifier(n_estimators=5, random_state=0), "binary"),
        ("forest regressor", RandomForestRegressor(n_estimators=5, random_state=0), "value"),
        ("boosting binary", GradientBoostingClassifier(n_estimators=10, random_state=0), "binary"),

        ("boosting exponential", GradientBoostingClassifier(n_estimators=8, loss="exponential"), "binary"),
        ("boosting regressor", GradientBoostingRegressor(n_estimators=10, random_state=0), "value"),
        ("boosting huber", GradientBoostingRegressor(n_estimators=10, loss="huber", random_state=0), "value"),
        ("logistic binary", LogisticRegression(), "binary"),
        ("logistic multinomial", LogisticRegression(), "multi"),
        ("sgd", SGDClassifier(random_state=0), "multi"),
        ("sgd log", SGDClassifier(loss="log_loss", random_state=0), "binary"),
        ("linear svc", LinearSVC(), "labels"),
        ("linear regression", LinearRegression(), "value"),
        ("ridge", Ridge(), "value"),
        ("linear svr", LinearSVR(), "value"),
        ("svc rbf binary", SVC(), "binary"),
        ("svc rbf multiclass", SVC(), "multi"),
        ("svc poly", SVC(kernel="poly", degree=3, coef0=1.0), "labels"),
        ("svc sigmoid ovo", SVC(kernel="sigmoid", decision_function_shape="ovo"), "multi"),
        ("svc linear", SVC(kernel="linear"), "multi"),
        ("gaussian nb", GaussianNB(), "labels"),
        ("bernoulli nb", BernoulliNB(binarize=0.1), "multi"),
        ("knn", KNeighborsClassifier(n_neighbors=4), "multi"),
        ("knn distance", KNeighborsClassifier(weights="distance"), "labels"),
        ("mlp", MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0), "multi"),
        ("mlp binary tanh", MLPClassifier(hidden_layer_sizes=(6, 4), activation="tanh", max_iter=50), "binary"),
        ("mlp regressor", MLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0), "value"),
        ("kmeans", KMeans(n_clusters=4, n_init=2, random_state=0), None),
        ("pca", PCA(3), None),
        ("pca whiten", PCA(2, whiten=True), None),
        ("scaler", StandardScaler(), None),
        ("minmax", MinMaxScaler(), None),
        ("scaled logistic", make_pipeline(StandardScaler(), LogisticRegression()), "labels"),
        ("minmax boosting", make_pipeline(MinMaxScaler(), GradientBoostingClassifier(n_estimators=5)), "binary"),
        ("one vs rest svc", OneVsRestClassifier(SVC()), "multi"),
        ("grid search", GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3), "value"),
        ("multinomial nb", MultinomialNB(), "counts"),
        ("one hot", OneHotEncoder(handle_unknown="ignore"), "categories"),
        ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english"), "text"),
    ]


def _fit(model, kind):
    if kind == "counts":
        rng = np.random.default_rng(2)
        X = rng.poisson(2.0, size=(80, 6)).astype(float)
        return model.fit(X, (X[:, 0] > 2).astype(int)), X
    if kind == "categories":
        rng = np.random.default_rng(3)
        X = rng.integers(0, 4, size=(60, 3))
        return model.fit(X), np.vstack([X, [[9, 0, 1]]])  # an unknown value: ignored, as the encoder does
    if kind == "text":
        docs = ["the model saves a tree", "trees and forests of old models", "a pickle from a release",
                "migrate the old pickle", "the forest of trees saves"] * 3
        return model.fit(docs), docs + ["unseen words and the tree", ""]
    X, y = _data(kind or "value")
    return (model.fit(X) if kind is None else model.fit(X, y)), X


@pytest.mark.parametrize("name, model, kind", _models(), ids=[m[0] for m in _models()])
def test_the_evaluation_reproduces_every_method(name, model, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted, X = _fit(model, kind)
    evaluation = reference.evaluator(fitted)
    assert evaluation is not None, name
    assert evaluation.methods and evaluation.how
    for method in evaluation.methods:
        want = getattr(fitted, method)(X)
        want = want.toarray() if hasattr(want, "toarray") else np.asarray(want)
        got = np.asarray(evaluation(method, X))
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9, err_msg=f"{name}.{method}")
        else:
            assert np.array_equal(got, want), (name, method)


def test_a_model_without_an_exact_evaluation_gets_none():
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
    from sklearn.neighbors import KNeighborsClassifier

    X, y = _data("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert reference.evaluator(HistGradientBoostingClassifier(max_iter=3).fit(X, y)) is None
        assert reference.evaluator(IsolationForest(n_estimators=3).fit(X)) is None
        assert reference.evaluator(KNeighborsClassifier(metric="manhattan").fit(X, y)) is None  # only euclidean
    assert reference.evaluator(object()) is None


def test_an_old_one_vs_rest_logistic_regression_is_evaluated_as_it_was():
    """Before 1.5 a multiclass LogisticRegression fitted one-vs-rest normalized its sigmoids; 1.9 has no such
    option and applies a softmax. The evaluator follows the stored multi_class, so a migrated model of that kind
    disagrees with it, visibly, instead of passing as the same model."""
    from sklearn.linear_model import LogisticRegression

    X, y = _data("multi")
    model = LogisticRegression().fit(X, y)
    model.multi_class = "ovr"  # as a 0.2x pickle stores it
    evaluation = reference.evaluator(model)
    ovr = evaluation("predict_proba", X)
    d = X @ model.coef_.T + model.intercept_
    expected = 1 / (1 + np.exp(-d))
    np.testing.assert_allclose(ovr, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    assert not np.allclose(ovr, model.predict_proba(X), atol=1e-3)


def test_multiclass_boosting_scores_are_those_of_the_releases_that_saved_them():
    """Up to 1.3 a multiclass GradientBoostingClassifier started from the log class priors; 1.4 centres them (its
    common loss module's link). Probabilities and labels are the same (a softmax ignores a shift); the scores
    (decision_function) differ by one constant per row. The evaluator computes the old scores."""
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = _data("multi")
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    evaluation = reference.evaluator(model)
    np.testing.assert_allclose(evaluation("predict_proba", X), model.predict_proba(X), rtol=1e-7, atol=1e-12)
    assert np.array_equal(evaluation("predict", X), model.predict(X))
    shift = evaluation("decision_function", X) - model.decision_function(X)
    np.testing.assert_allclose(shift, np.repeat(shift[:, :1], shift.shape[1], axis=1), atol=1e-9)
    prior = np.log(model.init_.class_prior_)
    np.testing.assert_allclose(shift[0, 0], prior[0] - (prior[0] - prior.mean()), atol=1e-9)
