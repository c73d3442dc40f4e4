"""What a fitted scikit-learn model tells us about its input data.

Read from fitted attributes only (a scaler's mean and scale, an encoder's categories, a vectorizer's
vocabulary, the split points of tree models), so that synthesized rows look like real data and hit the
decision boundaries where a conversion is most likely to disagree.
"""

from __future__ import annotations

import numpy as np

from ...spec import Domain
from .trees import iter_estimators

MAX_THRESHOLDS = 256  # per feature: enough to hit boundaries, small enough to stay cheap
MISSING_AWARE = ("SimpleImputer", "IterativeImputer", "KNNImputer", "MissingIndicator")
NAN_NATIVE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
TEXT_VECTORIZERS = ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer")
ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def steps_of(est) -> list:
    """The active steps of a pipeline (or the estimator itself)."""
    steps = getattr(est, "steps", None)
    if steps is None:
        return [est]
    out = []
    for _, step in steps:
        if step is None or step == "passthrough":
            continue
        out.extend(steps_of(step))
    return out


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _feature_stats(step, n: int) -> list[Domain] | None:
    """Per-feature domains read from a preprocessing step, or None when it says nothing."""
    name = type(step).__name__
    try:
        if name == "StandardScaler":
            mean = _floats(step.mean_) if getattr(step, "mean_", None) is not None else np.zeros(n)
            scale = _floats(step.scale_) if getattr(step, "scale_", None) is not None else np.ones(n)
            return [Domain(mean=float(m), std=float(s) or 1.0) for m, s in zip(mean, scale)]
        if name == "MinMaxScaler":
            return [Domain(low=float(a), high=float(b)) for a, b in zip(_floats(step.data_min_), _floats(step.data_max_))]
        if name == "MaxAbsScaler":
            return [Domain(low=-float(m), high=float(m)) for m in _floats(step.max_abs_)]
        if name == "RobustScaler":
            center = _floats(step.center_) if getattr(step, "center_", None) is not None else np.zeros(n)
            scale = _floats(step.scale_) if getattr(step, "scale_", None) is not None else np.ones(n)
            return [Domain(mean=float(c), std=float(s) / 1.35 or 1.0) for c, s in zip(center, scale)]
        if name == "QuantileTransformer":
            q = np.asarray(step.quantiles_, dtype=np.float64)
            return [Domain(low=float(q[0, j]), high=float(q[-1, j])) for j in range(q.shape[1])]
        if name == "KBinsDiscretizer":
            return [Domain(low=float(e[0]), high=float(e[-1]), thresholds=tuple(float(v) for v in e[1:-1]))
                    for e in step.bin_edges_]
        if name in ("SimpleImputer",) and getattr(step, "statistics_", None) is not None:
            stats = step.statistics_
            if np.asarray(stats).dtype.kind in "fiu":
                return [Domain(mean=float(s) if np.isfinite(s) else 0.0, missing_allowed=True) for s in _floats(stats)]
        if name in ENCODERS and getattr(step, "categories_", None) is not None and len(step.categories_) == n:
            numeric = [np.asarray(c) for c in step.categories_]  # an encoder fitted on a numeric array
            if all(c.dtype.kind in "iuf" for c in numeric):
                unknown = getattr(step, "handle_unknown", "error") != "error"
                return [Domain(categories=tuple(float(v) for v in c[np.isfinite(c.astype(np.float64))]),
                               integer=c.dtype.kind in "iu", unknown_allowed=unknown) for c in numeric]
        if name == "PCA" and getattr(step, "mean_", None) is not None:
            comp = np.asarray(step.components_, dtype=np.float64)
            var = np.asarray(step.explained_variance_, dtype=np.float64)
            std = np.sqrt(np.maximum((comp**2 * var[:, None]).sum(axis=0), 1e-12))
            return [Domain(mean=float(m), std=float(s)) for m, s in zip(_floats(step.mean_), std)]
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def _affine_inverse(step):
    """For a feature-wise affine step, a function mapping its output values back to its input."""
    name = type(step).__name__
    if name == "StandardScaler":
        mean = _floats(step.mean_) if getattr(step, "mean_", None) is not None else None
        scale = _floats(step.scale_) if getattr(step, "scale_", None) is not None else None
        return lambda j, t: t * (scale[j] if scale is not None else 1.0) + (mean[j] if mean is not None else 0.0)
    if name == "MinMaxScaler":
        return lambda j, t: (t - step.min_[j]) / step.scale_[j] if step.scale_[j] else t
    if name == "MaxAbsScaler":
        return lambda j, t: t * step.scale_[j]
    if name in MISSING_AWARE:
        return lambda j, t: t
    return None


def tree_thresholds(est, n_features: int, steps: list | None = None) -> dict[int, np.ndarray]:
    """Split points per input feature of every tree model in ``est`` (for trees fitted on the raw
    features, or behind feature-wise affine scalers, whose inverse is applied)."""
    steps = steps if steps is not None else steps_of(est)
    final = steps[-1]
    inverses = []
    for step in steps[:-1]:
        inv = _affine_inverse(step)
        if inv is None:
            return {}
        inverses.append(inv)
    found: dict[int, list[float]] = {}
    mapped: dict[int, np.ndarray] = {}  # id(tree estimator) -> its feature subset (bagging, isolation forest)
    for model in iter_estimators(final):
        subsets = getattr(model, "estimators_features_", None)
        if subsets is not None:
            for member, features in zip(getattr(model, "estimators_", []), subsets):
                mapped[id(member)] = np.asarray(features)
    for model in iter_estimators(final):
        tree = getattr(model, "tree_", None)
        if tree is not None and hasattr(tree, "threshold"):
            features = mapped.get(id(model))
            for f, t in zip(tree.feature, tree.threshold):
                if f >= 0:
                    f = int(features[f]) if features is not None else int(f)
                    found.setdefault(f, []).append(float(t))
        order = _hgb_order(model)
        for iteration in getattr(model, "_predictors", None) or []:
            for predictor in iteration:
                nodes = predictor.nodes
                mask = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
                for f, t in zip(nodes["feature_idx"][mask], nodes["num_threshold"][mask]):
                    found.setdefault(int(order[f]) if order is not None else int(f), []).append(float(t))
    rng = np.random.default_rng(0)
    out = {}
    for f, values in found.items():
        if f >= n_features:
            continue
        arr = np.unique(np.asarray(values))
        arr = arr[np.isfinite(arr)]
        if len(arr) > MAX_THRESHOLDS:
            arr = np.sort(rng.choice(arr, MAX_THRESHOLDS, replace=False))
        for inv in reversed(inverses):
            arr = np.asarray([inv(f, t) for t in arr])
        out[f] = arr
    return out


def _hgb_order(model):
    """For a HistGradientBoosting model, the input column behind each internal feature (None: the same)."""
    from .trees import NotExact, hgb_columns

    if getattr(model, "_predictors", None) is None:
        return None
    try:
        columns = hgb_columns(model)
    except NotExact:
        return None
    return columns.order if columns is not None else None


def hgb_categories(est) -> dict[int, np.ndarray]:
    """Input column -> the categories HistGradientBoosting's encoder knows (strings, or float64 values), when
    ``est`` is a HistGradientBoosting model (alone, or the one step of a pipeline): then its input columns
    are the model's."""
    from .trees import NotExact, hgb_columns

    steps = steps_of(est)
    model = steps[-1]
    if len(steps) != 1 or type(model).__name__ not in NAN_NATIVE:
        return {}
    try:
        columns = hgb_columns(model)
    except NotExact:
        return {}
    return dict(columns.categories) if columns is not None else {}


def category_domain(values: np.ndarray) -> tuple[str, Domain]:
    """The input dtype and Domain of a column HistGradientBoosting reads as a category: strings as
    strings; numbers as float64 (the encoder compares exact values; NaN is a missing category)."""
    if values.dtype == object:
        return "string", Domain(categories=tuple(values.tolist()), unknown_allowed=True)
    integer = bool(np.all(values == np.round(values)))
    return "float64", Domain(categories=tuple(float(v) for v in values), unknown_allowed=True,
                             missing_allowed=True, integer=integer)


def numeric_domains(est, n_features: int) -> tuple[Domain, ...]:
    """One Domain per column of a numeric input X."""
    steps = steps_of(est)
    domains = [Domain() for _ in range(n_features)]
    # the first informative preprocessing step describes the raw features
    missing = any(type(s).__name__ in MISSING_AWARE for s in steps[:1]) or type(steps[-1]).__name__ in NAN_NATIVE
    for step in steps[:-1] or steps:
        stats = _feature_stats(step, n_features)
        if stats and len(stats) == n_features:
            domains = stats
            break
        if type(step).__name__ not in MISSING_AWARE:
            break
    thresholds = tree_thresholds(est, n_features)
    categorical = {j: category_domain(v)[1] for j, v in hgb_categories(est).items() if j < n_features}
    out = []
    for j, d in enumerate(domains):
        t = thresholds.get(j)
        kw = dict(vars(d))
        if t is not None and len(t):
            kw["thresholds"] = tuple(float(v) for v in t)
            if d.low is None and d.mean is None:
                span = float(t[-1] - t[0]) or 1.0
                kw["low"], kw["high"] = float(t[0]) - 0.1 * span, float(t[-1]) + 0.1 * span
        if j in categorical:
            c = categorical[j]
            kw.update(categories=c.categories, integer=c.integer, unknown_allowed=True, thresholds=())
        kw["missing_allowed"] = kw.get("missing_allowed") or missing
        out.append(Domain(**kw))
    return tuple(out)


def text_domain(vectorizer) -> Domain:
    vocab = getattr(vectorizer, "vocabulary_", None)
    words: tuple[str, ...] = ()
    if vocab:
        words = tuple(sorted(vocab, key=vocab.get))
    return Domain(vocabulary=words or None, lowercase=bool(getattr(vectorizer, "lowercase", False)))


def column_domain(transformer, position: int) -> tuple[str, Domain]:
    """The ONNX dtype and Domain of one DataFrame column consumed by ``transformer`` (a step or a
    pipeline) at ``position`` among its columns."""
    if transformer in (None, "drop", "passthrough"):
        return "float32", Domain()
    steps = steps_of(transformer)
    missing = False
    for step in steps:
        name = type(step).__name__
        if name in MISSING_AWARE:
            missing = True
            continue
        if name in ENCODERS:
            cats = np.asarray(step.categories_[position])
            unknown = getattr(step, "handle_unknown", "error") != "error"
            if cats.dtype.kind in "OUS":
                values = tuple(str(c) for c in cats if isinstance(c, str))
                return "string", Domain(categories=values, unknown_allowed=unknown)
            finite = cats[np.isfinite(cats.astype(np.float64))] if cats.dtype.kind == "f" else cats
            if cats.dtype.kind in "iub":
                return "int64", Domain(categories=tuple(int(c) for c in finite), unknown_allowed=unknown, integer=True)
            return "float32", Domain(categories=tuple(float(c) for c in finite), unknown_allowed=unknown,
                                     missing_allowed=missing)
        if name in TEXT_VECTORIZERS:
            return "string", text_domain(step)
        stats = _feature_stats(step, position + 1)
        if stats and position < len(stats):
            d = stats[position]
            return "float32", Domain(**(vars(d) | {"missing_allowed": missing or d.missing_allowed}))
        break
    return "float32", Domain(missing_allowed=missing)


def column_thresholds(est, names: list[str]) -> dict[int, tuple[float, ...]]:
    """Split points of the trees behind a ColumnTransformer, mapped back to its input columns through
    the feature-wise affine transformers (scalers, passthrough) that feed them."""
    steps = steps_of(est)
    ct = steps[0]
    slices = getattr(ct, "output_indices_", None)
    if slices is None or len(steps) < 2:
        return {}
    n_out = max((sl.stop for sl in slices.values()), default=0)
    by_output = tree_thresholds(est, n_out, steps=steps[1:])
    mapping = getattr(ct, "_transformer_to_input_indices", None) or {}
    out: dict[int, tuple[float, ...]] = {}
    for name, trans, _ in ct.transformers_:
        sl = slices.get(name)
        indices = mapping.get(name)
        if sl is None or indices is None:
            continue
        if trans == "passthrough":
            inverse = lambda j, t: t  # noqa: E731
        elif trans == "drop" or isinstance(trans, str):
            continue
        else:
            inverse = _affine_inverse(trans)
            if inverse is None or type(trans).__name__ in MISSING_AWARE:
                continue
        for k, column in enumerate(indices):
            values = by_output.get(sl.start + k)
            if values is not None and len(values):
                out[int(column)] = tuple(float(inverse(k, t)) for t in values)
    return out
