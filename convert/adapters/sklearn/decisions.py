"""What each estimator's ``predict`` decides with.

A label can only be called a tie where the quantity ``predict`` itself compares is tied: scikit-learn's
linear models decide with ``decision_function`` (not with probabilities, which saturate: two one-vs-rest
sigmoids both equal to 1.0 say nothing about which class wins), naive Bayes with the joint log
likelihood, forests with averaged leaf probabilities, boosting with the raw margin. ``DECIDES_WITH``
says which, per estimator class (matched anywhere in its MRO, first row wins); a condition narrows a row
to the fitted models it holds for. A row without a method names a decision no continuous quantity
describes (one-vs-one votes, hard voting): there, only a perturbed native model that predicts the other
label is evidence of a tie.

A 2-D quantity decides by argmax over ``classes``; a 1-D one is a binary margin (positive: ``classes[1]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def _log_proba(est, x):
    with np.errstate(divide="ignore"):
        return np.log(est.predict_proba(x))


METHODS: dict[str, Callable] = {
    "decision_function": lambda est, x: est.decision_function(x),
    "predict_proba": lambda est, x: est.predict_proba(x),
    "predict_joint_log_proba": lambda est, x: est.predict_joint_log_proba(x),
    "log predict_proba": _log_proba,
    "minus the distance to each centre": lambda est, x: -est.transform(x),
}

CONDITIONS: dict[str, Callable] = {
    "binary": lambda est: len(getattr(est, "classes_", ())) == 2,
    "soft voting": lambda est: getattr(est, "voting", None) == "soft",
    "ties broken by decision_function": lambda est: bool(getattr(est, "break_ties", False))
    and getattr(est, "decision_function_shape", "ovr") == "ovr",
    "members have decision_function": lambda est: hasattr(est, "decision_function"),
}

# (class name in the MRO, condition or None, method or None, why)
DECIDES_WITH = (
    ("VotingClassifier", "soft voting", "predict_proba", "argmax of the weighted mean of the members' probabilities"),
    ("VotingClassifier", None, None, "hard voting: counts of the members' labels"),
    ("BaseSVC", "binary", "decision_function", "libsvm: the sign of the decision value"),
    ("BaseSVC", "ties broken by decision_function", "decision_function", "argmax of the one-vs-rest scores"),
    ("BaseSVC", None, None, "one-vs-one votes, ties to the first class"),
    ("LinearClassifierMixin", None, "decision_function", "argmax (or sign) of the linear scores"),
    ("_BaseNB", None, "predict_joint_log_proba", "argmax of the joint log likelihood"),
    ("QuadraticDiscriminantAnalysis", None, "decision_function", "argmax of the quadratic scores"),
    ("GradientBoostingClassifier", None, "decision_function", "the raw boosting margin"),
    ("HistGradientBoostingClassifier", None, "decision_function", "the raw boosting margin"),
    ("AdaBoostClassifier", None, "decision_function", "the weighted sum of the members' votes (SAMME)"),
    ("ForestClassifier", None, "predict_proba", "argmax of the averaged leaf probabilities"),
    ("DecisionTreeClassifier", None, "predict_proba", "argmax of the leaf's class fractions"),
    ("BaggingClassifier", None, "predict_proba", "argmax of the averaged member probabilities"),
    ("KNeighborsClassifier", None, "predict_proba", "argmax of the (weighted) neighbour votes"),
    ("RadiusNeighborsClassifier", None, "predict_proba", "argmax of the (weighted) neighbour votes"),
    ("MLPClassifier", None, "predict_proba", "argmax (or 0.5 cut) of the output layer"),
    ("CalibratedClassifierCV", None, "predict_proba", "argmax of the calibrated probabilities"),
    ("OneVsRestClassifier", "members have decision_function", "decision_function", "argmax of the members' scores"),
    ("OneVsRestClassifier", None, "predict_proba", "argmax of the members' probabilities"),
    ("OneVsOneClassifier", None, "decision_function", "votes plus normalised confidences"),
    ("BaseMixture", None, "log predict_proba", "argmax of the weighted log likelihood"),
    ("KMeans", None, "minus the distance to each centre", "the nearest centre"),
    ("MiniBatchKMeans", None, "minus the distance to each centre", "the nearest centre"),
    ("OutlierMixin", None, "decision_function", "the sign of the decision value"),
)


@dataclass(frozen=True)
class Decision:
    """What ``predict`` compares. ``compute(est, X)`` evaluates it on ``est`` or on any copy of the same
    structure (a perturbed one); None when no continuous quantity describes the decision."""

    name: str
    why: str
    compute: Callable | None
    classes: tuple | None


def decision_of(est) -> Decision | None:
    """The decision of ``est`` (a classifier, clusterer or outlier detector), through pipelines and
    stacking; None when no row of ``DECIDES_WITH`` covers it."""
    if hasattr(est, "steps"):
        inner = decision_of(est.steps[-1][1])
        if inner is None or inner.compute is None:
            return inner
        compute = inner.compute
        return Decision(inner.name, inner.why, lambda e, x: compute(e.steps[-1][1], _before_last(e, x)),
                        inner.classes)
    if type(est).__name__ == "StackingClassifier":
        inner = decision_of(est.final_estimator_)
        if inner is None or inner.compute is None:
            return inner
        compute = inner.compute
        classes = _stacked_classes(est, inner.classes)
        return Decision(inner.name, "the final estimator's " + inner.why,
                        lambda e, x: compute(e.final_estimator_, e.transform(x)), classes)
    names = {cls.__name__ for cls in type(est).__mro__}
    for cls, condition, method, why in DECIDES_WITH:
        if cls in names and (condition is None or CONDITIONS[condition](est)):
            compute = METHODS[method] if method else None
            label = method or why.split(":")[0]
            return Decision(label, why, compute, _classes(est))
    return None


def _before_last(pipeline, x):
    return pipeline[:-1].transform(x) if len(pipeline.steps) > 1 else x


def _classes(est) -> tuple | None:
    classes = getattr(est, "classes_", None)
    if classes is not None and np.ndim(classes) == 1:
        return tuple(np.asarray(classes).tolist())
    names = {cls.__name__ for cls in type(est).__mro__}
    if "OutlierMixin" in names:
        return (-1, 1)
    for attr in ("n_components", "n_clusters"):
        k = getattr(est, attr, None)
        if isinstance(k, int):
            return tuple(range(k))
    return None


def _stacked_classes(est, inner: tuple | None) -> tuple | None:
    """The final estimator of a stacking classifier is fitted on encoded labels (0..k-1)."""
    outer = getattr(est, "classes_", None)
    if inner is None or outer is None:
        return inner
    try:
        return tuple(np.asarray(outer)[list(inner)].tolist())
    except (IndexError, TypeError):
        return inner
