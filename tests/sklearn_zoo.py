"""A zoo of ordinary fitted scikit-learn models on the real datasets bundled with scikit-learn, each with
held-out rows it never saw. Shared by the coverage test and benchmarks/sklearn_coverage.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Case:
    name: str
    data: str  # "binary" | "multiclass" | "regression" | "mixed" | "text" | "counts"
    make: Callable[[], object]


def _datasets():
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
    from sklearn.model_selection import train_test_split

    out = {}
    bc = load_breast_cancer()
    out["binary"] = train_test_split(bc.data, bc.target, test_size=0.3, random_state=0)
    wine = load_wine()
    out["multiclass"] = train_test_split(wine.data, wine.target, test_size=0.3, random_state=0)
    dia = load_diabetes()
    out["regression"] = train_test_split(dia.data, dia.target, test_size=0.3, random_state=0)
    counts = np.round(np.abs(wine.data) * 3).astype(np.float64)
    out["counts"] = train_test_split(counts, wine.target, test_size=0.3, random_state=0)
    rng = np.random.default_rng(3)
    n = 500
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(float),
        "income": np.round(rng.lognormal(10, 0.6, n), 2),
        "city": rng.choice(["Paris", "Zürich", "Oslo", "Kraków", "Lisboa"], n),
        "plan": rng.choice(["basic", "plus", "pro"], n),
    })
    target = ((frame.age > 40) ^ (frame.plan == "pro") | (frame.city == "Oslo")).astype(int).to_numpy()
    out["mixed"] = train_test_split(frame, target, test_size=0.3, random_state=0)
    words = {"sport": "match équipe goal stade joueur tennis course victoire saison".split(),
             "food": "café crème recette fromage dîner chef soupe épices marché".split(),
             "tech": "logiciel réseau données serveur python modèle calcul mémoire cloud".split()}
    docs, labels = [], []
    for i in range(400):
        topic = list(words)[i % 3]
        pick = rng.choice(words[topic], rng.integers(3, 9))
        docs.append(" ".join(pick).capitalize())
        labels.append(topic)
    out["text"] = train_test_split(np.array(docs, dtype=object), np.array(labels, dtype=object), test_size=0.3,
                                   random_state=0)
    return out


def _offcentre(x, rng):
    """Features the way raw tables hold them: means of about a thousand, scales from 1 to 10,000."""
    d = x.shape[1]
    scales = np.logspace(0, 4, d)
    means = rng.choice([-1.0, 1.0], d) * rng.uniform(500, 2000, d)
    return x * scales + means


def _offcentre_datasets():
    from sklearn.datasets import make_classification, make_regression
    from sklearn.model_selection import train_test_split

    out = {}
    rng = np.random.default_rng(14)
    for name, k in (("raw-binary", 2), ("raw-multiclass", 3)):
        x, y = make_classification(900, 8, n_informative=5, n_redundant=0, n_classes=k, n_clusters_per_class=1,
                                   random_state=k)
        out[name] = train_test_split(_offcentre(x, rng), y, test_size=1 / 3, random_state=0)
    x, y = make_regression(900, 8, n_informative=6, noise=5.0, random_state=0)
    y = 40 + 60 * y / y.std()  # a target of magnitude ~100
    out["raw-regression"] = train_test_split(_offcentre(x, rng), y, test_size=1 / 3, random_state=0)
    return out


def raw_svr_data():
    """Raw features (means ~1e3, scales 1..1e4) and a target of mean 40, spread 60: a plain ``SVR()`` on
    them has held-out predictions near zero whose float32 error exceeds the default tolerance."""
    from sklearn.datasets import make_regression
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    d = 8
    scales = np.logspace(0, 4, d)
    means = rng.choice([-1, 1], d) * rng.uniform(500, 2000, d)
    x, y = make_regression(1200, d, n_informative=6, noise=5, random_state=0)
    return train_test_split(x * scales + means, y / y.std() * 60 + 40, test_size=0.4, random_state=0)


_DATA = None


def datasets():
    global _DATA
    if _DATA is None:
        _DATA = {**_datasets(), **_offcentre_datasets()}
    return _DATA


def _mixed_prep():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])


def cases() -> list[Case]:
    from sklearn import (calibration, cluster, compose, cross_decomposition, discriminant_analysis, ensemble,
                         feature_selection, gaussian_process, impute, kernel_ridge, linear_model, mixture,
                         multiclass, naive_bayes, neighbors, neural_network, pipeline, preprocessing, svm, tree)
    from sklearn import decomposition
    from sklearn.feature_extraction import text as fe_text

    P = pipeline.make_pipeline
    S = preprocessing.StandardScaler
    c = []
    add = lambda name, data, make: c.append(Case(name, data, make))  # noqa: E731
    # classifiers (binary and multiclass)
    for data in ("binary", "multiclass"):
        add(f"LogisticRegression/{data}", data, lambda: P(S(), linear_model.LogisticRegression(max_iter=500)))
        add(f"SGDClassifier-hinge/{data}", data, lambda: P(S(), linear_model.SGDClassifier(random_state=0)))
        add(f"RandomForestClassifier/{data}", data, lambda: ensemble.RandomForestClassifier(30, random_state=0))
        add(f"GradientBoostingClassifier/{data}", data,
            lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0))
        add(f"HistGradientBoostingClassifier/{data}", data,
            lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0))
        add(f"SVC/{data}", data, lambda: P(S(), svm.SVC()))
        add(f"MLPClassifier/{data}", data, lambda: P(S(), neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)))
    add("SGDClassifier-log/binary", "binary", lambda: P(S(), linear_model.SGDClassifier(loss="log_loss", random_state=0)))
    add("RidgeClassifier", "multiclass", lambda: P(S(), linear_model.RidgeClassifier()))
    add("Perceptron", "binary", lambda: P(S(), linear_model.Perceptron(random_state=0)))
    add("LinearSVC", "multiclass", lambda: P(S(), svm.LinearSVC()))
    add("SVC-proba", "binary", lambda: P(S(), svm.SVC(probability=True, random_state=0)))
    add("NuSVC", "multiclass", lambda: P(S(), svm.NuSVC()))
    add("KNeighborsClassifier", "multiclass", lambda: P(S(), neighbors.KNeighborsClassifier()))
    add("GaussianNB", "multiclass", lambda: naive_bayes.GaussianNB())
    add("BernoulliNB", "binary", lambda: P(S(), naive_bayes.BernoulliNB()))
    add("MultinomialNB", "counts", lambda: naive_bayes.MultinomialNB())
    add("ComplementNB", "counts", lambda: naive_bayes.ComplementNB())
    add("DecisionTreeClassifier", "multiclass", lambda: tree.DecisionTreeClassifier(random_state=0))
    add("ExtraTreeClassifier", "binary", lambda: tree.ExtraTreeClassifier(random_state=0))
    add("ExtraTreesClassifier", "multiclass", lambda: ensemble.ExtraTreesClassifier(30, random_state=0))
    add("AdaBoostClassifier", "binary", lambda: ensemble.AdaBoostClassifier(n_estimators=20, random_state=0))
    add("BaggingClassifier", "binary", lambda: ensemble.BaggingClassifier(n_estimators=10, random_state=0))
    add("VotingClassifier-hard", "multiclass", lambda: ensemble.VotingClassifier(
        [("lr", P(S(), linear_model.LogisticRegression(max_iter=500))), ("dt", tree.DecisionTreeClassifier(max_depth=4))]))
    add("VotingClassifier-soft", "multiclass", lambda: ensemble.VotingClassifier(
        [("lr", P(S(), linear_model.LogisticRegression(max_iter=500))), ("nb", naive_bayes.GaussianNB())], voting="soft"))
    add("StackingClassifier", "binary", lambda: ensemble.StackingClassifier(
        [("lr", P(S(), linear_model.LogisticRegression(max_iter=500))), ("nb", naive_bayes.GaussianNB())]))
    add("CalibratedClassifierCV", "binary", lambda: calibration.CalibratedClassifierCV(P(S(), svm.LinearSVC())))
    add("LinearDiscriminantAnalysis", "multiclass", lambda: discriminant_analysis.LinearDiscriminantAnalysis())
    add("QuadraticDiscriminantAnalysis", "multiclass", lambda: discriminant_analysis.QuadraticDiscriminantAnalysis())
    add("OneVsRestClassifier", "multiclass", lambda: multiclass.OneVsRestClassifier(
        P(S(), linear_model.LogisticRegression(max_iter=500))))
    # regressors
    R = "regression"
    add("LinearRegression", R, lambda: linear_model.LinearRegression())
    add("Ridge", R, lambda: linear_model.Ridge())
    add("Lasso", R, lambda: linear_model.Lasso(alpha=0.1))
    add("ElasticNet", R, lambda: linear_model.ElasticNet(alpha=0.01))
    add("SGDRegressor", R, lambda: P(S(), linear_model.SGDRegressor(random_state=0)))
    add("HuberRegressor", R, lambda: P(S(), linear_model.HuberRegressor(max_iter=500)))
    add("BayesianRidge", R, lambda: linear_model.BayesianRidge())
    add("ARDRegression", R, lambda: linear_model.ARDRegression())
    add("PoissonRegressor", R, lambda: P(S(), linear_model.PoissonRegressor()))
    add("TweedieRegressor", R, lambda: P(S(), linear_model.TweedieRegressor(power=1.5)))
    add("LinearSVR", R, lambda: P(S(), svm.LinearSVR(random_state=0)))
    add("SVR", R, lambda: P(S(), svm.SVR()))
    add("NuSVR", R, lambda: P(S(), svm.NuSVR()))
    add("KernelRidge", R, lambda: kernel_ridge.KernelRidge(kernel="rbf"))
    add("KNeighborsRegressor", R, lambda: neighbors.KNeighborsRegressor())
    add("DecisionTreeRegressor", R, lambda: tree.DecisionTreeRegressor(random_state=0))
    add("ExtraTreeRegressor", R, lambda: tree.ExtraTreeRegressor(random_state=0))
    add("RandomForestRegressor", R, lambda: ensemble.RandomForestRegressor(30, random_state=0))
    add("ExtraTreesRegressor", R, lambda: ensemble.ExtraTreesRegressor(30, random_state=0))
    add("GradientBoostingRegressor", R, lambda: ensemble.GradientBoostingRegressor(n_estimators=40, random_state=0))
    add("GradientBoostingRegressor-huber", R,
        lambda: ensemble.GradientBoostingRegressor(loss="huber", n_estimators=30, random_state=0))
    add("HistGradientBoostingRegressor", R, lambda: ensemble.HistGradientBoostingRegressor(max_iter=40, random_state=0))
    add("HistGradientBoostingRegressor-poisson", R,
        lambda: ensemble.HistGradientBoostingRegressor(loss="poisson", max_iter=30, random_state=0))
    add("AdaBoostRegressor", R, lambda: ensemble.AdaBoostRegressor(n_estimators=20, random_state=0))
    add("BaggingRegressor", R, lambda: ensemble.BaggingRegressor(n_estimators=10, random_state=0))
    add("MLPRegressor", R, lambda: P(S(), neural_network.MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, random_state=0)))
    add("VotingRegressor", R, lambda: ensemble.VotingRegressor([("lr", linear_model.Ridge()),
                                                               ("rf", ensemble.RandomForestRegressor(10, random_state=0))]))
    add("StackingRegressor", R, lambda: ensemble.StackingRegressor([("lr", linear_model.Ridge()),
                                                                   ("kn", neighbors.KNeighborsRegressor())]))
    add("PLSRegression", R, lambda: cross_decomposition.PLSRegression(n_components=3))
    add("TransformedTargetRegressor", R, lambda: compose.TransformedTargetRegressor(
        regressor=linear_model.Ridge(), func=np.log1p, inverse_func=np.expm1))
    add("GaussianProcessRegressor", R, lambda: gaussian_process.GaussianProcessRegressor())
    add("RANSACRegressor", R, lambda: linear_model.RANSACRegressor(random_state=0))
    # transformers
    for name, make in [
        ("StandardScaler", S), ("MinMaxScaler", preprocessing.MinMaxScaler), ("RobustScaler", preprocessing.RobustScaler),
        ("MaxAbsScaler", preprocessing.MaxAbsScaler), ("Normalizer", preprocessing.Normalizer),
        ("PCA", lambda: decomposition.PCA(5)), ("TruncatedSVD", lambda: decomposition.TruncatedSVD(4)),
        ("PolynomialFeatures", lambda: preprocessing.PolynomialFeatures(2)),
        ("KBinsDiscretizer", lambda: preprocessing.KBinsDiscretizer(4, encode="ordinal")),
        ("QuantileTransformer", lambda: preprocessing.QuantileTransformer(n_quantiles=50)),
        ("PowerTransformer", preprocessing.PowerTransformer), ("Binarizer", preprocessing.Binarizer),
        ("SimpleImputer", impute.SimpleImputer), ("KNNImputer", impute.KNNImputer),
        ("SelectKBest", lambda: feature_selection.SelectKBest(k=4)),
        ("VarianceThreshold", lambda: feature_selection.VarianceThreshold(0.01)),
        ("FunctionTransformer-log1p", lambda: preprocessing.FunctionTransformer(np.log1p)),
        ("FeatureUnion", lambda: pipeline.make_union(S(), decomposition.PCA(3))),
    ]:
        add(name, "counts", make)
    # clusterers and outlier detectors
    add("KMeans", "multiclass", lambda: P(S(), cluster.KMeans(3, n_init=3, random_state=0)))
    add("MiniBatchKMeans", "multiclass", lambda: P(S(), cluster.MiniBatchKMeans(3, n_init=3, random_state=0)))
    add("GaussianMixture", "multiclass", lambda: P(S(), mixture.GaussianMixture(3, random_state=0)))
    add("BayesianGaussianMixture", "multiclass", lambda: P(S(), mixture.BayesianGaussianMixture(n_components=3, random_state=0)))
    add("IsolationForest", "binary", lambda: ensemble.IsolationForest(n_estimators=30, random_state=0))
    add("OneClassSVM", "binary", lambda: P(S(), svm.OneClassSVM()))
    add("LocalOutlierFactor-novelty", "binary", lambda: P(S(), neighbors.LocalOutlierFactor(novelty=True)))
    # mixed-type and text pipelines
    add("ColumnTransformer+LogisticRegression", "mixed", lambda: P(_mixed_prep(), linear_model.LogisticRegression()))
    add("ColumnTransformer+RandomForest", "mixed", lambda: P(_mixed_prep(), ensemble.RandomForestClassifier(20, random_state=0)))
    add("ColumnTransformer+HistGradientBoosting", "mixed",
        lambda: P(_mixed_prep(), ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0)))
    add("Tfidf+LogisticRegression", "text", lambda: P(fe_text.TfidfVectorizer(), linear_model.LogisticRegression()))
    add("Tfidf-bigrams+LinearSVC", "text", lambda: P(fe_text.TfidfVectorizer(ngram_range=(1, 2)), svm.LinearSVC()))
    add("CountVectorizer+MultinomialNB", "text", lambda: P(fe_text.CountVectorizer(), naive_bayes.MultinomialNB()))
    add("HashingVectorizer+SGD", "text", lambda: P(fe_text.HashingVectorizer(n_features=256), linear_model.SGDClassifier(random_state=0)))
    return c


def fit(case: Case):
    """(fitted model, held-out rows, held-out labels) for a case."""
    import warnings

    x_tr, x_te, y_tr, y_te = datasets()[case.data]
    model = case.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_tr, y_tr)
    return model, x_te, y_te


def offcentre_cases() -> list[Case]:
    """Models fitted on raw, unscaled features (means ~1e3, scales 1..1e4) and a target of magnitude ~100:
    where float32 graphs meet saturated probabilities, cancellation and rows on thresholds."""
    from sklearn import (calibration, discriminant_analysis, ensemble, linear_model, multiclass, naive_bayes,
                         neighbors, neural_network, pipeline, preprocessing, svm, tree)

    P = pipeline.make_pipeline
    S = preprocessing.StandardScaler
    c = []
    add = lambda name, data, make: c.append(Case(name, data, make))  # noqa: E731
    M, B, R = "raw-multiclass", "raw-binary", "raw-regression"
    for data in (M, B):
        tag = data.split("-")[1]
        add(f"raw/SGDClassifier-log/{tag}", data, lambda: linear_model.SGDClassifier(loss="log_loss", random_state=0))
        add(f"raw/SVC/{tag}", data, lambda: svm.SVC())
        add(f"raw/GradientBoostingClassifier/{tag}", data,
            lambda: ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0))
    add("raw/LogisticRegression", M, lambda: linear_model.LogisticRegression(max_iter=300))
    add("raw/SGDClassifier-hinge", M, lambda: linear_model.SGDClassifier(random_state=0))
    add("raw/SGDClassifier-modified_huber", M,
        lambda: linear_model.SGDClassifier(loss="modified_huber", random_state=0))
    add("raw/RidgeClassifier", M, lambda: linear_model.RidgeClassifier())
    add("raw/Perceptron", M, lambda: linear_model.Perceptron(random_state=0))
    add("raw/LinearSVC", M, lambda: svm.LinearSVC())
    add("raw/SVC-proba", M, lambda: svm.SVC(probability=True, random_state=0))
    add("raw/KNeighborsClassifier", M, lambda: neighbors.KNeighborsClassifier())
    add("raw/GaussianNB", M, lambda: naive_bayes.GaussianNB())
    add("raw/LinearDiscriminantAnalysis", M, lambda: discriminant_analysis.LinearDiscriminantAnalysis())
    add("raw/QuadraticDiscriminantAnalysis", M, lambda: discriminant_analysis.QuadraticDiscriminantAnalysis())
    add("raw/DecisionTreeClassifier", M, lambda: tree.DecisionTreeClassifier(random_state=0))
    add("raw/RandomForestClassifier", M, lambda: ensemble.RandomForestClassifier(20, random_state=0))
    add("raw/HistGradientBoostingClassifier", M,
        lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0))
    add("raw/AdaBoostClassifier", M, lambda: ensemble.AdaBoostClassifier(n_estimators=15, random_state=0))
    add("raw/CalibratedClassifierCV", M,
        lambda: calibration.CalibratedClassifierCV(linear_model.LogisticRegression(max_iter=300)))
    add("raw/OneVsRestClassifier-SGD-log", M, lambda: multiclass.OneVsRestClassifier(
        linear_model.SGDClassifier(loss="log_loss", random_state=0)))
    add("raw/OneVsRestClassifier-LogisticRegression", M, lambda: multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression(max_iter=300)))
    add("raw/VotingClassifier-hard", M, lambda: ensemble.VotingClassifier(
        [("lr", P(S(), linear_model.LogisticRegression())), ("dt", tree.DecisionTreeClassifier(max_depth=4)),
         ("nb", naive_bayes.GaussianNB())]))
    add("raw/VotingClassifier-soft", M, lambda: ensemble.VotingClassifier(
        [("sgd", linear_model.SGDClassifier(loss="log_loss", random_state=0)), ("nb", naive_bayes.GaussianNB())],
        voting="soft"))
    # pipelines
    add("raw/Scaler+SGDClassifier-log", M, lambda: P(S(), linear_model.SGDClassifier(loss="log_loss", random_state=0)))
    add("raw/Scaler+SVC-proba", B, lambda: P(S(), svm.SVC(probability=True, random_state=0)))
    add("raw/Scaler+MLPClassifier", M, lambda: P(S(), neural_network.MLPClassifier(
        hidden_layer_sizes=(16,), max_iter=300, random_state=0)))
    add("raw/Calibrated(Scaler+LogisticRegression)", M, lambda: calibration.CalibratedClassifierCV(
        P(S(), linear_model.LogisticRegression())))
    add("raw/KBins+LogisticRegression", M, lambda: P(preprocessing.KBinsDiscretizer(5, encode="onehot-dense"),
                                                     linear_model.LogisticRegression(max_iter=300)))
    # regressors
    add("raw/LinearRegression", R, lambda: linear_model.LinearRegression())
    add("raw/Ridge", R, lambda: linear_model.Ridge())
    add("raw/SVR", R, lambda: svm.SVR())
    add("raw/LinearSVR", R, lambda: svm.LinearSVR(random_state=0))
    add("raw/KNeighborsRegressor", R, lambda: neighbors.KNeighborsRegressor())
    add("raw/DecisionTreeRegressor", R, lambda: tree.DecisionTreeRegressor(random_state=0))
    add("raw/RandomForestRegressor", R, lambda: ensemble.RandomForestRegressor(20, random_state=0))
    add("raw/GradientBoostingRegressor", R, lambda: ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0))
    add("raw/HistGradientBoostingRegressor", R,
        lambda: ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=0))
    add("raw/Scaler+SVR", R, lambda: P(S(), svm.SVR()))
    add("raw/Scaler+SGDRegressor", R, lambda: P(S(), linear_model.SGDRegressor(random_state=0)))
    add("raw/Scaler+MLPRegressor", R, lambda: P(S(), neural_network.MLPRegressor(
        hidden_layer_sizes=(16,), max_iter=500, random_state=0)))
    return c


# ---------------------------------------------------------------------------------------------
# checking a conversion without modelport's comparator


def holdout_file(loaded, x_te, folder):
    """The held-out rows as a file modelport reads (CSV for frames and text, .npz otherwise)."""
    import pandas as pd

    if hasattr(x_te, "columns"):
        path = folder / "holdout.csv"
        x_te.to_csv(path, index=False)
    elif loaded.signature.inputs[0].dtype == "string":
        path = folder / "holdout.csv"
        pd.DataFrame({"text": list(x_te)}).to_csv(path, index=False)
    else:
        path = folder / "holdout.npz"
        np.savez(path, **{loaded.signature.inputs[0].name: np.asarray(x_te, dtype=np.float32)})
    return path


def onnx_feeds(sess, loaded, x_te):
    """(feeds for the onnxruntime session, the same rows as the native model takes them)."""
    inputs = {i.name: i.type for i in sess.get_inputs()}
    if hasattr(x_te, "columns"):
        out = {}
        for spec in loaded.signature.inputs:
            col = x_te[spec.column_names[0]].to_numpy().reshape(-1, 1)
            out[spec.name] = col.astype(object) if spec.dtype == "string" else col.astype(
                np.float64 if inputs[spec.name] == "tensor(double)" else np.float32)
        return out, x_te
    if loaded.signature.inputs[0].dtype == "string":
        return {"text": np.asarray(x_te, dtype=object).reshape(-1, 1)}, list(x_te)
    x32 = np.asarray(x_te, dtype=np.float32)
    return {"X": x32.astype(np.float64) if inputs["X"] == "tensor(double)" else x32}, x32.astype(np.float64)


def disagreements(model, loaded, report, onnx_path, x_te) -> list[str]:
    """Run the written ONNX file in onnxruntime on the held-out rows and compare it with the model's own
    methods. Labels must equal ``predict`` row for row; floats must be within rtol 1e-3 / atol 1e-4, except
    elements of an output the report says were judged by their measured noise floor, and never by more
    than the largest floor it reports. Returns what disagrees (empty: agreement)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds, native_x = onnx_feeds(sess, loaded, x_te)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    stats = {o.name: o for o in report.outputs}
    problems = []
    for out in loaded.runner.outputs:
        name = out.spec.name
        native = np.asarray(getattr(model, out.method)(native_x))
        onnx_out = np.asarray(got[name]).reshape(native.shape)
        if native.dtype.kind in "fc":
            err = np.abs(onnx_out.astype(np.float64) - native)
            beyond = err > 1e-4 + 1e-3 * np.abs(native)
            if not beyond.any():
                continue
            o = stats[name]
            if o.tolerance_source != "noise floor" or not err[beyond].max() <= o.noise_floor_max:
                problems.append(f"{name}: {int(beyond.sum())} values off by up to {err.max():.3g}")
        else:
            differ = native.astype(str) != onnx_out.astype(str)
            if differ.any():
                problems.append(f"{name}: {int(differ.sum())} of {differ.size} differ from {out.method}")
    return problems
