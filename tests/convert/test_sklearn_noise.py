"""The scikit-learn adapter's answers to the check: what each ``predict`` decides with (the table is checked
against scikit-learn itself: the quantity's argmax, or sign, gives ``predict``'s label on every row), and
copies whose float parameters are perturbed while what is compared, searched or named stays exact."""

from __future__ import annotations

import numpy as np
import pytest

import sklearn_zoo
from convert.adapters.sklearn import decisions, noise

EPS32 = float(np.finfo(np.float32).eps)


def _is_classifier(case) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(case.make())


LABELLERS = ("KMeans", "MiniBatchKMeans", "GaussianMixture", "BayesianGaussianMixture", "IsolationForest",
             "OneClassSVM", "LocalOutlierFactor-novelty")  # clusterers and outlier detectors with a predict
CLASSIFIERS = [c for c in sklearn_zoo.cases() + sklearn_zoo.offcentre_cases()
               if _is_classifier(c) or c.name in LABELLERS]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::sklearn.exceptions.ConvergenceWarning")


def decided_labels(decision, quantity):
    q = np.asarray(quantity, dtype=np.float64)
    classes = np.asarray(decision.classes, dtype=object)
    return classes[(q > 0).astype(int)] if q.ndim == 1 else classes[np.argmax(q, axis=1)]


@pytest.mark.slow
@pytest.mark.parametrize("case", CLASSIFIERS, ids=[c.name for c in CLASSIFIERS])
def test_the_deciding_quantity_gives_predicts_labels(case):
    model, x_te, _ = sklearn_zoo.fit(case)
    decision = decisions.decision_of(model)
    assert decision is not None, "every classifier of the zoos is in DECIDES_WITH"
    if decision.compute is None:  # votes: no continuous quantity, so nothing to compare
        assert decision.name and decision.why
        return
    quantity = decision.compute(model, x_te)
    predicted = np.asarray(model.predict(x_te), dtype=object)
    decided = decided_labels(decision, quantity)
    q = np.asarray(quantity, dtype=np.float64)
    if q.ndim == 2:  # rows exactly tied in the quantity may go either way
        top = np.sort(q, axis=1)
        clear = top[:, -1] > top[:, -2]
    else:
        clear = q != 0
    assert clear.mean() > 0.5
    assert (decided[clear].astype(str) == predicted[clear].astype(str)).all(), decision.name


def test_a_perturbed_copy_moves_what_is_computed_with_and_nothing_that_is_compared():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer, StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    x_tr, x_te, y_tr, _ = sklearn_zoo.datasets()["raw-multiclass"]
    lr = make_pipeline(StandardScaler(), KBinsDiscretizer(4, encode="onehot-dense"), LogisticRegression())
    lr.fit(x_tr, y_tr)
    tree = DecisionTreeRegressor(max_depth=5, random_state=0).fit(x_tr, y_tr.astype(float))
    knn = KNeighborsClassifier().fit(x_tr, y_tr)
    for draw in range(4):
        p = noise.perturbed_copy(lr, EPS32, draw)
        assert p is not lr and p[2] is not lr[2]
        assert not np.array_equal(p[2].coef_, lr[2].coef_) and not np.array_equal(p[0].mean_, lr[0].mean_)
        assert np.abs(p[2].coef_ / lr[2].coef_ - 1).max() <= EPS32 * (1 + 1e-6)
        assert all(np.array_equal(a, b) for a, b in zip(p[1].bin_edges_, lr[1].bin_edges_))
        assert np.array_equal(p[2].classes_, lr[2].classes_)
        t = noise.perturbed_copy(tree, EPS32, draw)
        assert np.array_equal(t.tree_.threshold, tree.tree_.threshold)
        assert not np.array_equal(t.tree_.value, tree.tree_.value)
        k = noise.perturbed_copy(knn, EPS32, draw)
        assert np.array_equal(k._fit_X, knn._fit_X) and (k.predict(x_te) == knn.predict(x_te)).all()
    # the original is untouched, and draw 0 is float32 rounding exactly
    rounded = noise.perturbed_copy(lr, EPS32, 0)
    assert np.array_equal(rounded[2].coef_, lr[2].coef_.astype(np.float32).astype(np.float64))
    assert lr[2].coef_.dtype == np.float64
    # at float64 precision draw 0 changes nothing
    assert np.array_equal(noise.perturbed_copy(lr, float(np.finfo(np.float64).eps), 0)[2].coef_, lr[2].coef_)


def test_pipelines_and_stacking_decide_with_their_final_estimator():
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, x_te, y_tr, _ = sklearn_zoo.datasets()["raw-multiclass"]
    names = np.array(["red", "green", "blue"], dtype=object)
    pipe = make_pipeline(StandardScaler(), GaussianNB()).fit(x_tr, names[y_tr])
    d = decisions.decision_of(pipe)
    assert d.name == "predict_joint_log_proba" and d.classes == tuple(pipe.classes_)
    assert (decided_labels(d, d.compute(pipe, x_te)) == pipe.predict(x_te)).all()
    stack = StackingClassifier([("nb", GaussianNB()), ("lr", make_pipeline(StandardScaler(), LogisticRegression()))]
                               ).fit(x_tr, names[y_tr])
    d = decisions.decision_of(stack)
    assert d.name == "decision_function" and set(d.classes) == set(names)
    assert (decided_labels(d, d.compute(stack, x_te)) == stack.predict(x_te)).all()
