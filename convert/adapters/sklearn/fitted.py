"""What a fitted estimator's own arrays say about its input, for files that predate ``n_features_in_`` (0.24).

The width of the input is read from the first fitted array that carries it, in the order of ``WIDTH``: each
row names the attribute and the axis of it that runs over input features (coefficients, support vectors,
cluster centres, per-feature statistics, the first layer of a network, a tree's feature count). Nothing is
guessed: an estimator holding none of them has no width here, and the caller asks the user.
"""

from __future__ import annotations

import numpy as np

# (attribute, how to read the width from it); first present wins
WIDTH = (
    ("coef_", lambda v: np.shape(v)[-1]),  # linear models, LinearSVC/SVR, SGD, logistic regression
    ("support_vectors_", lambda v: np.shape(v)[1]),  # kernel SVMs
    ("cluster_centers_", lambda v: np.shape(v)[1]),  # k-means
    ("components_", lambda v: np.shape(v)[1]),  # PCA, TruncatedSVD, NMF
    ("theta_", lambda v: np.shape(v)[1]),  # GaussianNB
    ("feature_log_prob_", lambda v: np.shape(v)[1]),  # MultinomialNB, BernoulliNB, ComplementNB
    ("feature_count_", lambda v: np.shape(v)[1]),
    ("_fit_X", lambda v: np.shape(v)[1]),  # nearest neighbours
    ("coefs_", lambda v: np.shape(v[0])[0]),  # MLP: the first layer's weights
    ("scale_", lambda v: np.shape(v)[0]),  # scalers (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
    ("mean_", lambda v: np.shape(v)[0]),
    ("var_", lambda v: np.shape(v)[0]),
    ("data_min_", lambda v: np.shape(v)[0]),
    ("max_abs_", lambda v: np.shape(v)[0]),
    ("center_", lambda v: np.shape(v)[0]),
    ("categories_", len),  # one-hot / ordinal encoders: one list of categories per column
    ("n_features_", int),  # trees, forests and boosting before 1.0
    ("tree_", lambda v: int(v.n_features)),
    ("estimators_", lambda v: int(np.ravel(np.asarray(v, dtype=object))[0].tree_.n_features)),
)
# estimators that take one column of labels
ONE_COLUMN = frozenset(("LabelEncoder", "LabelBinarizer"))


def input_width(est) -> tuple[int | None, str | None]:
    """(number of input features, the attribute it was read from), or (None, None)."""
    if type(est).__name__ in ONE_COLUMN and hasattr(est, "classes_"):
        return 1, "classes_"
    for attr, read in WIDTH:
        value = getattr(est, attr, None)
        if value is None:
            continue
        try:
            width = int(read(value))
        except (TypeError, ValueError, IndexError, AttributeError):
            continue
        if width > 0:
            return width, attr
    return None, None
