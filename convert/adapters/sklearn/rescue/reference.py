"""Independent evaluation of fitted scikit-learn models from their arrays alone, with numpy.

For a file whose saving release no longer installs, this is the evidence that a migrated model still computes
what it did: the formulas of the releases that wrote these files, applied to the fitted arrays (tree traversal
of the node arrays, linear and kernel decision functions from coefficients and support vectors, naive Bayes
from its statistics, scalers, PCA, k-means, nearest neighbours, multilayer perceptrons, one-hot encoding,
TF-IDF), never calling the estimator's own methods. Only models whose evaluation is exact are covered
(``EVALUATORS``); for anything else ``evaluator`` returns None and the caller says the model was not verified.

Where today's release computes differently from the one that saved a file, these follow the old release: a
multiclass one-vs-rest LogisticRegression normalizes its sigmoids (1.9 applies a softmax), a multiclass
gradient boosting's scores are the uncentred log-priors plus the stages. A disagreement then shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Evaluation:
    """What an evaluator computes (method name -> function of the model's native input) and how."""

    methods: dict[str, Callable]
    how: str

    def __call__(self, method: str, x):
        return self.methods[method](x)


class NotExact(Exception):
    """This model (or a part of it) has no exact evaluation here."""


def evaluator(est) -> Evaluation | None:
    """An Evaluation of ``est`` from its fitted arrays, or None when no exact one exists."""
    try:
        return _build(est)
    except (NotExact, AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None


def _build(est) -> Evaluation:
    name = type(est).__name__
    build = EVALUATORS.get(name)
    if build is None:
        raise NotExact(name)
    return build(est)


def _dense(x) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    if hasattr(x, "to_numpy"):
        x = x.to_numpy()
    return np.asarray(x, dtype=np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _expit(z):
    return 1.0 / (1.0 + np.exp(-z))


def _labels(classes, index) -> np.ndarray:
    return np.asarray(classes)[np.asarray(index, dtype=np.intp)]


# ------------------------------------------------------------------------------------------------- trees


def _leaves(tree, x: np.ndarray) -> np.ndarray:
    """The leaf each row reaches: ``x[feature] <= threshold`` goes left, compared as scikit-learn's trees do
    (the input cast to float32, the threshold in double); a NaN goes where missing_go_to_left says."""
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature, threshold = np.asarray(tree.feature), np.asarray(tree.threshold)
    nodes = tree.__getstate__()["nodes"]
    nan_left = nodes["missing_go_to_left"] if "missing_go_to_left" in (nodes.dtype.names or ()) else \
        np.zeros(len(left), dtype=bool)
    x32 = np.asarray(x, dtype=np.float32).astype(np.float64)
    node = np.zeros(len(x32), dtype=np.intp)
    rows = np.arange(len(x32))
    active = left[node] != -1
    while active.any():
        r, n = rows[active], node[active]
        v = x32[r, feature[n]]
        go_left = np.where(np.isnan(v), nan_left[n].astype(bool), v <= threshold[n])
        node[r] = np.where(go_left, left[n], right[n])
        active = left[node] != -1
    return node


def _tree_proba(est, x) -> np.ndarray:
    value = np.asarray(est.tree_.value)[_leaves(est.tree_, x), 0, : len(est.classes_)]
    total = value.sum(axis=1, keepdims=True)
    return value / np.where(total == 0, 1.0, total)  # counts (before 1.4) or fractions: the same proportions


def _tree_value(est, x) -> np.ndarray:
    return np.asarray(est.tree_.value)[_leaves(est.tree_, x), 0, 0]


def _single_output(est):
    if getattr(est, "n_outputs_", 1) != 1:
        raise NotExact("multi-output trees")


def _tree_classifier(est) -> Evaluation:
    _single_output(est)
    proba = lambda x: _tree_proba(est, _dense(x))  # noqa: E731
    return Evaluation({"predict_proba": proba, "predict": lambda x: _labels(est.classes_, proba(x).argmax(axis=1))},
                      "tree traversal of the node arrays")


def _tree_regressor(est) -> Evaluation:
    _single_output(est)
    return Evaluation({"predict": lambda x: _tree_value(est, _dense(x))}, "tree traversal of the node arrays")


def _forest_classifier(est) -> Evaluation:
    _single_output(est)

    def proba(x):
        x = _dense(x)
        return np.mean([_tree_proba(t, x) for t in est.estimators_], axis=0)

    return Evaluation({"predict_proba": proba, "predict": lambda x: _labels(est.classes_, proba(x).argmax(axis=1))},
                      f"the mean of {len(est.estimators_)} tree traversals of the node arrays")


def _forest_regressor(est) -> Evaluation:
    _single_output(est)
    return Evaluation({"predict": lambda x: np.mean([_tree_value(t, _dense(x)) for t in est.estimators_], axis=0)},
                      f"the mean of {len(est.estimators_)} tree traversals of the node arrays")


def _gb_raw(est, x) -> np.ndarray:
    """The initial prediction (the init estimator's constant or class priors) plus learning_rate times the
    stages' tree values: the formula of every release from 0.21 on (the init estimators are Dummy models)."""
    stages = np.asarray(est.estimators_, dtype=object)
    n, k = len(x), stages.shape[1]
    init = est.init_
    if isinstance(init, str) and init == "zero":
        raw = np.zeros((n, k))
    elif type(init).__name__ == "DummyRegressor":
        raw = np.tile(np.asarray(init.constant_, dtype=np.float64).reshape(1, -1), (n, 1))
    elif type(init).__name__ == "DummyClassifier" and init.strategy == "prior":
        eps = np.finfo(np.float32).eps
        p = np.clip(np.asarray(init.class_prior_, dtype=np.float64), eps, 1 - eps)
        factor = 0.5 if getattr(est, "loss", None) == "exponential" else 1.0
        raw = np.tile(factor * np.log(p[1:] / (1 - p[1:])) if k == 1 else np.log(p), (n, 1))
    else:
        raise NotExact(f"init estimator {type(init).__name__}")
    for stage in stages:
        for j, tree in enumerate(stage):
            raw[:, j] += est.learning_rate * _tree_value(tree, x)
    return raw


def _gb_regressor(est) -> Evaluation:
    return Evaluation({"predict": lambda x: _gb_raw(est, _dense(x))[:, 0]},
                      f"the initial constant plus {len(est.estimators_)} stages of tree traversals")


def _gb_classifier(est) -> Evaluation:
    def proba(x):
        raw = _gb_raw(est, _dense(x))
        if raw.shape[1] == 1:
            p = _expit((2.0 if est.loss == "exponential" else 1.0) * raw[:, 0])
            return np.column_stack([1 - p, p])
        return _softmax(raw)

    def decision(x):
        raw = _gb_raw(est, _dense(x))
        return raw[:, 0] if raw.shape[1] == 1 else raw

    return Evaluation({"predict_proba": proba, "decision_function": decision,
                       "predict": lambda x: _labels(est.classes_, proba(x).argmax(axis=1))},
                      f"the class priors plus {len(est.estimators_)} stages of tree traversals")


# ------------------------------------------------------------------------------------------------ linear


def _linear_decision(est, x) -> np.ndarray:
    coef = np.asarray(est.coef_, dtype=np.float64)
    d = _dense(x) @ coef.T + np.asarray(est.intercept_, dtype=np.float64)
    return d.ravel() if coef.ndim == 2 and coef.shape[0] == 1 else d


def _linear_classifier(est, proba: str | None = None) -> Evaluation:
    classes = np.asarray(est.classes_)

    def decision(x):
        return _linear_decision(est, x)

    def predict(x):
        d = decision(x)
        return _labels(classes, (d > 0).astype(np.intp) if d.ndim == 1 else d.argmax(axis=1))

    methods = {"decision_function": decision, "predict": predict}
    if proba is not None:
        def predict_proba(x):
            d = decision(x)
            if d.ndim == 1:
                p = _expit(d)
                return np.column_stack([1 - p, p])
            if proba == "softmax":
                return _softmax(d)
            p = _expit(d)
            return p / p.sum(axis=1, keepdims=True)
        methods["predict_proba"] = predict_proba
    return Evaluation(methods, "the linear decision function of coef_ and intercept_")


def _logistic(est) -> Evaluation:
    multi = getattr(est, "multi_class", "auto")
    solver = getattr(est, "solver", "lbfgs")
    ovr = multi == "ovr" or (multi in ("auto", "warn") and solver == "liblinear")
    return _linear_classifier(est, "ovr" if ovr else "softmax")


def _sgd_classifier(est) -> Evaluation:
    loss = getattr(est, "loss", "hinge")
    return _linear_classifier(est, "ovr" if loss in ("log", "log_loss") else None)


def _linear_regressor(est) -> Evaluation:
    return Evaluation({"predict": lambda x: _linear_decision(est, x)}, "coef_ and intercept_")


# ------------------------------------------------------------------------------------------- kernel SVMs


def _kernel(est, x: np.ndarray, sv: np.ndarray) -> np.ndarray:
    kind = est.kernel
    gamma = float(getattr(est, "_gamma", est.gamma))
    if kind == "linear":
        return x @ sv.T
    if kind == "rbf":
        sq = (x**2).sum(axis=1)[:, None] + (sv**2).sum(axis=1)[None, :] - 2 * x @ sv.T
        return np.exp(-gamma * np.maximum(sq, 0.0))
    if kind == "poly":
        return (gamma * (x @ sv.T) + est.coef0) ** est.degree
    if kind == "sigmoid":
        return np.tanh(gamma * (x @ sv.T) + est.coef0)
    raise NotExact(f"kernel {kind!r}")


def _svc(est) -> Evaluation:
    """libsvm's one-vs-one decision values from the support vectors, dual coefficients and intercepts; the
    binary case and the 'ovr' shape as scikit-learn presents them; votes decide the label (first maximum)."""
    classes = np.asarray(est.classes_)
    sv = _dense(est.support_vectors_)
    dual = _dense(est.dual_coef_)
    intercept = np.asarray(est.intercept_, dtype=np.float64)
    n_support = np.asarray(getattr(est, "_n_support", getattr(est, "n_support_", None)))
    start = np.concatenate([[0], np.cumsum(n_support)])
    k = len(classes)
    if getattr(est, "break_ties", False) and k > 2:
        raise NotExact("break_ties")

    def ovo(x):
        kx = _kernel(est, _dense(x), sv)
        if k == 2:
            return (kx @ dual.T).ravel() + intercept[0]  # the public (sign-flipped) binary convention
        out, p = np.zeros((len(kx), k * (k - 1) // 2)), 0
        for i in range(k):
            for j in range(i + 1, k):
                si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                out[:, p] = kx[:, si] @ dual[j - 1, si] + kx[:, sj] @ dual[i, sj] + intercept[p]
                p += 1
        return out

    def votes(d, wins):
        v, conf, p = np.zeros((len(d), k)), np.zeros((len(d), k)), 0
        for i in range(k):
            for j in range(i + 1, k):
                conf[:, i] += d[:, p]
                conf[:, j] -= d[:, p]
                won = wins(d[:, p])
                v[:, i] += won
                v[:, j] += ~won
                p += 1
        return v, conf

    def decision(x):
        d = ovo(x)
        if k == 2 or getattr(est, "decision_function_shape", "ovr") != "ovr":
            return d
        v, conf = votes(d, lambda col: col >= 0)  # scikit-learn's _ovr_decision_function
        return v + conf / (3 * (np.abs(conf) + 1))

    def predict(x):
        d = ovo(x)
        if k == 2:
            return _labels(classes, (d > 0).astype(np.intp))
        return _labels(classes, votes(d, lambda col: col > 0)[0].argmax(axis=1))  # libsvm: the first most voted

    return Evaluation({"decision_function": decision, "predict": predict},
                      f"the {est.kernel} kernel over {len(sv)} support vectors, dual_coef_ and intercept_")


# ------------------------------------------------------------------------------------------- naive Bayes


def _nb(est, jll: Callable) -> Evaluation:
    classes = np.asarray(est.classes_)

    def proba(x):
        j = jll(_dense(x))
        return _softmax(j)

    return Evaluation({"predict_proba": proba, "predict": lambda x: _labels(classes, jll(_dense(x)).argmax(axis=1))},
                      "the joint log-likelihood from the class statistics")


def _gaussian_nb(est) -> Evaluation:
    theta = np.asarray(est.theta_, dtype=np.float64)
    var = np.asarray(est.var_, dtype=np.float64)
    prior = np.log(np.asarray(est.class_prior_, dtype=np.float64))

    def jll(x):
        return (prior - 0.5 * np.log(2 * np.pi * var).sum(axis=1)
                - 0.5 * (((x[:, None, :] - theta[None]) ** 2) / var[None]).sum(axis=2))

    return _nb(est, jll)


def _multinomial_nb(est) -> Evaluation:
    flp = np.asarray(est.feature_log_prob_, dtype=np.float64)
    prior = np.asarray(est.class_log_prior_, dtype=np.float64)
    return _nb(est, lambda x: x @ flp.T + prior)


def _bernoulli_nb(est) -> Evaluation:
    flp = np.asarray(est.feature_log_prob_, dtype=np.float64)
    prior = np.asarray(est.class_log_prior_, dtype=np.float64)
    neg = np.log(1 - np.exp(flp))

    def jll(x):
        if est.binarize is not None:
            x = (x > est.binarize).astype(np.float64)
        return x @ (flp - neg).T + prior + neg.sum(axis=1)

    return _nb(est, jll)


# ---------------------------------------------------------------------------- transformers and the rest


def _standard_scaler(est) -> Evaluation:
    def transform(x):
        x = _dense(x)
        if getattr(est, "with_mean", True) and getattr(est, "mean_", None) is not None:
            x = x - np.asarray(est.mean_)
        if getattr(est, "with_std", True) and getattr(est, "scale_", None) is not None:
            x = x / np.asarray(est.scale_)
        return x

    return Evaluation({"transform": transform}, "mean_ and scale_")


def _min_max_scaler(est) -> Evaluation:
    def transform(x):
        y = _dense(x) * np.asarray(est.scale_) + np.asarray(est.min_)
        return np.clip(y, *est.feature_range) if getattr(est, "clip", False) else y

    return Evaluation({"transform": transform}, "scale_ and min_")


def _pca(est) -> Evaluation:
    def transform(x):
        y = (_dense(x) - np.asarray(est.mean_)) @ np.asarray(est.components_).T
        return y / np.sqrt(np.asarray(est.explained_variance_)) if est.whiten else y

    return Evaluation({"transform": transform}, "mean_ and components_")


def _kmeans(est) -> Evaluation:
    centers = np.asarray(est.cluster_centers_, dtype=np.float64)

    def distances(x):
        x = _dense(x)
        return np.sqrt(np.maximum((x**2).sum(1)[:, None] + (centers**2).sum(1)[None] - 2 * x @ centers.T, 0))

    return Evaluation({"transform": distances, "predict": lambda x: distances(x).argmin(axis=1)},
                      "distances to cluster_centers_")


def _knn_classifier(est) -> Evaluation:
    metric = getattr(est, "effective_metric_", est.metric)
    p = (getattr(est, "effective_metric_params_", None) or {}).get("p", getattr(est, "p", 2))
    if metric not in ("euclidean", "minkowski") or (metric == "minkowski" and p != 2):
        raise NotExact(f"metric {metric}")
    fit_x = np.asarray(est._fit_X, dtype=np.float64)
    y = np.asarray(est._y)
    if y.ndim != 1:
        raise NotExact("multi-output neighbours")
    classes, k = np.asarray(est.classes_), est.n_neighbors

    def proba(x):
        d = _exact_distances(_dense(x), fit_x)
        idx = np.argsort(d, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(d, idx, axis=1)
        if est.weights == "distance":
            with np.errstate(divide="ignore"):
                w = 1.0 / dist
            exact = np.isinf(w)
            w = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float64), w)
        elif est.weights == "uniform":
            w = np.ones_like(dist)
        else:
            raise NotExact("callable weights")
        out = np.zeros((len(x), len(classes)))
        for c in range(len(classes)):
            out[:, c] = (w * (y[idx] == c)).sum(axis=1)
        return out / out.sum(axis=1, keepdims=True)

    return Evaluation({"predict_proba": proba, "predict": lambda x: _labels(classes, proba(x).argmax(axis=1))},
                      f"the {k} nearest of {len(fit_x)} training rows (brute force)")


def _exact_distances(x: np.ndarray, fit_x: np.ndarray, block: int = 1 << 22) -> np.ndarray:
    """Euclidean distances from differences (a row equal to a training row is at exactly 0, which distance
    weights depend on), in blocks of rows that keep the difference array small."""
    step = max(1, block // max(1, fit_x.size))
    return np.concatenate([np.sqrt(((x[i:i + step, None, :] - fit_x[None]) ** 2).sum(axis=2))
                           for i in range(0, len(x), step)]) if len(x) else np.zeros((0, len(fit_x)))


_ACTIVATIONS = {"identity": lambda z: z, "logistic": _expit, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}


def _mlp_forward(est, x) -> np.ndarray:
    a = _dense(x)
    last = len(est.coefs_) - 1
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        a = a @ w + b
        if i < last:
            a = _ACTIVATIONS[est.activation](a)
    out = est.out_activation_
    return _softmax(a) if out == "softmax" else _ACTIVATIONS[out](a)


def _mlp_classifier(est) -> Evaluation:
    classes = np.asarray(est.classes_)

    def proba(x):
        p = _mlp_forward(est, x)
        return np.column_stack([1 - p[:, 0], p[:, 0]]) if p.shape[1] == 1 and len(classes) == 2 else p

    return Evaluation({"predict_proba": proba, "predict": lambda x: _labels(classes, proba(x).argmax(axis=1))},
                      "a forward pass through coefs_ and intercepts_")


def _mlp_regressor(est) -> Evaluation:
    return Evaluation({"predict": lambda x: _mlp_forward(est, x).squeeze(axis=1) if est.n_outputs_ == 1
                       else _mlp_forward(est, x)}, "a forward pass through coefs_ and intercepts_")


def _onehot(est) -> Evaluation:
    if getattr(est, "drop_idx_", None) is not None or getattr(est, "_infrequent_enabled", False):
        raise NotExact("dropped or infrequent categories")
    cats = [np.asarray(c) for c in est.categories_]

    def transform(x):
        x = np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x)
        blocks = []
        for j, c in enumerate(cats):
            col = x[:, j]
            hit = col[:, None] == c[None, :]
            if not hit.any(axis=1).all() and est.handle_unknown == "error":
                raise ValueError(f"unknown category in column {j}")
            blocks.append(hit.astype(np.float64))
        return np.hstack(blocks)

    return Evaluation({"transform": transform}, "categories_")


def _tfidf(est) -> Evaluation:
    """The word analyzer (lowercase, token_pattern, stop words, n-grams) counted over vocabulary_, then tf
    (binary, sublinear), idf_ and the row norm, as TfidfVectorizer has computed them since 0.1x."""
    import re

    if est.analyzer != "word" or est.tokenizer is not None or est.preprocessor is not None or est.strip_accents:
        raise NotExact("a custom analyzer")
    if getattr(est, "input", "content") != "content":
        raise NotExact("file inputs")
    pattern = re.compile(est.token_pattern)
    if pattern.groups > 1:
        raise NotExact("a token pattern with several groups")
    stop = est.stop_words
    if stop == "english":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stop
    stop = frozenset(stop) if stop else frozenset()
    low, high = est.ngram_range
    vocab = est.vocabulary_
    idf = np.asarray(est.idf_, dtype=np.float64) if est.use_idf else None

    def terms(doc: str):
        if est.lowercase:
            doc = doc.lower()
        tokens = [t for t in pattern.findall(doc) if t not in stop]
        for n in range(low, high + 1):
            for i in range(len(tokens) - n + 1):
                yield " ".join(tokens[i:i + n])

    def transform(x):
        docs = list(x)
        out = np.zeros((len(docs), len(vocab)))
        for r, doc in enumerate(docs):
            for t in terms(doc):
                j = vocab.get(t)
                if j is not None:
                    out[r, j] += 1
        if est.binary:
            out = (out > 0).astype(np.float64)
        if est.sublinear_tf:
            out = np.where(out > 0, np.log(np.where(out > 0, out, 1)) + 1, 0)
        if idf is not None:
            out = out * idf
        if est.norm == "l2":
            norms = np.sqrt((out**2).sum(axis=1, keepdims=True))
        elif est.norm == "l1":
            norms = np.abs(out).sum(axis=1, keepdims=True)
        else:
            return out
        return out / np.where(norms == 0, 1.0, norms)

    weights = "idf_" if idf is not None else "no idf"
    return Evaluation({"transform": transform}, f"word counts over a vocabulary of {len(vocab)}, {weights}, "
                      f"norm {est.norm}")


def _one_vs_rest(est) -> Evaluation:
    kind = getattr(est.label_binarizer_, "y_type_", "multiclass")
    if kind not in ("multiclass", "multilabel-indicator"):
        raise NotExact(kind)
    inner = [_build(e) for e in est.estimators_]
    classes = np.asarray(est.classes_)

    def binary(ev, x):
        if "decision_function" in ev.methods:
            return np.ravel(ev("decision_function", x))
        return ev("predict_proba", x)[:, 1]

    def decision(x):
        return np.column_stack([binary(ev, x) for ev in inner])

    def predict(x):
        if kind == "multilabel-indicator":  # one yes/no column per label: a score above 0 (a probability above 0.5)
            return np.column_stack([binary(ev, x) > (0 if "decision_function" in ev.methods else 0.5)
                                    for ev in inner]).astype(np.int64)
        d = decision(x)
        best = np.zeros(len(d), dtype=np.intp)
        top = np.full(len(d), -np.inf)
        for i in range(d.shape[1]):  # ties go to the last estimator, as OneVsRestClassifier.predict does
            np.maximum(top, d[:, i], out=top)
            best[top == d[:, i]] = i
        return _labels(classes, best)

    return Evaluation({"decision_function": decision, "predict": predict},
                      f"one-vs-rest over {len(inner)} binary models ({inner[0].how})")


def _pipeline(est) -> Evaluation:
    steps = [s for _, s in est.steps if s is not None and s != "passthrough"]
    front = [_build(s) for s in steps[:-1]]
    last = _build(steps[-1])

    def through(x):
        for ev in front:
            x = ev("transform", x)
        return x

    methods = {m: (lambda f: lambda x: f(through(x)))(f) for m, f in last.methods.items()}
    return Evaluation(methods, " then ".join([ev.how for ev in front] + [last.how]))


def _search(est) -> Evaluation:
    inner = _build(est.best_estimator_)
    return Evaluation(inner.methods, f"its best_estimator_: {inner.how}")


EVALUATORS: dict[str, Callable[[object], Evaluation]] = {
    "DecisionTreeClassifier": _tree_classifier, "ExtraTreeClassifier": _tree_classifier,
    "DecisionTreeRegressor": _tree_regressor, "ExtraTreeRegressor": _tree_regressor,
    "RandomForestClassifier": _forest_classifier, "ExtraTreesClassifier": _forest_classifier,
    "RandomForestRegressor": _forest_regressor, "ExtraTreesRegressor": _forest_regressor,
    "GradientBoostingClassifier": _gb_classifier, "GradientBoostingRegressor": _gb_regressor,
    "LogisticRegression": _logistic, "SGDClassifier": _sgd_classifier,
    "LinearSVC": lambda e: _linear_classifier(e), "RidgeClassifier": lambda e: _linear_classifier(e),
    "Perceptron": lambda e: _linear_classifier(e),
    "LinearRegression": _linear_regressor, "Ridge": _linear_regressor, "Lasso": _linear_regressor,
    "ElasticNet": _linear_regressor, "LinearSVR": _linear_regressor, "SGDRegressor": _linear_regressor,
    "SVC": _svc, "NuSVC": _svc,
    "GaussianNB": _gaussian_nb, "MultinomialNB": _multinomial_nb, "BernoulliNB": _bernoulli_nb,
    "StandardScaler": _standard_scaler, "MinMaxScaler": _min_max_scaler, "PCA": _pca,
    "KMeans": _kmeans, "KNeighborsClassifier": _knn_classifier,
    "MLPClassifier": _mlp_classifier, "MLPRegressor": _mlp_regressor,
    "OneHotEncoder": _onehot, "TfidfVectorizer": _tfidf,
    "OneVsRestClassifier": _one_vs_rest, "Pipeline": _pipeline,
    "GridSearchCV": _search, "RandomizedSearchCV": _search,
}
