"""convert.scan.keras and convert.scan.savedmodel: what Keras files and SavedModels would run, read without
importing TensorFlow.
Keras files here are written by hand (a zip with config.json, an HDF5 file with attributes), so every case
is exact and nothing needs TensorFlow; SavedModels are the committed fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from convert.scan import scan_keras, scan_keras_config, scan_savedmodel

ROOT = Path(__file__).resolve().parents[3]
TF_FIXTURES = ROOT / "fixtures" / "tensorflow"


def layer(cls, name, module="keras.layers", registered=None, **config):
    return {"module": module, "class_name": cls, "config": {"name": name, **config}, "registered_name": registered,
            "inbound_nodes": []}


def functional(*layers):
    return {"module": "keras", "class_name": "Functional", "config": {
        "name": "m", "layers": list(layers), "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}


LAMBDA = layer("Lambda", "sneaky", function={"class_name": "__lambda__", "config": {"code": "4wIAAA==",
                                                                                    "defaults": None}})
CUSTOM = layer("Scale", "scale", module=None, registered="acme>Scale")
DENSE = layer("Dense", "out", units=2, activation="relu",
              kernel_initializer={"module": "keras.initializers", "class_name": "GlorotUniform", "config": {}})


def write_keras(path: Path, config, metadata=None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(metadata or {"keras_version": "3.15.1", "date_saved": "today"}))
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        zf.writestr("model.weights.h5", b"")
    return path


def test_plain_model_is_safe_and_facts_are_read(tmp_path):
    verdict, findings, facts = scan_keras(write_keras(tmp_path / "m.keras", functional(DENSE)), "keras")
    assert (verdict, findings) == ("safe", [])
    assert facts["keras_version"] == "3.15.1" and facts["model_class"] == "Functional"
    assert facts["inputs"] == ["x"] and facts["outputs"] == ["out"] and facts["layers"] == 1


def test_lambda_and_custom_objects_are_found_with_their_layer(tmp_path):
    verdict, findings, facts = scan_keras(write_keras(tmp_path / "m.keras", functional(LAMBDA, CUSTOM, DENSE)),
                                          "keras")
    assert verdict == "unsafe"
    assert [(f.severity, f.where) for f in findings] == [("unsafe", "layer 'sneaky'"), ("suspicious", "layer 'scale'")]
    assert "bytecode" in findings[0].what and "acme>Scale" in findings[1].what
    assert facts["lambda_layers"] == ["sneaky"] and facts["custom_objects"] == ["acme>Scale"]


def test_lambda_bytecode_outside_a_lambda_layer_and_non_modeling_apis():
    sneaky_activation = layer("Dense", "d", activation={"class_name": "__lambda__", "config": {"code": "AA=="}})
    downloader = layer("Dense", "e", kernel_initializer={"module": "keras.utils", "class_name": "get_file",
                                                         "config": {"origin": "http://x"}})
    verdict, findings, _ = scan_keras_config(functional(sneaky_activation, downloader))
    assert verdict == "unsafe"
    whats = sorted(f.what for f in findings)
    assert whats[0].startswith("Python bytecode") and "keras.utils.get_file" in whats[1]


def test_legacy_h5_configs(tmp_path):
    import h5py

    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "mypkg>Custom", "config": {"name": "c"}},
        {"class_name": "Lambda", "config": {"name": "lam", "function": ["4wIA", None, None], "function_type": "lambda"}},
        {"class_name": "TFOpLambda", "config": {"name": "tf.math.add", "function": "math.add"}}]}}
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
    verdict, findings, facts = scan_keras(tmp_path / "m.h5", "keras-h5")
    assert verdict == "unsafe" and facts["keras_version"] == "2.15.0" and facts["backend"] == "tensorflow"
    assert facts["lambda_layers"] == ["lam"] and facts["custom_objects"] == ["mypkg>Custom"]
    assert facts["tf_op_layers"] == ["tf.math.add"]


def test_unreadable_configs_are_unknown(tmp_path):
    import h5py

    verdict, findings, facts = scan_keras(write_keras(tmp_path / "b.keras", '{"class_name": "Func'), "keras")
    assert verdict == "unknown" and facts["config_error"] == "config.json is not valid JSON"
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["layer/kernel"] = np.zeros(3)
    verdict, _, facts = scan_keras(tmp_path / "w.h5", "hdf5")
    assert verdict == "unknown" and "no model_config" in facts["config_error"]
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    assert scan_keras(tmp_path / "junk.h5", "hdf5")[0] == "unknown"


def test_savedmodel_signatures_and_versions():
    verdict, findings, facts = scan_savedmodel(TF_FIXTURES / "scorer_module")
    assert verdict == "safe" and findings == []  # SaveV2/RestoreV2 of the checkpoint machinery are not reported
    assert facts["tags"] == ["serve"] and facts["tensorflow_version"]
    assert set(facts["signatures"]) == {"serving_default", "embed"}
    assert facts["signatures"]["serving_default"]["inputs"] == {"features": {"dtype": "float32", "shape": [None, 6]}}
    assert set(facts["signatures"]["serving_default"]["outputs"]) == {"logits", "probabilities"}
    recurrent = scan_savedmodel(TF_FIXTURES / "recurrent_savedmodel")[2]
    assert recurrent["signatures"]["serving_default"]["inputs"]["readings"]["shape"] == [None, 12, 3]


def test_savedmodel_damaged_or_missing_graph(tmp_path):
    folder = tmp_path / "sm"
    folder.mkdir()
    assert scan_savedmodel(folder)[0] == "unknown"
    (folder / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\x0f" + b"x" * 10)  # a length past the end
    verdict, _, facts = scan_savedmodel(folder)
    assert verdict == "unknown" and "not a readable SavedModel" in facts["error"]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    size, n = bytearray(), len(payload)
    while True:
        size.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes([number << 3 | 2]) + bytes(size) + payload


def test_savedmodel_nested_past_any_exporter_is_unknown_not_a_crash(tmp_path):
    """A signature output nested 3000 composite tensors deep (hand-built bytes): the scan fails closed."""
    info = _field(1, b"y:0")
    for _ in range(3000):
        info = _field(5, _field(2, info))  # TensorInfo.composite_tensor.components
    signature = _field(2, _field(1, b"out") + _field(2, info))
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(_field(2, _field(5, _field(1, b"serving_default") + _field(2, signature))))
    verdict, _, facts = scan_savedmodel(folder)
    assert verdict == "unknown" and "recursion" in facts["error"]


def test_scanning_never_imports_tensorflow(tmp_path):
    path = write_keras(tmp_path / "m.keras", functional(LAMBDA))
    code = ("import sys\nfrom convert.scan import scan_keras, scan_savedmodel\n"
            f"scan_keras({str(path)!r}, 'keras')\nscan_savedmodel({str(TF_FIXTURES / 'recurrent_savedmodel')!r})\n"
            f"scan_keras({str(TF_FIXTURES / 'two_inputs.h5')!r}, 'keras-h5')\n"
            "import convert.adapters.tensorflow\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]", out.stderr
