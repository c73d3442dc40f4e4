"""Shared fixtures for the static layer: a canary file malicious payloads would create, and small fitted
scikit-learn models built with real library calls."""

from __future__ import annotations

import os

import numpy as np
import pytest
from canary import Canary


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory):
    """Keras and onnxruntime write under $HOME; keep the tests out of the real one."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("HOME", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ.update(HOME=str(home), KERAS_HOME=str(home / ".keras"), TF_CPP_MIN_LOG_LEVEL="3")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def canary(tmp_path):
    bird = Canary(tmp_path / "canary")
    yield bird
    assert not bird.fired(), "a payload ran during a static scan"


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    return X, y, y3


@pytest.fixture(scope="session")
def fitted_models(data):
    """A range of fitted estimators and pipelines, as people save them."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor, IsolationForest,
                                  RandomForestClassifier, StackingClassifier)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    X, y, y3 = data
    mixed = np.empty((80, 2), dtype=object)
    mixed[:, 0] = X[:, 0]
    mixed[:, 1] = np.array(["red", "green", "blue", "grey"])[np.arange(80) % 4]
    texts = [f"word{i % 7} token{i % 3} common" for i in range(80)]
    return {
        "logistic": LogisticRegression().fit(X, y),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y3),
        "hgb binary": HistGradientBoostingClassifier(max_iter=5).fit(X, y),
        "hgb multiclass": HistGradientBoostingClassifier(max_iter=5).fit(X, y3),
        "hgb regressor": HistGradientBoostingRegressor(max_iter=5).fit(X, X[:, 0]),
        "scaled svc": make_pipeline(StandardScaler(), SVC(probability=True)).fit(X, y),
        "column transformer": make_pipeline(
            ColumnTransformer([("num", StandardScaler(), [0]), ("cat", OneHotEncoder(), [1])]),
            LogisticRegression()).fit(mixed, y),
        "knn kd_tree": KNeighborsClassifier(algorithm="kd_tree").fit(X, y),
        "tfidf": make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, y),
        "gaussian process": GaussianProcessRegressor(RBF() + WhiteKernel()).fit(X[:30], X[:30, 0]),
        "mlp": MLPClassifier(max_iter=20, random_state=0).fit(X, y),
        "kmeans": KMeans(n_clusters=3, n_init=2, random_state=0).fit(X),
        "pca ridge": make_pipeline(PCA(2), Ridge()).fit(X, X[:, 1]),
        "isolation forest": IsolationForest(n_estimators=5, random_state=0).fit(X),
        "log1p": make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(np.abs(X), y),
        "calibrated": CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y),
        "stacking": StackingClassifier([("lr", LogisticRegression()), ("rf", RandomForestClassifier(n_estimators=3))],
                                       cv=3).fit(X, y),
    }


@pytest.fixture(scope="session")
def torch_files(tmp_path_factory):
    """torch.save (zip and legacy), torch.jit.save and torch.export.save outputs of one small model."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    checkpoint = {"epoch": 2, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    files = {}
    for name, obj in (("state_dict", model.state_dict()), ("checkpoint", checkpoint)):
        for zipped in (True, False):
            path = folder / f"{name}-{'zip' if zipped else 'legacy'}.pt"
            torch.save(obj, path, _use_new_zipfile_serialization=zipped)
            files[path.stem] = path
    files["torchscript"] = folder / "scripted.pt"
    torch.jit.save(torch.jit.script(model), files["torchscript"])
    files["export"] = folder / "exported.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 3),)), files["export"])
    return files


@pytest.fixture(scope="session")
def tf_files(tmp_path_factory):
    """Keras v3 zip, Keras HDF5, a weights-only HDF5, a Lambda model, and a SavedModel folder."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("tf")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    files = {"keras": folder / "model.keras", "h5": folder / "model.h5", "weights": folder / "model.weights.h5",
             "lambda": folder / "lambda.keras", "savedmodel": folder / "saved"}
    model.save(files["keras"])
    model.save(files["h5"])
    model.save_weights(files["weights"])
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)]).save(files["lambda"])

    class Doubler(tf.Module):
        def __init__(self):
            self.w = tf.Variable([[2.0], [1.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def __call__(self, x):
            return x @ self.w

    tf.saved_model.save(Doubler(), str(files["savedmodel"]))
    keras.backend.clear_session()  # layer-name counters are global: leave them as other tests expect
    return files
