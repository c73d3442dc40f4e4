"""Format detection by content: every format modelport reads, written by the real libraries, recognised
whatever its file name; everything else refused with a one-line error that names the file and says what
the bytes look like."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import time
import zipfile

import joblib
import numpy as np
import pytest

from convert.detect import Detection, detect
from convert.errors import BadInputError

# ------------------------------------------------------------------------------------------ pickles


@pytest.mark.parametrize("protocol", range(6))
def test_pickle_every_protocol(tmp_path, protocol):
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"weights": [1.5, 2.5], "name": "m"}, protocol=protocol))
    found = detect(path)
    assert found == Detection("pickle", None, None, {"protocol": protocol})


def test_joblib_with_array_blocks(tmp_path):
    path = tmp_path / "model.pkl"
    joblib.dump({"w": np.arange(10.0)}, path)
    found = detect(path)
    assert found.format == "joblib"
    assert found.compression is None


@pytest.mark.parametrize("compression", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"])
def test_compressed_joblib(tmp_path, compression):
    if compression == "lz4":
        pytest.importorskip("lz4")
    path = tmp_path / "model.bin"
    joblib.dump({"w": np.arange(100.0)}, path, compress=(compression, 3))
    found = detect(path)
    assert (found.format, found.compression) == ("joblib", compression)
    assert found.details["protocol"] == pickle.DEFAULT_PROTOCOL  # what joblib.dump writes


def test_legacy_joblib_zfile(tmp_path):
    from joblib.numpy_pickle_compat import write_zfile

    path = tmp_path / "old.pkl"
    with open(path, "wb") as fh:
        write_zfile(fh, pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    found = detect(path)
    assert (found.format, found.compression) == ("joblib", "zfile")
    assert "0.10" in found.details["legacy_format"]


def test_compressed_data_that_is_not_a_pickle_is_refused(tmp_path):
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"just some text, not a model\n" * 20))
    with pytest.raises(BadInputError, match="gzip-compressed data that is not a joblib pickle"):
        detect(path)


# ---------------------------------------------------------------------------------------- torch


@pytest.mark.slow
def test_torch_formats(torch_files):
    zipped = detect(torch_files["state_dict-zip"])
    assert (zipped.format, zipped.framework) == ("torch-zip", "torch")
    assert zipped.details["version"] == "3" or zipped.details["version"].isdigit()
    assert zipped.details["pickles"] == [f"{zipped.details['archive_root']}/data.pkl"]
    assert zipped.details["storages"] == 4

    legacy = detect(torch_files["state_dict-legacy"])
    assert (legacy.format, legacy.framework) == ("torch-legacy", "torch")
    assert legacy.details["torch_legacy_protocol"] == 1001

    script = detect(torch_files["torchscript"])
    assert script.format == "torchscript"
    assert script.details["code_files"] and all("/code/" in f for f in script.details["code_files"])
    assert any(p.endswith("constants.pkl") for p in script.details["pickles"])

    exported = detect(torch_files["export"])
    assert (exported.format, exported.framework) == ("torch-export", "torch")
    assert exported.details["archive_format"] == "pt2"
    assert exported.details["torch_version"].startswith(__import__("torch").__version__.split("+")[0])


# ------------------------------------------------------------------------------ tensorflow / keras


@pytest.mark.slow
def test_keras_and_savedmodel(tf_files, tmp_path):
    import keras

    v3 = detect(tf_files["keras"])
    assert (v3.format, v3.framework) == ("keras", "keras")
    assert v3.details["keras_version"] == keras.__version__
    assert v3.details["lambda_layers"] == []
    assert detect(tf_files["lambda"]).details["lambda_layers"] == ["lambda"]

    h5 = detect(tf_files["h5"])
    assert (h5.format, h5.details["keras_version"]) == ("keras-h5", keras.__version__)
    assert detect(tf_files["weights"]).format == "hdf5"

    saved = detect(tf_files["savedmodel"])
    assert (saved.format, saved.framework) == ("savedmodel", "tensorflow")
    assert saved.details["variables"] is True
    assert saved.details["tags"] == ["serve"]
    assert saved.details["tensorflow_version"] == __import__("tensorflow").__version__
    # without its variables it is still a SavedModel: reported, not refused
    bare = tmp_path / "bare"
    shutil.copytree(tf_files["savedmodel"], bare)
    shutil.rmtree(bare / "variables")
    assert detect(bare).details["variables"] is False


def test_hdf5_without_keras(tmp_path):
    h5py = pytest.importorskip("h5py")
    plain, tagged = tmp_path / "data.h5", tmp_path / "model.weights"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with h5py.File(tagged, "w") as f:
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
    assert detect(plain).format == "hdf5"
    found = detect(tagged)
    assert (found.format, found.details["keras_version"], found.details["model_class"]) == (
        "keras-h5", "2.4.0", "Sequential")


def test_keras_h5_without_h5py_falls_back_to_reading_bytes(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    path, plain = tmp_path / "model.h5", tmp_path / "plain.h5"
    config = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {"name": "f"}}]}}
    with h5py.File(path, "w") as f:  # the way keras' legacy h5 saver writes its attributes
        f.attrs["keras_version"] = "2.13.1".encode("utf8")
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        f["w"] = np.ones(3)
    with h5py.File(plain, "w") as f:
        f["w"] = np.ones(3)
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # as if h5py were not installed
    found = detect(path)
    assert (found.format, found.details["inspected_with"]) == ("keras-h5", "byte search")
    assert found.details["keras_version"] == "2.13.1"
    assert found.details["lambda_layers"] == ["f"]
    assert detect(plain).format == "hdf5"


def test_savedmodel_in_text_form(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pbtxt").write_text(
        'saved_model_schema_version: 1\nmeta_graphs {\n  meta_info_def {\n    tags: "serve"\n'
        '    tensorflow_version: "2.15.0"\n  }\n}\n')
    found = detect(tmp_path / "sm")
    assert (found.format, found.details["tensorflow_version"], found.details["tags"]) == (
        "savedmodel", "2.15.0", ["serve"])
    assert found.details["variables"] is False


# -------------------------------------------------------------------------------------------- onnx


def _onnx_model():
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, producer_name="skl2onnx", producer_version="1.20.0",
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_onnx(tmp_path):
    import onnx

    path = tmp_path / "model.pkl"  # the name lies; the bytes do not
    onnx.save(_onnx_model(), path)
    found = detect(path)
    assert (found.format, found.framework) == ("onnx", "onnx")
    assert found.details["ir_version"] == 8
    assert found.details["opsets"] == {"ai.onnx": 17, "ai.onnx.ml": 3}
    assert (found.details["producer_name"], found.details["producer_version"]) == ("skl2onnx", "1.20.0")
    assert found.details["inputs"] == ["x"] and found.details["outputs"] == ["y"]


def test_onnx_truncated_is_not_onnx(tmp_path):

    data = _onnx_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:-7])
    with pytest.raises(BadInputError):
        detect(path)


# ------------------------------------------------------------------------------ other file formats


def test_skops(tmp_path, fitted_models):
    sio = pytest.importorskip("skops.io")
    import sklearn

    path = tmp_path / "model.skops"
    sio.dump(fitted_models["log1p"], path)
    found = detect(path)
    assert (found.format, found.framework) == ("skops", "sklearn")
    assert found.details["sklearn_version"] == sklearn.__version__
    assert "sklearn.pipeline:Pipeline" in found.details["types"]
    assert "numpy:log1p" in found.details["types"]


def test_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "weights.bin"
    st.save_file({"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float16)}, path, metadata={"format": "pt"})
    found = detect(path)
    assert (found.format, found.framework) == ("safetensors", "torch")
    assert found.details["tensors"] == 2
    assert found.details["dtypes"] == {"F32": 1, "F16": 1}
    assert found.details["data_bytes"] == 2 * 3 * 4 + 3 * 2


def test_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6.0).reshape(2, 3))
    np.save(tmp_path / "o.npy", np.array([{"k": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "z.npz", a=np.arange(3), o=np.array([None], dtype=object))
    plain = detect(tmp_path / "a.npy")
    assert (plain.format, plain.details["shape"], plain.details["object"]) == ("npy", [2, 3], False)
    assert detect(tmp_path / "o.npy").details["object"] is True
    bundle = detect(tmp_path / "z.npz")
    assert (bundle.format, bundle.details["arrays"], bundle.details["object_arrays"]) == ("npz", ["a", "o"], ["o"])


def test_generic_zip_lists_members_and_flags_escaping_paths(tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/model.pkl", pickle.dumps([1]))
        zf.writestr("../../etc/cron.d/job", "x")
        zf.writestr("/abs/path", "y")
    found = detect(path)
    assert found.format == "zip"
    assert found.details["members"] == 3
    assert found.details["risky_members"] == ["../../etc/cron.d/job", "/abs/path"]


def test_format_comes_from_content_not_extension(tmp_path):
    import onnx

    onnx.save(_onnx_model(), tmp_path / "x.joblib")
    joblib.dump(np.arange(3.0), tmp_path / "y.onnx")
    np.save(tmp_path / "z.safetensors", np.arange(3))
    assert detect(tmp_path / "x.joblib").format == "onnx"
    assert detect(tmp_path / "y.onnx").format == "joblib"
    assert detect(tmp_path / "z.safetensors.npy").format == "npy"


# ---------------------------------------------------------------------------------------- refusals


def _refusal(path) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        detect(path)
    error = info.value
    assert error.exit_code == 2
    assert str(path) in error.line() and error.hint and "\n" not in error.line()
    return error


def test_refusals_name_the_file_and_say_what_it_looks_like(tmp_path):
    cases = {
        "missing.pkl": (None, "no such file"),
        "empty.pkl": (b"", "empty file"),
        "notes.txt": (b"this is a README, not a model\nsecond line\n", "a text file"),
        "table.csv": (b"a,b,c\n1,2,3\n4,5,6\n", "CSV"),
        "random.bin": (np.random.default_rng(0).bytes(4096), "random bytes"),
        "picture.pkl": (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
        "script.py": (b"import os\nprint('hi')\n", "Python source"),
        "broken.zip": (b"PK\x03\x04" + bytes(40), "damaged zip"),
    }
    for name, (content, expect) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert expect in _refusal(path).message, name


def test_directory_that_is_not_a_savedmodel(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"x")
    assert "not a TensorFlow SavedModel" in _refusal(tmp_path / "model").message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.pkl"
    path.write_bytes(pickle.dumps([1]))
    path.chmod(0)
    try:
        assert "cannot read" in _refusal(path).message
    finally:
        path.chmod(0o600)


def test_detection_reads_a_bounded_prefix_of_huge_files(tmp_path):
    """A 4 GB (sparse) pickle whose first opcode announces a 4 GB constant: detected in milliseconds."""
    path = tmp_path / "huge.pkl"
    with open(path, "wb") as fh:
        fh.write(b"\x80\x04\x8e" + (4 << 30).to_bytes(8, "little"))
        fh.truncate((4 << 30) + 11)
    started = time.perf_counter()
    found = detect(path)
    assert found.format == "pickle"
    assert time.perf_counter() - started < 2.0


def test_atomic_writes_get_the_mode_a_plain_write_would(tmp_path):
    from convert.atomic import write_atomic

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_atomic(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
