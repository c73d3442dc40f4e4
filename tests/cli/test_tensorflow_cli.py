"""``modelport`` on TensorFlow / Keras artifacts, run as users run it: exit codes, a clean terminal (no
TensorFlow start-up chatter, no tracebacks), and nothing written when the answer is no."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cli_run import modelport as run_modelport

ROOT = Path(__file__).resolve().parents[2]
TF_FIXTURES = ROOT / "fixtures" / "tensorflow"
CHATTER = ("I0000", "oneDNN", "cpu_feature_guard", "absl::InitializeLog", "WARNING:", "Traceback", "tf2onnx.")


def modelport(*args, env=None, cwd=None):
    return run_modelport(*args, env=env, cwd=cwd, unset=("TF_CPP_MIN_LOG_LEVEL",))  # what a user's shell has


def assert_quiet(result):
    for word in CHATTER:
        assert word not in result.stdout + result.stderr, f"{word!r} leaked:\n{result.stdout}\n{result.stderr}"


def test_convert_keras_file_with_holdout(tmp_path):
    out = tmp_path / "churn.onnx"
    result = modelport("convert", TF_FIXTURES / "two_inputs.keras", "-o", out,
                       "--inputs", TF_FIXTURES / "two_inputs.holdout.npz")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert_quiet(result)
    assert "PASS" in result.stdout and "profile: float32[batchx4]" in result.stdout
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["profile", "activity"]
    assert [o.name for o in sess.get_outputs()] == ["churn_risk", "segment"]
    risk, segment = sess.run(None, {"profile": np.zeros((5, 4), np.float32), "activity": np.ones((5, 8, 3), np.float32)})
    assert risk.shape == (5, 1) and segment.shape == (5, 3)


def test_convert_savedmodel_signature_choice(tmp_path):
    out = tmp_path / "embed.onnx"
    result = modelport("convert", TF_FIXTURES / "scorer_module", "--signature", "embed", "-o", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_quiet(result)
    assert "signature 'embed'" in result.stdout and "-> hidden" in result.stdout
    assert [o.name for o in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_outputs()] == \
        ["hidden"]
    missing = modelport("convert", TF_FIXTURES / "scorer_module", "--signature", "nope", "-o", tmp_path / "x.onnx")
    assert missing.returncode == 2 and "no signature 'nope'; it has: embed, serving_default" in missing.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_bad_inputs_exit_2_with_the_reason_and_write_nothing(tmp_path):
    import h5py

    no_vars = tmp_path / "no_vars"
    shutil.copytree(TF_FIXTURES / "scorer_module", no_vars)
    shutil.rmtree(no_vars / "variables")
    no_graph = tmp_path / "no_graph"
    shutil.copytree(TF_FIXTURES / "scorer_module", no_graph)
    (no_graph / "saved_model.pb").unlink()
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f["dense/kernel"] = np.zeros((3, 2))
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(TF_FIXTURES / "two_inputs.keras") as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"{not json" if item.filename == "config.json" else src.read(item))
    cases = {no_vars: "no variables/ folder", no_graph: "saved_model.pb",
             tmp_path / "weights.h5": "no model_config attribute", broken: "config.json is not valid JSON"}
    before = sorted(p.name for p in tmp_path.iterdir())
    for path, reason in cases.items():
        result = modelport("convert", path)
        assert result.returncode == 2, (path, result.stderr)
        assert reason in result.stderr and str(path) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_lambda_layer_refused_and_its_code_never_runs(tmp_path):
    from convert.adapters.tensorflow import env as _tf_env

    keras, _ = _tf_env.keras()
    marker = tmp_path / "pwned.txt"
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t + 1)[1]")  # noqa: S307
    inp = keras.Input((4,), name="x")
    with _tf_env.quiet():
        keras.Model(inp, keras.layers.Lambda(payload, name="payload")(inp)).save(tmp_path / "lambda.keras")
    marker.unlink()
    result = modelport("convert", tmp_path / "lambda.keras")
    assert result.returncode == 1
    assert "Lambda layer 'payload'" in result.stderr and "--trust" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "lambda.onnx").exists()


def test_tf2onnx_that_cannot_import_exits_3_naming_versions(tmp_path):
    shadow = tmp_path / "shadow" / "tf2onnx"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("import numpy\nnumpy.cast  # removed in NumPy 2, as old tf2onnx uses it\n")
    result = modelport("convert", TF_FIXTURES / "two_inputs.keras", "-o", tmp_path / "m.onnx",
                       env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"})
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip()
    assert "tf2onnx" in line and "TensorFlow 2." in line and "NumPy 2." in line and "AttributeError" in line
    assert len(line.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_inspect_lists_savedmodel_signatures_without_importing_tensorflow():
    result = modelport("inspect", TF_FIXTURES / "scorer_module")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "embed" in out and "serving_default" in out
    assert "features float32[batchx6]" in out
    assert "logits float32[batchx3], probabilities float32[batchx3]" in out
    assert "hidden float32[batchx8]" in out
    timing = subprocess.run([sys.executable, "-X", "importtime", "-m", "compat.cli", "inspect",
                             str(TF_FIXTURES / "scorer_module")], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert timing.returncode == 0
    imported = {line.split("|")[-1].strip() for line in timing.stderr.splitlines() if "|" in line}
    assert "tensorflow" not in imported and "keras" not in imported
