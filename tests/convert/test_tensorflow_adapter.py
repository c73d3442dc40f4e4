"""The TensorFlow/Keras adapter: each format, names kept from the model, a dynamic batch, the safety gate,
and the bad inputs that must stop before anything is written. Models are real Keras / tf.Module objects
saved to tmp folders (TensorFlow is imported once per module)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import compat
import convert
from convert.errors import BadInputError, UnsafeArtifactError, UnsupportedModelError

TF_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tensorflow"


@pytest.fixture(scope="module")
def tf():
    from convert.adapters.tensorflow import env as _tf_env

    return _tf_env.tensorflow()


@pytest.fixture(scope="module")
def keras(tf):
    from convert.adapters.tensorflow import env as _tf_env

    return _tf_env.keras()[0]


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    """Small models saved once for the whole module: name -> path."""
    from keras import layers

    from convert.adapters.tensorflow import env as _tf_env

    root = tmp_path_factory.mktemp("tf_models")
    paths = {}
    with _tf_env.quiet():
        keras.utils.set_random_seed(0)
        seq = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="relu"), layers.Dense(2)])
        paths["seq.keras"] = root / "seq.keras"
        seq.save(paths["seq.keras"])
        # a dict-structured model: called with its own keys (one TensorFlow would not accept as a tensor name),
        # outputs named by its dict keys
        a, b = keras.Input((2,), name="a_tensor"), keras.Input((3,), name="b_tensor")
        joined = layers.Dense(2)(layers.Concatenate()([a, b]))
        dict_model = keras.Model({"zeta (z)": a, "alpha": b}, {"first": joined, "second": layers.Dense(1)(joined)})
        paths["dict.keras"] = root / "dict.keras"
        dict_model.save(paths["dict.keras"])
        # images of any size: four poolings need more than the default 8 pixels
        image = keras.Input((None, None, 3), name="image")
        h = image
        for _ in range(4):
            h = layers.MaxPooling2D()(layers.Conv2D(4, 3, padding="same", activation="relu")(h))
        fcn = keras.Model(image, layers.Dense(2, name="logits")(layers.GlobalAveragePooling2D()(h)))
        paths["fcn.keras"] = root / "fcn.keras"
        fcn.save(paths["fcn.keras"])
        # tokens through an Embedding: the input's domain is the vocabulary
        tokens = keras.Input((7,), name="tokens")
        emb = keras.Model(tokens, layers.Dense(1, name="score")(layers.LSTM(4)(layers.Embedding(30, 4)(tokens))))
        paths["emb.keras"] = root / "emb.keras"
        emb.save(paths["emb.keras"])
    return paths


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def graph_dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("name", ["two_inputs.keras", "two_inputs.h5"])
def test_keras_files_keep_input_and_output_names(name, tmp_path):
    loaded = convert.load(TF_FIXTURES / name)
    assert loaded.adapter == "tensorflow"
    assert [(s.name, s.dtype, s.shape) for s in loaded.signature.inputs] == [
        ("profile", "float32", ("batch", 4)), ("activity", "float32", ("batch", 8, 3))]
    assert loaded.signature.output_names == ("churn_risk", "segment")
    converted = convert.to_onnx(loaded)
    sess = session(converted.model)
    assert [i.name for i in sess.get_inputs()] == ["profile", "activity"]
    assert [o.name for o in sess.get_outputs()] == ["churn_risk", "segment"]
    assert graph_dims(converted.model.graph.input[1]) == ["batch", 8, 3]
    assert set(converted.steps) >= {"tf2onnx", "finish"}
    holdout = dict(np.load(TF_FIXTURES / "two_inputs.holdout.npz"))
    report = compat.check(loaded, converted.model, inputs=holdout, rows=300, batch_size=37)
    assert report.passed, [(o.name, o.max_abs_error) for o in report.outputs]
    assert report.inputs["rows"] == 364


def test_keras_saved_with_is_read_from_the_file():
    import json

    import h5py

    with h5py.File(TF_FIXTURES / "two_inputs.h5") as f:
        written = {"keras": f.attrs["keras_version"], "backend": f.attrs["backend"]}
    assert convert.load(TF_FIXTURES / "two_inputs.h5").facts["saved_with"] == written
    with zipfile.ZipFile(TF_FIXTURES / "two_inputs.keras") as zf:
        version = json.loads(zf.read("metadata.json"))["keras_version"]
    assert convert.load(TF_FIXTURES / "two_inputs.keras").facts["saved_with"] == {"keras": version}


def test_savedmodel_default_signature_and_signature_choice():
    path = TF_FIXTURES / "scorer_module"
    loaded = convert.load(path)
    assert loaded.facts["signature"] == "serving_default"
    assert set(loaded.facts["signatures"]) == {"serving_default", "embed"}
    assert loaded.signature.input_names == ("features",) and loaded.signature.output_names == ("logits", "probabilities")
    assert loaded.facts["saved_with"]["tensorflow"]
    result = compat.convert(loaded, write=False, inputs=dict(np.load(TF_FIXTURES / "scorer_module.holdout.npz")))
    assert result.passed
    embed = convert.load(path, signature_name="embed")
    assert embed.signature.output_names == ("hidden",)
    assert compat.convert(embed, write=False, rows=50).passed
    with pytest.raises(BadInputError, match="no signature 'nope'; it has: embed, serving_default"):
        convert.load(path, signature_name="nope")


def test_recurrent_savedmodel_agrees_on_an_unseen_batch_size():
    loaded = convert.load(TF_FIXTURES / "recurrent_savedmodel")
    assert loaded.signature.inputs[0].shape == ("batch", 12, 3)
    converted = convert.to_onnx(loaded)
    assert graph_dims(converted.model.graph.input[0]) == ["batch", 12, 3]
    assert graph_dims(converted.model.graph.output[0])[0] == "batch"
    report = compat.check(loaded, converted.model, rows=53, batch_size=13)
    assert report.passed


def test_sequential_and_dict_structured_models(built):
    seq = convert.load(built["seq.keras"])
    assert seq.signature.input_names == ("input_layer",) and seq.signature.output_names == ("dense_1",)
    assert compat.convert(seq, write=False, rows=40).passed
    loaded = convert.load(built["dict.keras"])
    assert loaded.signature.input_names == ("zeta (z)", "alpha")
    assert loaded.signature.output_names == ("first", "second")
    converted = convert.to_onnx(loaded)
    assert [i.name for i in converted.model.graph.input] == ["zeta (z)", "alpha"]
    assert [o.name for o in converted.model.graph.output] == ["first", "second"]
    assert compat.check(loaded, converted.model, rows=40).passed


def test_savedmodel_signature_inputs_are_matched_by_name_not_order(tf, tmp_path):
    class TwoArgs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="zeta"),
                                      tf.TensorSpec([None, 2], tf.float32, name="alpha")])
        def f(self, zeta, alpha):
            return {"out": tf.reduce_sum(zeta, 1, keepdims=True) * 10 + tf.reduce_sum(alpha, 1, keepdims=True),
                    "neg": -alpha}

    module = TwoArgs()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.f)
    loaded = convert.load(tmp_path / "sm")
    assert {s.name: s.shape for s in loaded.signature.inputs} == {"zeta": ("batch", 5), "alpha": ("batch", 2)}
    assert loaded.signature.outputs[1].name == "out"
    result = compat.convert(loaded, tmp_path / "sm.onnx", rows=30)
    assert result.passed and result.output.exists()


def test_embedding_inputs_are_synthesized_as_token_ids(built):
    loaded = convert.load(built["emb.keras"])
    (domain,) = loaded.signature.inputs[0].domains
    assert domain.categories == tuple(range(30))
    assert compat.convert(loaded, write=False, rows=64, batch_size=17).passed


def test_input_hints_fix_undefined_dims(built):
    loaded = convert.load(built["fcn.keras"])
    assert loaded.signature.inputs[0].shape == ("batch", "image_dim1", "image_dim2", 3)
    hinted = convert.load(built["fcn.keras"], inputs=(convert.spec.parse_input_spec("image=batchx32x32x3"),))
    assert hinted.signature.inputs[0].shape == ("batch", 32, 32, 3)
    converted = convert.to_onnx(hinted)
    assert graph_dims(converted.model.graph.input[0]) == ["batch", 32, 32, 3]
    assert compat.check(hinted, converted.model, rows=20, batch_size=6).passed
    unnamed = convert.load(built["fcn.keras"], inputs=(convert.spec.parse_input_spec("batchx16x16x3"),))
    assert unnamed.signature.inputs[0].shape == ("batch", 16, 16, 3)
    with pytest.raises(BadInputError, match="no input of that name"):
        convert.load(built["fcn.keras"], inputs=(convert.spec.parse_input_spec("pixels=batchx16x16x3"),))
    with pytest.raises(BadInputError, match="axis 3 is fixed to 3"):
        convert.load(built["fcn.keras"], inputs=(convert.spec.parse_input_spec("image=batchx16x16x4"),))


def test_opset_is_chosen_and_bounded(built):
    from convert.onnxfile import opset_of

    loaded = convert.load(built["seq.keras"])
    assert opset_of(convert.to_onnx(loaded).model) == 18
    assert opset_of(convert.to_onnx(loaded, opset=13).model) == 13
    with pytest.raises(UnsupportedModelError, match="opset 21 is outside"):
        convert.to_onnx(loaded, opset=21)


def test_ops_tf2onnx_cannot_convert_are_all_named(tf, tmp_path):
    class Special(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def f(self, x):
            return {"y": tf.math.lgamma(x * x + 1) + tf.math.digamma(x * x + 1)}

    module = Special()
    tf.saved_model.save(module, str(tmp_path / "special"), signatures=module.f)
    with pytest.raises(UnsupportedModelError, match="op\\(s\\) Digamma, Lgamma"):
        convert.to_onnx(convert.load(tmp_path / "special"))


# ------------------------------------------------------------------------------------------- safety


def lambda_model(keras, marker):
    """A model whose Lambda layer would create ``marker`` when its bytecode runs (the path is a constant of
    the code object: Keras cannot restore lambda defaults)."""
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t * 2)[1]")  # noqa: S307
    inp = keras.Input((3,), name="x")
    return keras.Model(inp, keras.layers.Lambda(payload, name="sneaky")(inp))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_without_trust_and_never_runs(keras, tmp_path, suffix):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / f"lambda{suffix}"
    lambda_model(keras, marker).save(path)
    marker.unlink()  # building the model ran the lambda once, in this test
    with pytest.raises(UnsafeArtifactError, match="Lambda layer 'sneaky'") as info:
        convert.load(path)
    assert info.value.exit_code == 1 and any("sneaky" in f.where for f in info.value.findings)
    assert not marker.exists()
    trusted = convert.load(path, trust=True)  # the payload is live: --trust runs it
    trusted.run({"x": np.ones((2, 3), np.float32)})
    assert marker.exists()
    assert any("safe_mode=False" in n for n in trusted.notes)


def test_custom_objects_are_refused_without_trust(keras, tmp_path):
    @keras.saving.register_keras_serializable(package="acme")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((3,), name="x")
    keras.Model(inp, Doubler(name="doubler")(inp)).save(tmp_path / "custom.keras")
    with pytest.raises(UnsafeArtifactError, match="custom object acme>Doubler"):
        convert.load(tmp_path / "custom.keras")
    loaded = convert.load(tmp_path / "custom.keras", trust=True)  # registered in this process: Keras finds it
    assert compat.convert(loaded, write=False, rows=10).passed


def test_savedmodel_writing_files_is_refused(tf, tmp_path):
    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def f(self, x):
            tf.io.write_file(str(tmp_path / "written.txt"), tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x + 1}

    module = Writer()
    tf.saved_model.save(module, str(tmp_path / "writer"), signatures=module.f)
    with pytest.raises(UnsafeArtifactError, match="WriteFile writes files"):
        convert.load(tmp_path / "writer")
    assert not (tmp_path / "written.txt").exists()


# --------------------------------------------------------------------------------------- bad inputs


def test_savedmodel_missing_variables_or_graph(tmp_path):
    broken = tmp_path / "no_vars"
    shutil.copytree(TF_FIXTURES / "scorer_module", broken)
    shutil.rmtree(broken / "variables")
    with pytest.raises(BadInputError, match="no variables/ folder") as info:
        convert.load(broken)
    assert info.value.exit_code == 2
    (broken / "variables").mkdir()
    with pytest.raises(BadInputError, match="variables.index is missing"):
        convert.load(broken)
    no_graph = tmp_path / "no_graph"
    shutil.copytree(TF_FIXTURES / "scorer_module", no_graph)
    (no_graph / "saved_model.pb").unlink()
    with pytest.raises(BadInputError, match="saved_model.pb"):
        convert.load(no_graph)


def test_h5_that_is_not_a_keras_model(tmp_path):
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.arange(10)
    with pytest.raises(BadInputError, match="not a loadable Keras model: no model_config") as info:
        convert.load(tmp_path / "data.h5")
    assert info.value.exit_code == 2


def test_keras_zip_with_broken_config(tmp_path):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(TF_FIXTURES / "two_inputs.keras") as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 2] if item.filename == "config.json" else data)
    with pytest.raises(BadInputError, match="config.json is not valid JSON") as info:
        convert.load(broken)
    assert info.value.exit_code == 2


def test_signature_option_is_for_savedmodels_only():
    with pytest.raises(BadInputError, match="--signature applies to SavedModel"):
        convert.load(TF_FIXTURES / "two_inputs.keras", signature_name="serving_default")
