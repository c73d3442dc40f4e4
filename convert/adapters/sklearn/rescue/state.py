"""What older scikit-learn releases stored inside their objects, brought forward to what today's release reads.

Three tables, each keyed by the class they apply to (an estimator's rules are looked up along its MRO, so a
rule for ``BaseLibSVM`` covers SVC, NuSVC, SVR, ...):

- ``CONSTRUCTORS``: classes whose constructor arguments changed (a 2013 tree took eleven, today's three);
- ``LAYOUTS``: extension types whose pickled state changed shape (tree node arrays gained a field in 1.3, binary
  trees a sample-weight slot in 1.0), rewritten as the unpickler rebuilds them;
- after loading, ``repair`` brings each estimator forward: renamed attributes and old parameter values (data, in
  ``state.json``, each with the release that changed it), parameters added since (their value that
  reproduces the old behaviour), and ``FILLS``: values today's release computes at fit time, derived from the
  fitted arrays, or objects it builds differently, rebuilt from the estimator's own parameters.

Every rule applies only to the old form it recognises (the attribute is there, the field is absent): a current
file passes through unchanged. Each application is recorded in the Migration with the release that made it
necessary. The names of classes themselves (modules that moved) are the scanner's table, not this one.
"""

from __future__ import annotations

import inspect
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_PATH = Path(__file__).with_name("state.json")


@lru_cache(maxsize=1)
def data() -> dict:
    return json.loads(DATA_PATH.read_text(encoding="utf-8"))


def _by_class(section: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in data()[section]:
        out.setdefault(row["class"], []).append(row)
    return out


# ------------------------------------------------------------------------------------- constructors


def _stand_in(cls, adapt, migration):
    """A callable the unpickler uses in place of ``cls`` (REDUCE and NEWOBJ alike) that builds a real ``cls``
    from arguments ``adapt`` brings forward."""

    class StandIn:
        def __new__(_, *args):
            return cls(*adapt(args, migration))

    StandIn.__name__ = StandIn.__qualname__ = cls.__name__
    return StandIn


def _tree_args(args, migration):
    """Tree(n_features, n_classes, n_outputs) since 0.14; the 2013 Tree also took its criterion, stopping rules
    and random state (which prediction never used)."""
    if len(args) > 3:
        migration.add("layout", "a 2013 Tree's constructor arguments reduced to (n_features, n_classes, n_outputs)",
                      "0.14")
    return (args[0], np.asarray(args[1], dtype=np.intp), args[2])


def _criterion_args(args, migration):
    """Classification criteria take their class counts as a platform-integer array (older ones were int32)."""
    if len(args) == 2 and isinstance(args[1], np.ndarray) and args[1].dtype != np.intp:
        return (args[0], args[1].astype(np.intp))
    return args


def _tree_constructor(cls, migration):
    return _stand_in(cls, _tree_args, migration)


def _criterion_constructor(cls, migration):
    return _stand_in(cls, _criterion_args, migration)


CONSTRUCTORS = {"sklearn.tree._tree.Tree": _tree_constructor,
                **{f"sklearn.tree._criterion.{n}": _criterion_constructor
                   for n in ("ClassificationCriterion", "Gini", "Entropy")}}


# ------------------------------------------------------------------------------------------ layouts


def _tree_state(tree, state, migration):
    """Tree state as 1.3 and later read it: a structured ``nodes`` array with ``missing_go_to_left`` (added in
    1.3; an old tree never saw a missing value, so 0: a NaN goes right) and float64 ``values``."""
    from sklearn.tree._tree import NODE_DTYPE

    if not isinstance(state, dict):
        return state
    if "nodes" not in state:
        state = _ancient_tree_state(tree, state, migration)
    nodes = state["nodes"]
    names = nodes.dtype.names or ()
    if nodes.dtype != NODE_DTYPE and set(names) <= set(NODE_DTYPE.names):
        wide = np.zeros(nodes.shape, dtype=NODE_DTYPE)
        for name in names:
            wide[name] = nodes[name]
        if "missing_go_to_left" not in names:
            migration.add("layout", "tree node arrays given the missing_go_to_left field (0: no missing values "
                                    "were seen in training)", "1.3")
        state = dict(state, nodes=wide)
    values = state.get("values")
    if isinstance(values, np.ndarray) and values.dtype != np.float64:
        state = dict(state, values=values.astype(np.float64))
    return state


def _ancient_tree_state(tree, state, migration):
    """Before 0.14 a Tree kept parallel arrays (children_left, children_right, feature, threshold, value,
    init_error, n_samples); today's keeps one structured node array. Prediction reads the children, feature,
    threshold and value; init_error was the node's impurity."""
    from sklearn.tree._tree import NODE_DTYPE

    count = int(state["node_count"])
    left = np.asarray(state["children_left"])[:count]
    nodes = np.zeros(count, dtype=NODE_DTYPE)
    nodes["left_child"] = left
    nodes["right_child"] = np.asarray(state["children_right"])[:count]
    nodes["feature"] = np.asarray(state["feature"])[:count]
    nodes["threshold"] = np.asarray(state["threshold"])[:count]
    samples = np.asarray(state.get("n_samples", np.ones(count)))[:count]
    nodes["n_node_samples"] = samples
    nodes["weighted_n_node_samples"] = samples
    nodes["impurity"] = np.asarray(state.get("init_error", np.zeros(count)), dtype=np.float64)[:count]
    leaf = left == -1
    nodes["feature"][leaf] = -2
    nodes["threshold"][leaf] = -2.0
    value = np.asarray(state["value"], dtype=np.float64).reshape(-1, tree.n_outputs, tree.max_n_classes)[:count]
    migration.add("layout", "a Tree stored as parallel arrays rebuilt as one node array", "0.14")
    return {"max_depth": _depth(nodes), "node_count": count, "nodes": nodes, "values": value}


def _depth(nodes) -> int:
    depth = np.zeros(len(nodes), dtype=np.intp)
    for i in range(len(nodes)):  # children always follow their parent in the arrays
        for child in (nodes["left_child"][i], nodes["right_child"][i]):
            if child > 0:
                depth[child] = depth[i] + 1
    return int(depth.max(initial=0))


def _binary_tree_state(tree, state, migration):
    """KDTree/BallTree state gained a sample-weight slot (``None``: unweighted) in 1.0."""
    if isinstance(state, tuple) and len(state) == 12:
        migration.add("layout", f"{type(tree).__name__} state given its sample_weight slot (None: unweighted)",
                      "1.0")
        return state + (None,)
    return state


LAYOUTS = {"sklearn.tree._tree.Tree": _tree_state,
           "sklearn.neighbors._kd_tree.KDTree": _binary_tree_state,
           "sklearn.neighbors._ball_tree.BallTree": _binary_tree_state}


# ------------------------------------------------------------------------------------------- repair


def repair(obj, migration, saved: str | None = None) -> None:
    """Bring every scikit-learn estimator in ``obj`` forward (in place), recording each change; ``saved`` is the
    release that wrote the file (``Artifact.saved_with``), for what its state alone does not say."""
    from .changes import walk

    for _, est in list(walk(obj)):
        if hasattr(est, "get_params") and hasattr(est, "__dict__"):
            repair_estimator(est, migration)
    normalize_class_counts(obj, saved, migration)


def _release(version: str | None) -> tuple[int, ...] | None:
    import re

    m = re.match(r"(?:before )?(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def normalize_class_counts(obj, saved: str | None, migration) -> None:
    """scikit-learn 1.4 changed what a classification tree stores in ``tree_.value``: weighted class
    fractions instead of counts, and dropped the normalization from ``predict_proba``. A tree pickled
    before 1.4 keeps its counts, so a newer release returns probabilities that do not sum to one (and a
    forest's ``predict`` can change). Such trees are normalized in memory, as the release that saved them
    computed, and the migration says so; the file is untouched."""
    import sklearn

    from .changes import walk

    before, now = _release(saved), _release(sklearn.__version__)
    if before is None or now is None or not (before < (1, 4) <= now):
        return
    fixed = sums = 0
    for _, est in walk(obj):  # every tree, also in dicts and tuples of estimators
        tree = getattr(est, "tree_", None)
        if tree is None or not hasattr(est, "classes_"):
            continue
        value = tree.value  # a writable view of the tree's own buffer
        total = value.sum(axis=-1, keepdims=True)
        if np.allclose(total[total > 0], 1.0):
            continue
        sums = max(sums, float(total.max()))
        np.divide(value, np.where(total == 0, 1.0, total), out=value)
        fixed += 1
    if fixed:
        migration.add("layout", f"{fixed} classification tree(s) pickled with scikit-learn {saved} store class counts, "
                      f"which scikit-learn {sklearn.__version__} reads as fractions (its predict_proba would return "
                      f"counts, up to {sums:g}, not probabilities); normalized in memory as {saved} computed them", "1.4")


def _classes(est) -> list[str]:
    return [c.__name__ for c in type(est).__mro__]


def repair_estimator(est, migration) -> None:
    names = _classes(est)
    renames, values = _by_class("attributes"), _by_class("parameters")
    state = vars(est)
    kind = type(est).__name__
    for cls in names:
        for row in renames.get(cls, ()):
            old, new = row["old"], row["new"]
            if old in state and new not in state:
                state[new] = state.pop(old)
                migration.add("attribute", f"{kind}.{old} renamed {new}", row["since"])
        for row in values.get(cls, ()):
            if state.get(row["param"]) == row["old"]:
                state[row["param"]] = row["new"]
                migration.add("parameter", f"{kind}.{row['param']}={row['old']!r} is spelled {row['new']!r}",
                              row["since"])
    for cls in names:
        for fill in FILLS.get(cls, ()):
            fill(est, state, migration)
    _fill_parameters(est, state, migration)


def _is_fitted(state: dict) -> bool:
    """scikit-learn's own test (check_is_fitted): fit sets attributes ending in an underscore."""
    return any(k.endswith("_") and not k.startswith("__") for k in state)


def _fill_parameters(est, state: dict, migration) -> None:
    """Parameters added since the file was written: the value that reproduces what the old release did (the
    ``added`` table where that differs from today's default, else today's default)."""
    try:
        params = inspect.signature(type(est).__init__).parameters
    except (TypeError, ValueError):
        return
    then = {}
    for cls in reversed(_classes(est)):
        for row in _by_class("added").get(cls, ()):
            then[row["param"]] = row
    added = []
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in state:
            continue
        row = then.get(name)
        if row is not None:
            state[name] = row["value"]
            migration.add("parameter", f"{type(est).__name__}.{name}={row['value']!r} (added in {row['since']}; "
                                       "the value that reproduces the old behaviour)")
        elif p.default is not p.empty:
            state[name] = p.default
            added.append(f"{name}={p.default!r}")
    if added:
        migration.add("default", f"{type(est).__name__}: parameters added since, set to their defaults: "
                                 + ", ".join(added))


# ------------------------------------------------------------------------------------------- fills


def _set(est, state, migration, attr, value, how, since=""):
    state[attr] = value
    migration.add("fill", f"{type(est).__name__}.{attr} {how}", since)


def _gradient_boosting(est, state, migration):
    """1.4 replaced the private ``_gb_losses`` objects with ``sklearn._loss``; the loss an old file holds (a
    Missing record, or an object of a removed class) is rebuilt from the estimator's ``loss`` parameter, and
    ``n_trees_per_iteration_`` read from the stages' shape."""
    estimators = state.get("estimators_")
    if "n_trees_per_iteration_" not in state and isinstance(estimators, np.ndarray) and estimators.ndim == 2:
        _set(est, state, migration, "n_trees_per_iteration_", int(estimators.shape[1]), "read from estimators_' shape",
             "1.4")
    if "n_classes_" not in state and hasattr(est, "classes_") and "classes_" in state:
        _set(est, state, migration, "n_classes_", len(state["classes_"]), "read from classes_")
    _rebuild_loss(est, state, migration, ("_loss", "loss_"))


def _hist_gradient_boosting(est, state, migration):
    """The loss as for gradient boosting; and ``_preprocessor`` (1.4: categorical columns go through an
    OrdinalEncoder it fits), which is None for a model without categorical features, the only kind whose old
    binning it reproduces."""
    _rebuild_loss(est, state, migration, ("_loss",))
    categorical = state.get("is_categorical_", None)
    if "_preprocessor" not in state and "_predictors" in state and (categorical is None or not np.any(categorical)):
        _set(est, state, migration, "_preprocessor", None, "set to None (no categorical features: no preprocessing)",
             "1.4")


def _rebuild_loss(est, state, migration, attrs) -> None:
    from sklearn._loss.loss import BaseLoss

    current = state.get("_loss")
    if isinstance(current, BaseLoss) and _loss_works(current):
        return
    old = next((state[a] for a in attrs if a in state), None)
    if old is None:
        return
    try:
        loss = est._get_loss(sample_weight=None)
    except Exception:  # noqa: BLE001 -- the old loss stays; find_missing then names it
        return
    for attr in attrs:
        state.pop(attr, None)
    state["_loss"] = loss
    from .changes import Missing

    if isinstance(old, Missing):
        was = f"{old.qualname()}, which no longer exists,"
    elif isinstance(getattr(old, "closs", None), Missing):
        was = f"{type(old).__name__} (its Cython half, {old.closs.qualname()}, no longer exists)"
    else:
        was = f"{type(old).__module__}.{type(old).__qualname__}"
    migration.add("rebuild", f"{type(est).__name__}: loss {was} rebuilt as {type(loss).__name__} from "
                             f"loss={getattr(est, 'loss', None)!r}", "1.4")


def _loss_works(loss) -> bool:
    """A loss object whose Cython half (``closs``) unpickled: not a Missing record."""
    from .changes import Missing

    closs = getattr(loss, "closs", None)
    return closs is not None and not isinstance(closs, Missing)


def _libsvm(est, state, migration):
    """1.9 decides at fit time whether libsvm computes probabilities (``_effective_probability``, from the
    deprecated ``probability`` parameter) and passes it to every libsvm predict call."""
    if "_effective_probability" not in state:
        probability = state.get("probability", False)
        _set(est, state, migration, "_effective_probability", probability if isinstance(probability, bool) else False,
             "read from probability", "1.9")


def _kmeans(est, state, migration):
    if "_n_threads" not in state and _is_fitted(state):
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        _set(est, state, migration, "_n_threads", _openmp_effective_n_threads(), "set to this machine's threads "
             "(how many threads predict uses; not a result)", "0.23")


def _neighbors(est, state, migration):
    fit_x = state.get("_fit_X")
    if "n_samples_fit_" not in state and isinstance(fit_x, np.ndarray):
        _set(est, state, migration, "n_samples_fit_", int(fit_x.shape[0]), "read from _fit_X", "0.24")


def _tfidf_transformer(est, state, migration):
    """Before 1.0 the idf weights were a sparse diagonal matrix ``_idf_diag``; today ``idf_`` is the array,
    and a transformer without it silently skips the weighting."""
    diag = state.get("_idf_diag")
    if "idf_" not in state and diag is not None:
        state.pop("_idf_diag")
        _set(est, state, migration, "idf_", np.asarray(diag.diagonal(), dtype=np.float64),
             "read from the diagonal of _idf_diag", "1.0")


def _tfidf_vectorizer(est, state, migration):
    """Before 1.0 TfidfVectorizer kept norm/use_idf/smooth_idf/sublinear_tf only on its inner TfidfTransformer
    (the vectorizer's were properties over it): read them from there, not from today's defaults."""
    inner = state.get("_tfidf")
    if inner is None:
        return
    moved = [p for p in ("norm", "use_idf", "smooth_idf", "sublinear_tf") if p not in state and hasattr(inner, p)]
    for p in moved:
        state[p] = getattr(inner, p)
    if moved:
        migration.add("fill", f"TfidfVectorizer {', '.join(moved)} read from its inner TfidfTransformer", "1.0")
    vocabulary = state.get("vocabulary_")
    fitted = [k for k in vars(inner) if k.endswith("_") and not k.startswith("__")]
    if not fitted and vocabulary is not None and not getattr(inner, "use_idf", True):
        inner.n_features_in_ = len(vocabulary)  # without idf weights it holds nothing else a fit would set
        migration.add("fill", "TfidfTransformer (use_idf=False) marked fitted: n_features_in_ read from the "
                              "vectorizer's vocabulary_", "1.0")


def _python2_labels(est, state, migration):
    """Labels a Python 2 release pickled as ``str`` are byte strings to Python 3 (numpy ``S`` arrays): read as
    the text they were (latin-1, byte for byte), so predictions are strings again."""
    if not migration.python2:
        return
    for attr in ("classes_",):
        value = state.get(attr)
        if isinstance(value, np.ndarray) and value.dtype.kind == "S":
            state[attr] = value.astype("U")
            migration.add("encoding", f"{type(est).__name__}.{attr}: Python 2 byte-string labels read as text")


def _onehot(est, state, migration):
    """The OneHotEncoder of 0.19 and before (``n_values``, ``feature_indices_``, ``active_features_``; integer
    columns, one output column per value seen in training, unknown values an error) as today's encoder with the
    same categories in the same order: categories_ from the active features of each input column."""
    if "categories_" in state or "feature_indices_" not in state:
        return
    if state.get("categorical_features", "all") not in ("all", None):
        return  # a subset of columns passed through: no current equivalent; find_missing does not apply, the check says
    indices = np.asarray(state.pop("feature_indices_"), dtype=np.int64)
    active = state.pop("active_features_", None)
    cats = []
    for j in range(len(indices) - 1):
        lo, hi = indices[j], indices[j + 1]
        values = np.arange(lo, hi) if active is None else np.asarray(active)[(active >= lo) & (active < hi)]
        cats.append(np.asarray(values - lo, dtype=np.int64))
    for old in ("n_values", "n_values_", "categorical_features"):
        state.pop(old, None)
    state["categories"] = "auto"
    from sklearn.preprocessing import OneHotEncoder

    fresh = OneHotEncoder(categories=cats, handle_unknown=state.get("handle_unknown", "error"),
                          dtype=state.get("dtype", np.float64), sparse_output=bool(state.get("sparse", True)))
    width = max(len(c) for c in cats)
    design = np.array([[c[min(i, len(c) - 1)] for c in cats] for i in range(width)], dtype=np.int64)
    fresh.fit(design)
    kept = {k: v for k, v in vars(fresh).items()}
    state.clear()
    state.update(kept)
    state["categories"] = "auto"
    migration.add("rebuild", f"legacy OneHotEncoder (n_values/feature_indices_/active_features_) rebuilt with "
                             f"categories_ for {len(cats)} integer columns, {sum(map(len, cats))} output columns "
                             "in the old order", "0.20")


def _logistic_pre_015(est, state, migration):
    """Before 0.15 liblinear models kept ``raw_coef_`` (coefficients with the intercept column appended, times
    intercept_scaling) and a LabelEncoder ``_enc``; coef_, intercept_ and classes_ are read from them."""
    raw = state.pop("raw_coef_", None)
    if raw is None:
        return
    raw = np.asarray(raw, dtype=np.float64)
    if state.get("fit_intercept", True):
        coef, intercept = raw[:, :-1], raw[:, -1] * float(state.get("intercept_scaling", 1.0))
    else:
        coef, intercept = raw, np.zeros(raw.shape[0])
    if "coef_" not in state:
        _set(est, state, migration, "coef_", coef, "read from raw_coef_", "0.15")
    if "intercept_" not in state:
        _set(est, state, migration, "intercept_", intercept, "read from raw_coef_'s last column", "0.15")
    enc = state.pop("_enc", None)
    if "classes_" not in state and enc is not None and hasattr(enc, "classes_"):
        _set(est, state, migration, "classes_", np.asarray(enc.classes_), "read from the old label encoder", "0.15")


def _trees(est, state, migration):
    if "n_outputs_" not in state and "tree_" in state and hasattr(state["tree_"], "n_outputs"):
        _set(est, state, migration, "n_outputs_", int(state["tree_"].n_outputs), "read from tree_")


FILLS = {
    "BaseEstimator": (_python2_labels,),
    "TfidfVectorizer": (_tfidf_vectorizer,),
    "BaseGradientBoosting": (_gradient_boosting,),
    "BaseHistGradientBoosting": (_hist_gradient_boosting,),
    "BaseLibSVM": (_libsvm,),
    "KMeans": (_kmeans,),
    "NeighborsBase": (_neighbors,),
    "TfidfTransformer": (_tfidf_transformer,),
    "OneHotEncoder": (_onehot,),
    "LogisticRegression": (_logistic_pre_015,),
    "BaseDecisionTree": (_trees,),
}
