"""Tree ensembles written as ONNX ``TreeEnsemble`` (ai.onnx.ml opset 5) with the fitted model's exact
double-precision thresholds and leaf values.

Why: skl2onnx stores split thresholds as float32, so an input that sits on a threshold can take the
other branch than in scikit-learn (which compares ``float32(x) <= threshold`` in double). onnxruntime
runs opset-5 ``TreeEnsemble`` with double splits on double inputs; feeding it ``double(float32(x))``
reproduces scikit-learn's comparison bit for bit. These functions plug into skl2onnx as custom
converters (skl2onnx's own shape calculators are kept), so they also work inside pipelines.

Semantics mirrored from scikit-learn (checked against its sources, 1.2-1.9):
- ``DecisionTree*``/``RandomForest*``/``ExtraTrees*``/``GradientBoosting*`` cast X to float32 and go
  left when ``x <= threshold``; NaN follows ``tree_.missing_go_to_left``.
- ``HistGradientBoosting*`` compares in float64 (no cast); NaN follows ``missing_go_to_left``;
  categorical splits test membership of the code its internal OrdinalEncoder gives a category (unknown and
  missing categories become NaN, and follow ``missing_go_to_left``). The graph computes the same code from
  the input (an exact string lookup, or an exact float64 comparison) and tests membership of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

ML_DOMAIN = "ai.onnx.ml"
# skl2onnx refuses to declare ai.onnx.ml opset 5; nodes are declared as 3 and the graph's import is
# raised to 5 afterwards (``needs_ml_opset5``), which is valid because no deprecated op remains.
DECLARED_ML_VERSION = 3

LEQ, MEMBER = 0, 6


class NotExact(Exception):
    """This model (or part) cannot be written exactly; the caller falls back to skl2onnx's converter."""


@dataclass
class Forest:
    """Accumulates trees into the flat ``nodes_*`` / ``leaf_*`` arrays of one TreeEnsemble node."""

    n_targets: int
    roots: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    split: list[float] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    true_id: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_id: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    leaf_target: list[int] = field(default_factory=list)
    leaf_weight: list[float] = field(default_factory=list)

    def add_tree(self, left, right, feature, threshold, missing_left, leaf_value, target,
                 member_sets=None, member_true_is_left=None):
        """Add one binary tree for one target.

        ``left``/``right``: child indices (-1 or equal for leaves, decided by ``is_leaf = left < 0``);
        ``leaf_value[n]``: the value a leaf contributes; ``member_sets[n]``: for categorical nodes, the
        set tested (goes to the left child when ``member_true_is_left[n]`` else to the right)."""
        is_leaf = left < 0
        internal = np.flatnonzero(~is_leaf)
        leaves = np.flatnonzero(is_leaf)
        node_base, leaf_base = len(self.feature), len(self.leaf_weight)
        node_pos = {int(n): node_base + i for i, n in enumerate(internal)}
        leaf_pos = {int(n): leaf_base + i for i, n in enumerate(leaves)}
        self.leaf_target.extend([target] * len(leaves))
        self.leaf_weight.extend(float(leaf_value[n]) for n in leaves)
        if len(internal) == 0:  # a stump that is a single leaf: one node pointing to it both ways
            self.roots.append(node_base)
            self._node(0, 0.0, LEQ, leaf_pos[int(leaves[0])], 1, leaf_pos[int(leaves[0])], 1, 0)
            return
        self.roots.append(node_pos[0])  # scikit-learn trees are rooted at node 0
        for n in internal:
            n = int(n)
            lo, hi = int(left[n]), int(right[n])
            lo_leaf, hi_leaf = bool(is_leaf[lo]), bool(is_leaf[hi])
            lo_id = leaf_pos[lo] if lo_leaf else node_pos[lo]
            hi_id = leaf_pos[hi] if hi_leaf else node_pos[hi]
            miss_left = int(bool(missing_left[n]))
            if member_sets is not None and member_sets.get(n) is not None:
                values = sorted(member_sets[n])
                if not values:
                    values = [-1.0]  # an empty set still needs one member; -1 is never a category code
                self.members.extend(float(v) for v in values)
                self.members.append(float("nan"))
                if member_true_is_left[n]:
                    self._node(int(feature[n]), 0.0, MEMBER, lo_id, lo_leaf, hi_id, hi_leaf, miss_left)
                else:
                    self._node(int(feature[n]), 0.0, MEMBER, hi_id, hi_leaf, lo_id, lo_leaf, 1 - miss_left)
            else:
                self._node(int(feature[n]), float(threshold[n]), LEQ, lo_id, lo_leaf, hi_id, hi_leaf, miss_left)

    def _node(self, feature, split, mode, t_id, t_leaf, f_id, f_leaf, missing_true):
        self.feature.append(feature)
        self.split.append(split)
        self.mode.append(mode)
        self.true_id.append(t_id)
        self.true_leaf.append(int(t_leaf))
        self.false_id.append(f_id)
        self.false_leaf.append(int(f_leaf))
        self.missing_true.append(missing_true)

    def attributes(self) -> dict:
        from onnx import numpy_helper

        attrs = dict(
            n_targets=self.n_targets,
            aggregate_function=1,  # SUM; averaging is done explicitly afterwards, as scikit-learn does
            post_transform=0,
            tree_roots=self.roots,
            nodes_featureids=self.feature,
            nodes_splits=numpy_helper.from_array(np.asarray(self.split, dtype=np.float64)),
            nodes_modes=numpy_helper.from_array(np.asarray(self.mode, dtype=np.uint8)),
            nodes_truenodeids=self.true_id,
            nodes_trueleafs=self.true_leaf,
            nodes_falsenodeids=self.false_id,
            nodes_falseleafs=self.false_leaf,
            nodes_missing_value_tracks_true=self.missing_true,
            leaf_targetids=self.leaf_target,
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weight, dtype=np.float64)),
        )
        if self.members:
            attrs["membership_values"] = numpy_helper.from_array(np.asarray(self.members, dtype=np.float64))
        return attrs


# ---------------------------------------------------------------------------------------------
# trees of scikit-learn models -> Forest


def _add_sklearn_tree(forest: Forest, tree, values: np.ndarray, target: int):
    """``values[n]``: what leaf n contributes to ``target``."""
    missing = getattr(tree, "missing_go_to_left", None)
    if missing is None:
        missing = np.zeros(tree.node_count, dtype=np.uint8)
    forest.add_tree(tree.children_left, tree.children_right, tree.feature, tree.threshold, missing, values, target)


def _classifier_leaf_proba(tree, n_classes: int) -> np.ndarray:
    """Per-node class probabilities exactly as ``DecisionTreeClassifier.predict_proba`` computes them."""
    proba = np.array(tree.value[:, 0, :n_classes], dtype=np.float64)
    normalizer = proba.sum(axis=1)[:, np.newaxis]
    normalizer[normalizer == 0.0] = 1.0
    return proba / normalizer


def _single_output(est):
    if getattr(est, "n_outputs_", 1) != 1:
        raise NotExact(f"{type(est).__name__} with several outputs")


def forest_for(est) -> tuple[Forest, dict]:
    """The Forest of a fitted tree model, plus how to finish the scores:
    ``{"kind": "regressor"|"classifier", "divide": n or None, "init": array or None, "link": ...,
    "cast_float32": bool}``."""
    name = type(est).__name__
    builder = _BUILDERS.get(name)
    if builder is None:
        raise NotExact(f"no exact converter for {name}")
    if not is_fitted_tree_model(est):
        raise NotExact(f"{name} is not fitted")
    return builder(est)


def is_fitted_tree_model(est) -> bool:
    return any(getattr(est, a, None) is not None for a in ("tree_", "estimators_", "_predictors"))


def _build_decision_tree(est):
    _single_output(est)
    return _build_bagged([est], est, divide=None)


def _build_forest(est):
    _single_output(est)
    if getattr(est, "estimators_features_", None) is not None:
        raise NotExact("bagging over feature subsets")
    return _build_bagged(est.estimators_, est, divide=len(est.estimators_))


def _build_bagged(trees, est, divide):
    if hasattr(est, "classes_"):
        n_classes = int(np.atleast_1d(est.n_classes_)[0])
        forest = Forest(n_targets=n_classes)
        for t in trees:
            proba = _classifier_leaf_proba(t.tree_, n_classes)
            for k in range(n_classes):
                if np.any(proba[:, k] != 0.0):
                    _add_sklearn_tree(forest, t.tree_, proba[:, k], k)
        return forest, dict(kind="classifier", divide=divide, init=None, link="proba", cast_float32=True)
    forest = Forest(n_targets=1)
    for t in trees:
        _add_sklearn_tree(forest, t.tree_, np.array(t.tree_.value[:, 0, 0], dtype=np.float64), 0)
    return forest, dict(kind="regressor", divide=divide, init=None, link="identity", cast_float32=True)


def _gb_init(est) -> np.ndarray:
    init = getattr(est, "init_", None)
    if init == "zero":
        return np.zeros(est.estimators_.shape[1])
    raw_init = getattr(est, "_raw_predict_init", None)
    if raw_init is None or init is None or type(init).__name__ not in ("DummyRegressor", "DummyClassifier"):
        raise NotExact("gradient boosting with a custom init estimator")
    probe = np.zeros((1, est.n_features_in_), dtype=np.float32)
    return np.asarray(raw_init(probe), dtype=np.float64).reshape(-1)


def _loss_link(est) -> str:
    loss = type(getattr(est, "_loss", None)).__name__
    links = {"HalfSquaredError": "identity", "AbsoluteError": "identity", "HuberLoss": "identity",
             "PinballLoss": "identity", "HalfBinomialLoss": "sigmoid", "ExponentialLoss": "sigmoid2",
             "HalfMultinomialLoss": "softmax", "HalfPoissonLoss": "exp", "HalfGammaLoss": "exp"}
    if loss not in links:
        raise NotExact(f"loss {loss or 'unknown'}")
    return links[loss]


def _build_gradient_boosting(est):
    stages = est.estimators_  # shape (n_stages, K)
    n_targets = stages.shape[1]
    forest = Forest(n_targets=n_targets)
    lr = float(est.learning_rate)
    for stage in stages:
        for k, t in enumerate(stage):
            # scikit-learn adds ``learning_rate * value`` tree by tree (predict_stages)
            _add_sklearn_tree(forest, t.tree_, lr * np.array(t.tree_.value[:, 0, 0], dtype=np.float64), k)
    kind = "classifier" if hasattr(est, "classes_") else "regressor"
    return forest, dict(kind=kind, divide=None, init=_gb_init(est), link=_loss_link(est), cast_float32=True)


@dataclass(frozen=True)
class HgbColumns:
    """How a HistGradientBoosting model reads its input columns. scikit-learn >= 1.4 puts categorical
    features through an internal ColumnTransformer (``_preprocessor``): an OrdinalEncoder first (a known
    category becomes its position in ``categories_``; an unknown or missing one becomes NaN, which the
    trees send where missing values go), then the numeric columns unchanged."""

    order: tuple[int, ...]  # internal feature i reads input column order[i]
    categories: dict[int, np.ndarray]  # input column -> its known categories (code = position), NaN left out

    def is_string(self, column: int) -> bool:
        return self.categories[column].dtype == object


def hgb_columns(est) -> HgbColumns | None:
    """The column plan of a HistGradientBoosting model; None when it has no preprocessor (no categorical
    feature: internal feature i is input column i)."""
    pre = getattr(est, "_preprocessor", None)
    if pre is None:
        mask = getattr(est, "is_categorical_", None)
        if mask is not None and np.any(mask):
            raise NotExact("categorical features without scikit-learn's categorical preprocessor (before 1.4)")
        return None
    order: list[int] = []
    categories: dict[int, np.ndarray] = {}
    n_in = int(est.n_features_in_)
    for _, trans, cols in pre.transformers_:
        if trans == "drop":
            continue
        cols = np.asarray(cols)
        idx = np.flatnonzero(cols) if cols.dtype == bool else cols.astype(int)
        kind = type(trans).__name__
        if kind == "OrdinalEncoder":
            if getattr(trans, "handle_unknown", None) != "use_encoded_value" or not _is_nan(trans.unknown_value) \
                    or not _is_nan(getattr(trans, "encoded_missing_value", np.nan)):
                raise NotExact("categorical preprocessor with unusual unknown or missing handling")
            for j, col in enumerate(idx):
                categories[int(col)] = _known_categories(trans.categories_[j])
                order.append(int(col))
        elif kind == "FunctionTransformer" or trans == "passthrough":
            order.extend(int(c) for c in idx)
        else:
            raise NotExact(f"categorical preprocessor step {kind}")
    if sorted(order) != list(range(n_in)):
        raise NotExact("categorical preprocessor that drops or repeats columns")
    return HgbColumns(tuple(order), categories)


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _known_categories(values) -> np.ndarray:
    """The categories an OrdinalEncoder knows, as the encoder matches them: strings stay strings (object
    array), numbers become float64 (it compares values, so 3 and 3.0 are one category); a trailing NaN (the
    missing-value category) is left out, since missing and unknown values both become NaN."""
    values = np.asarray(values)
    if values.dtype.kind in "OUS":
        kept = [v for v in values.tolist() if not (isinstance(v, float) and np.isnan(v)) and v is not None]
        if not all(isinstance(v, str) for v in kept):
            raise NotExact("a categorical column mixing strings and other values")
        return np.asarray(kept, dtype=object)
    if values.dtype.kind not in "biuf":
        raise NotExact(f"categories of dtype {values.dtype}")
    values = values.astype(np.float64)
    return values[~np.isnan(values)]


def _build_hist_gradient_boosting(est):
    predictors = est._predictors
    n_targets = len(predictors[0]) if predictors else 1
    forest = Forest(n_targets=n_targets)
    columns = hgb_columns(est)
    known = None
    if columns is not None and columns.categories:
        known = est._bin_mapper.make_known_categories_bitsets()

    for iteration in predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            left = np.where(nodes["is_leaf"] == 1, -1, nodes["left"].astype(np.int64))
            right = np.where(nodes["is_leaf"] == 1, -1, nodes["right"].astype(np.int64))
            member_sets, true_is_left = None, None
            if np.any(nodes["is_categorical"]):
                if known is None:
                    raise NotExact("categorical split without known categories")
                # the split tests the category's code (what the OrdinalEncoder made of it); the graph
                # feeds the same codes (see ``_tree_input``)
                bitsets = predictor.raw_left_cat_bitsets
                member_sets, true_is_left = {}, {}
                for n in np.flatnonzero((nodes["is_categorical"] == 1) & (nodes["is_leaf"] == 0)):
                    feat = int(nodes["feature_idx"][n])
                    left_set = _bits(bitsets[int(nodes["bitset_idx"][n])])
                    known_set = _bits(known[0][int(known[1][feat])])
                    if nodes["missing_go_to_left"][n]:
                        # missing and unknown (NaN) go left: test the right set
                        member_sets[int(n)] = known_set - left_set
                        true_is_left[int(n)] = False
                    else:
                        member_sets[int(n)] = left_set & known_set
                        true_is_left[int(n)] = True
            feature = nodes["feature_idx"] if columns is None else np.asarray(columns.order)[nodes["feature_idx"]]
            forest.add_tree(left, right, feature, nodes["num_threshold"], nodes["missing_go_to_left"],
                            np.asarray(nodes["value"], dtype=np.float64), k, member_sets, true_is_left)
    kind = "classifier" if hasattr(est, "classes_") else "regressor"
    init = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    return forest, dict(kind=kind, divide=None, init=init, link=_loss_link(est), cast_float32=False,
                        columns=columns)


def _bits(words) -> set[int]:
    """Members of a scikit-learn bitset (8 uint32 words covering codes 0..255)."""
    out = set()
    for w, word in enumerate(np.asarray(words, dtype=np.uint32)):
        word = int(word)
        for b in range(32):
            if word >> b & 1:
                out.add(w * 32 + b)
    return out


_BUILDERS = {
    "DecisionTreeClassifier": _build_decision_tree,
    "DecisionTreeRegressor": _build_decision_tree,
    "ExtraTreeClassifier": _build_decision_tree,
    "ExtraTreeRegressor": _build_decision_tree,
    "RandomForestClassifier": _build_forest,
    "RandomForestRegressor": _build_forest,
    "ExtraTreesClassifier": _build_forest,
    "ExtraTreesRegressor": _build_forest,
    "GradientBoostingClassifier": _build_gradient_boosting,
    "GradientBoostingRegressor": _build_gradient_boosting,
    "HistGradientBoostingClassifier": _build_hist_gradient_boosting,
    "HistGradientBoostingRegressor": _build_hist_gradient_boosting,
}

EXACT_TREE_MODELS = tuple(_BUILDERS)


# ---------------------------------------------------------------------------------------------
# skl2onnx converter


def convert_exact_tree(scope, operator, container):
    """skl2onnx converter: the operator's raw model -> TreeEnsemble(double) + finishing ops."""
    from onnx import TensorProto

    est = operator.raw_operator
    forest, finish = forest_for(est)
    node = lambda op, ins, outs, **kw: container.add_node(  # noqa: E731
        op, ins, outs, name=scope.get_unique_operator_name(op), **kw)
    var = scope.get_unique_variable_name
    x64, forest = _tree_input(node, var, container, operator, forest, finish)
    scores = var("tree_sum")
    container.add_node("TreeEnsemble", [x64], [scores], op_domain=ML_DOMAIN, op_version=DECLARED_ML_VERSION,
                       name=scope.get_unique_operator_name("TreeEnsemble"), **forest.attributes())
    if finish["divide"]:
        n = var("n_trees")
        container.add_initializer(n, TensorProto.DOUBLE, [], [float(finish["divide"])])
        out = var("tree_mean")
        node("Div", [scores, n], [out])
        scores = out
    if finish["init"] is not None:
        init = var("init")
        container.add_initializer(init, TensorProto.DOUBLE, [1, len(finish["init"])], finish["init"].tolist())
        out = var("raw")
        node("Add", [init, scores], [out])
        scores = out
    out_type = _onnx_elem_type(operator.outputs[-1 if finish["kind"] == "classifier" else 0])
    if finish["kind"] == "regressor":
        scores = _apply_link(node, var, container, scores, finish["link"], binary=False)
        _cast_to(node, scores, operator.outputs[0].full_name, out_type)
        return
    proba = _apply_link(node, var, container, scores, finish["link"], binary=len(est.classes_) == 2)
    _finish_classifier(node, var, container, est, operator, proba, out_type)


def _tree_input(node, var, container, operator, forest: Forest, finish: dict) -> tuple[str, Forest]:
    """The double ``[N, F]`` matrix the TreeEnsemble reads, as scikit-learn's trees see the input: a float32
    cast first where scikit-learn casts, and each categorical column replaced by its category code (or NaN
    for an unknown or missing category). Returns it and the forest with its feature ids pointing into it."""
    from onnx import TensorProto

    columns: HgbColumns | None = finish.get("columns")
    categorical = columns.categories if columns is not None else {}
    inputs = operator.inputs
    widths = [i.type.shape[1] if len(i.type.shape) == 2 else None for i in inputs]
    n_features = int(operator.raw_operator.n_features_in_)
    if len(inputs) == 1 and not any(isinstance(v.type, _string_type()) for v in inputs):
        x = inputs[0].full_name
        if finish["cast_float32"]:  # scikit-learn trees look at float32(x)
            x32 = var("x_f32")
            node("Cast", [x], [x32], to=TensorProto.FLOAT)
            x = x32
        x64 = var("x_f64")
        node("Cast", [x], [x64], to=TensorProto.DOUBLE)
        if not categorical:
            return x64, forest
        if any(columns.is_string(c) for c in categorical):
            raise NotExact("its categorical columns hold strings but it reads one numeric input here "
                           "(it needs one input per column)")
        # numeric input with categorical columns: their codes are appended after the n input columns
        pieces, where = [x64], {}
        for rank, column in enumerate(sorted(categorical)):
            col = var("column")
            index = var("column_index")
            container.add_initializer(index, TensorProto.INT64, [1], [column])
            node("Gather", [x64, index], [col], axis=1)
            pieces.append(_encode_column(node, var, container, col, categorical[column], numeric=True))
            where[column] = n_features + rank
    elif len(inputs) == n_features and all(w in (1, None) for w in widths):
        # one input per column (a DataFrame): numbers as double, categories as codes
        pieces, where = [], {}
        for column, variable in enumerate(inputs):
            is_text = isinstance(variable.type, _string_type())
            if column in categorical:
                if is_text != (categorical[column].dtype == object):
                    raise NotExact(f"input {variable.onnx_name} does not hold the kind of value its categories are")
                src = variable.full_name
                if not is_text:
                    src = var("column_f64")
                    node("Cast", [variable.full_name], [src], to=TensorProto.DOUBLE)
                pieces.append(_encode_column(node, var, container, src, categorical[column], numeric=not is_text))
            elif is_text:
                raise NotExact(f"text input {variable.onnx_name} for a numeric feature")
            else:
                col = var("column_f64")
                if finish["cast_float32"]:
                    c32 = var("column_f32")
                    node("Cast", [variable.full_name], [c32], to=TensorProto.FLOAT)
                    node("Cast", [c32], [col], to=TensorProto.DOUBLE)
                else:
                    node("Cast", [variable.full_name], [col], to=TensorProto.DOUBLE)
                pieces.append(col)
    else:
        raise NotExact(f"{len(inputs)} inputs for a model of {n_features} features")
    x64 = var("x_f64")
    node("Concat", pieces, [x64], axis=1)
    if where:
        forest = replace(forest, feature=[where.get(f, f) for f in forest.feature])
    return x64, forest


def _string_type():
    from skl2onnx.common.data_types import StringTensorType

    return StringTensorType


def _encode_column(node, var, container, column: str, categories: np.ndarray, numeric: bool) -> str:
    """``[N, 1]`` values -> ``[N, 1]`` double codes as scikit-learn's OrdinalEncoder gives them: the position
    of the value among ``categories``, NaN when it is not one of them (unknown, missing)."""
    from onnx import TensorProto

    k = len(categories)
    code = var("code")
    if numeric:  # exact double comparison against every category: the row's code is the matching position
        cats, positions, ones = var("categories"), var("positions"), var("ones")
        container.add_initializer(cats, TensorProto.DOUBLE, [1, max(k, 1)], categories.tolist() or [np.nan])
        container.add_initializer(positions, TensorProto.DOUBLE, [max(k, 1), 1], list(range(max(k, 1))))
        container.add_initializer(ones, TensorProto.DOUBLE, [max(k, 1), 1], [1.0] * max(k, 1))
        equal, hits, raw, found = var("is_category"), var("is_category_f64"), var("raw_code"), var("matches")
        node("Equal", [column, cats], [equal])
        node("Cast", [equal], [hits], to=TensorProto.DOUBLE)
        node("MatMul", [hits, positions], [raw])
        node("MatMul", [hits, ones], [found])
        zero = var("zero")
        container.add_initializer(zero, TensorProto.DOUBLE, [], [0.0])
        unknown = var("unknown")
        node("Equal", [found, zero], [unknown])
    else:  # strings: an exact lookup; -1 for anything else
        as_int, raw = var("code_i64"), var("raw_code")
        container.add_node("LabelEncoder", [column], [as_int], op_domain=ML_DOMAIN, op_version=2,
                           name=var("LabelEncoder"), keys_strings=[str(c) for c in categories],
                           values_int64s=list(range(k)), default_int64=-1)
        node("Cast", [as_int], [raw], to=TensorProto.DOUBLE)
        zero = var("zero")
        container.add_initializer(zero, TensorProto.DOUBLE, [], [0.0])
        unknown = var("unknown")
        node("Less", [raw, zero], [unknown])
    nan = var("nan")
    container.add_initializer(nan, TensorProto.DOUBLE, [], [float("nan")])
    node("Where", [unknown, nan, raw], [code])
    return code


def shape_exact_tree(operator):
    """skl2onnx shape calculator for a tree model reading one input per column (strings included):
    ``label [N]`` + ``probabilities [N, C]`` or ``prediction [N, 1]``, in double only when every numeric
    input is double (the ``double`` remedy)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    est = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    numeric = [v for v in operator.inputs if not isinstance(v.type, _string_type())]
    tensor = DoubleTensorType if numeric and all(isinstance(v.type, DoubleTensorType) for v in numeric) \
        else FloatTensorType
    if hasattr(est, "classes_"):
        operator.outputs[0].type.shape = [n]
        operator.outputs[1].type = tensor([n, len(est.classes_)])
    else:
        operator.outputs[0].type = tensor([n, 1])


def _apply_link(node, var, container, raw, link, binary):
    from onnx import TensorProto

    if link in ("identity", "proba"):
        return raw
    if link == "exp":
        out = var("exp")
        node("Exp", [raw], [out])
        return out
    if link == "softmax":
        out = var("softmax")
        node("Softmax", [raw], [out], axis=1)
        return out
    if link in ("sigmoid", "sigmoid2"):
        if link == "sigmoid2":  # ExponentialLoss: expit(2 * raw)
            two = var("two")
            container.add_initializer(two, TensorProto.DOUBLE, [], [2.0])
            doubled = var("raw2")
            node("Mul", [raw, two], [doubled])
            raw = doubled
        p1 = var("p1")
        node("Sigmoid", [raw], [p1])
        if not binary:
            return p1
        one = var("one")
        container.add_initializer(one, TensorProto.DOUBLE, [], [1.0])
        p0 = var("p0")
        node("Sub", [one, p1], [p0])
        out = var("proba")
        node("Concat", [p0, p1], [out], axis=1)
        return out
    raise NotExact(f"link {link}")


def _finish_classifier(node, var, container, est, operator, proba, proba_type):
    from onnx import TensorProto

    idx = var("argmax")
    node("ArgMax", [proba], [idx], axis=1, keepdims=0)
    classes = np.asarray(est.classes_)
    label_var = operator.outputs[0]
    cls = var("classes")
    if classes.dtype.kind in "OUS":
        container.add_initializer(cls, TensorProto.STRING, [len(classes)], [str(c).encode("utf-8") for c in classes])
    elif classes.dtype.kind in "iub" or (classes.dtype.kind == "f" and np.all(classes == np.round(classes))):
        # integral float labels (y given as 1.0, 2.0, ...) leave as int64, as skl2onnx writes them
        container.add_initializer(cls, TensorProto.INT64, [len(classes)], classes.astype(np.int64).tolist())
    else:
        raise NotExact(f"class labels of dtype {classes.dtype}")
    node("Gather", [cls, idx], [label_var.full_name], axis=0)
    _cast_to(node, proba, operator.outputs[1].full_name, proba_type)


def _onnx_elem_type(variable):
    from onnx import TensorProto

    name = type(variable.type).__name__
    return TensorProto.DOUBLE if name.startswith("Double") else TensorProto.FLOAT


def _cast_to(node, src, dst, elem_type):
    node("Cast", [src], [dst], to=elem_type)


def contains_exact_trees(model) -> bool:
    """Whether any estimator inside ``model`` has an exact tree converter."""
    return any(type(est).__name__ in _BUILDERS and is_fitted_tree_model(est) for est in iter_estimators(model))


def iter_estimators(model):
    """Every fitted estimator nested in pipelines, column transformers, unions and meta-estimators.

    Unfitted templates (an ensemble's ``estimator`` parameter, a voting model's ``estimators``) are
    skipped: only what prediction actually runs is visited."""
    seen = set()
    stack = [model]
    while stack:
        est = stack.pop()
        if id(est) in seen or est is None or isinstance(est, str):
            continue
        seen.add(id(est))
        yield est
        for attr in _FITTED_LISTS:
            items = getattr(est, attr, None)
            if isinstance(items, np.ndarray):
                items = items.ravel().tolist()
            if not isinstance(items, (list, tuple)):
                continue
            for item in items:
                stack.append(item[1] if isinstance(item, tuple) and len(item) > 1 else item)
        for attr in _FITTED_SINGLES:
            if attr == "estimator_" and hasattr(est, "estimators_"):
                continue  # an ensemble's estimator_ is the unfitted template of its members
            inner = getattr(est, attr, None)
            if inner is not None and not isinstance(inner, (str, np.ndarray)):
                stack.append(inner)
        if not hasattr(est, "get_params"):  # internal holders such as _CalibratedClassifier
            inner = getattr(est, "estimator", None)
            if inner is not None:
                stack.append(inner)


_FITTED_LISTS = ("steps", "transformers_", "transformer_list", "estimators_", "calibrated_classifiers_")
_FITTED_SINGLES = ("final_estimator_", "estimator_", "regressor_", "classifier_", "base_estimator_")
