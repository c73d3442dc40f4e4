"""inspect(): one call that says what a file is, what wrote it, its hash, and whether unpickling it is safe,
without running any of it."""

from __future__ import annotations

import hashlib
import json
import pickle

import joblib
import numpy as np
import pytest
import sklearn

from convert.artifact import Artifact, inspect


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("compress", [0, ("gzip", 3)])
def test_sklearn_joblib(fitted_models, tmp_path, compress):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted_models["column transformer"], path, compress=compress)
    art = inspect(path)
    assert isinstance(art, Artifact)
    assert (art.format, art.framework, art.safety) == ("joblib", "sklearn", "safe")
    assert art.compression == (None if compress == 0 else "gzip")
    assert art.saved_with["sklearn"] == sklearn.__version__
    assert (art.size, art.sha256) == (path.stat().st_size, _sha256(path))
    assert art.details["pickle_scan"]["joblib_arrays"] > 0
    assert all(g.verdict == "safe" for g in art.globals)
    assert any(g.qualname == "sklearn.pipeline.Pipeline" for g in art.globals)
    json.dumps(art.to_dict())  # the CLI prints it as JSON


def test_pickle_is_called_joblib_when_array_blocks_come_late(tmp_path):
    """detect() looks at the first megabyte; the scan sees the whole file."""
    path = tmp_path / "late.pkl"
    joblib.dump([b"\x00" * (3 << 20), np.arange(5.0)], path)
    art = inspect(path)
    assert art.format == "joblib"
    assert art.details["pickle_scan"]["joblib_arrays"] == 1


def test_malicious_pickle(canary, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": canary.payload()}, protocol=4))
    art = inspect(path)
    assert art.safety == "unsafe"
    assert art.format == "pickle" and art.framework is None
    assert [g.name for g in art.globals if g.verdict == "unsafe"] == ["system"]
    assert any(f.severity == "unsafe" for f in art.findings)
    assert json.loads(json.dumps(art.to_dict()))["safety"] == "unsafe"


def test_corrupt_file_is_unknown_and_says_so(tmp_path):
    path = tmp_path / "cut.joblib"
    joblib.dump({"w": np.arange(10_000.0)}, path)
    path.write_bytes(path.read_bytes()[:40_000])
    art = inspect(path)
    assert art.safety == "unknown"
    assert "ends inside" in art.details["corrupt"]
    assert art.details["corrupt"] == art.details["pickle_scan"]["corrupt"]


def test_sklearn_before_0_18(monkeypatch, data, tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    X, y, _ = data
    model = DecisionTreeClassifier().fit(X, y)
    monkeypatch.setattr(DecisionTreeClassifier, "__getstate__", lambda self: dict(self.__dict__))
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps(model, protocol=2))
    assert inspect(path).saved_with["sklearn"] == "before 0.18"


def test_numpy_files(canary, tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(4))
    np.save(tmp_path / "trap.npy", np.array([canary.payload()], dtype=object), allow_pickle=True)
    plain, trap = inspect(tmp_path / "plain.npy"), inspect(tmp_path / "trap.npy")
    assert (plain.format, plain.framework, plain.safety) == ("npy", "numpy", "safe")
    assert (trap.format, trap.safety) == ("npy", "unsafe")


@pytest.mark.slow
def test_torch_files(torch_files):
    import torch

    zipped = inspect(torch_files["checkpoint-zip"])
    assert (zipped.format, zipped.framework, zipped.safety) == ("torch-zip", "torch", "safe")
    assert zipped.saved_with["torch_archive_version"].isdigit()
    legacy = inspect(torch_files["checkpoint-legacy"])
    assert (legacy.format, legacy.safety, legacy.saved_with["torch_legacy_protocol"]) == ("torch-legacy", "safe", 1001)
    script = inspect(torch_files["torchscript"])
    assert (script.format, script.safety) == ("torchscript", "safe")
    assert script.details["code_files"]
    exported = inspect(torch_files["export"])
    assert (exported.format, exported.safety) == ("torch-export", "safe")
    assert exported.saved_with["torch"] == torch.__version__


def test_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, producer_name="tf2onnx", producer_version="1.17.0",
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    art = inspect(path)
    assert (art.format, art.framework, art.safety) == ("onnx", "onnx", "safe")
    assert art.saved_with == {"onnx_ir": 9, "onnx_opset": 18, "producer": "tf2onnx 1.17.0"}
    assert art.globals == () and art.findings == ()


def test_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    st.save_file({"w": np.ones(3, np.float32)}, path, metadata={"format": "pt"})
    art = inspect(path)
    assert (art.format, art.framework, art.safety) == ("safetensors", "torch", "safe")


def test_safetensors_shorter_than_its_header_says(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "cut.safetensors"
    st.save_file({"w": np.ones(100, np.float32)}, path)
    path.write_bytes(path.read_bytes()[:-40])
    art = inspect(path)
    assert art.safety == "unknown"
    assert "tensor data needs" in art.details["corrupt"]


class Custom:
    """A class skops has no reason to trust."""

    def __init__(self):
        self.value = 3


def test_skops(fitted_models, tmp_path):
    sio = pytest.importorskip("skops.io")
    path = tmp_path / "model.skops"
    sio.dump(fitted_models["scaled svc"], path)
    art = inspect(path)
    assert (art.format, art.framework, art.safety) == ("skops", "sklearn", "safe")
    assert art.saved_with["sklearn"] == sklearn.__version__ and "skops" in art.saved_with
    odd = tmp_path / "custom.skops"
    sio.dump({"thing": Custom()}, odd)
    flagged = inspect(odd)
    assert flagged.safety == "suspicious"
    assert any(g.name == "Custom" and g.verdict == "suspicious" for g in flagged.globals)


@pytest.mark.slow
def test_keras_and_savedmodel(tf_files):
    import keras
    import tensorflow as tf

    v3 = inspect(tf_files["keras"])
    assert (v3.format, v3.framework, v3.safety) == ("keras", "keras", "safe")
    assert v3.saved_with == {"keras": keras.__version__}
    assert inspect(tf_files["h5"]).saved_with["keras"] == keras.__version__
    lam = inspect(tf_files["lambda"])
    assert lam.safety == "unsafe"
    assert "Lambda" in lam.findings[0].what
    saved = inspect(tf_files["savedmodel"])
    assert (saved.format, saved.framework, saved.safety) == ("savedmodel", "tensorflow", "safe")
    assert saved.saved_with["tensorflow"] == tf.__version__
    assert saved.size == sum(p.stat().st_size for p in tf_files["savedmodel"].rglob("*") if p.is_file())


def test_savedmodel_folder_hash_covers_names_and_contents(tmp_path):
    folder = tmp_path / "sm"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")  # SavedModel{saved_model_schema_version: 1}
    (folder / "variables" / "variables.index").write_bytes(b"index")
    first = inspect(folder)
    assert (first.format, first.safety, first.details["saved_model_schema_version"]) == ("savedmodel", "safe", 1)
    assert inspect(folder).sha256 == first.sha256
    (folder / "variables" / "variables.index").write_bytes(b"indeX")
    assert inspect(folder).sha256 != first.sha256
    (folder / "saved_model.pb").write_bytes(b"\x12\x7f")  # a field longer than the file
    broken = inspect(folder)
    assert broken.safety == "unknown"
    assert "not a readable SavedModel" in broken.findings[0].what
