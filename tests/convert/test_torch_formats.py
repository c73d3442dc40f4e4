"""The torch adapter's loaders: every way a PyTorch model sits on disk becomes the same runnable model.

Artifacts are written by real torch calls into tmp_path; the model classes come from fixtures/torch/nets.py.
Most tests stop at loading (cheap); conversions use the TorchScript exporter unless the dynamo one matters.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import compat  # noqa: E402
import convert  # noqa: E402
from convert.spec import parse_input_spec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
NETS = ROOT / "fixtures" / "torch" / "nets.py"


def _nets():
    if "modelport_test_nets" in sys.modules:  # one module object for every test file: pickling finds its classes
        return sys.modules["modelport_test_nets"]
    spec = importlib.util.spec_from_file_location("modelport_test_nets", NETS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nets = _nets()


def inputs(*specs):
    return tuple(parse_input_spec(s, i) for i, s in enumerate(specs))


def mlp_hints(**extra):
    return convert.Hints(model_class=f"{NETS}:MLP", model_args={"in_features": 20, "hidden": 32, "classes": 3},
                         **extra)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return nets.MLP(20, 32, 3).eval()


def reference(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


X = np.random.default_rng(0).standard_normal((7, 20)).astype(np.float32)


def test_state_dict_zip_and_legacy_rebuild_the_same_model(tmp_path, mlp):
    for name, kwargs in (("zip.pt", {}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
        path = tmp_path / name
        torch.save(mlp.state_dict(), path, **kwargs)
        art = convert.inspect(path)
        assert art.format == ("torch-zip" if name == "zip.pt" else "torch-legacy")
        loaded = convert.load(art, mlp_hints())
        assert loaded.adapter == "torch" and "MLP" in loaded.facts["estimator"]
        (spec,) = loaded.signature.inputs
        assert (spec.name, spec.dtype, spec.shape) == ("x", "float32", ("batch", 20))  # read from the first Linear
        assert loaded.signature.output_names == ("output",)
        np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))
        assert not loaded.model.training


def test_model_class_as_module_path_with_constructor_args(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "import torch\nclass Wide(torch.nn.Module):\n    def __init__(self, hidden=8):\n        super().__init__()\n"
        "        self.a = torch.nn.Linear(5, hidden)\n"
        "    def forward(self, x):\n        return torch.tanh(self.a(x))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    spec = importlib.util.spec_from_file_location("mynets_writer", tmp_path / "mynets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.Wide(hidden=64).state_dict(), tmp_path / "wide.pt")
    loaded = convert.load(tmp_path / "wide.pt", model_class="mynets:Wide", model_args={"hidden": 64})
    assert loaded.signature.inputs[0].shape == ("batch", 5)
    assert loaded.run({"x": np.ones((3, 5), np.float32)})["output"].shape == (3, 64)


def test_checkpoint_dict_finds_the_state_dict_and_says_which_key(tmp_path, mlp):
    opt = torch.optim.Adam(mlp.parameters())
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 12, "model_state_dict": mlp.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "loss": 0.25}, path)
    loaded = convert.load(path, mlp_hints())
    assert any("'model_state_dict'" in n and "optimizer_state_dict" in n for n in loaded.notes), loaded.notes
    assert "model_state_dict" in loaded.facts["estimator"]
    np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))


@pytest.mark.parametrize("layout", ["state_dict", "model", "nested"])
def test_checkpoint_layouts_and_state_key_override(tmp_path, mlp, layout):
    other = nets.MLP(20, 32, 3).state_dict()  # an EMA copy with different weights
    payload = {"state_dict": {"state_dict": mlp.state_dict(), "ema": other},
               "model": {"model": mlp.state_dict(), "step": 3},
               "nested": {"train": {"weights": mlp.state_dict()}, "ema": {"weights": other}}}[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    if layout == "nested":  # two equally named candidates: ambiguous, --state-key decides
        with pytest.raises(convert.BadInputError, match="several state dicts.*train/weights.*ema/weights"):
            convert.load(path, mlp_hints())
    loaded = convert.load(path, mlp_hints(state_key="train/weights" if layout == "nested" else None))
    np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))
    if layout != "model":
        key = {"state_dict": "ema", "nested": "ema/weights"}[layout]
        chosen = convert.load(path, mlp_hints(state_key=key))
        assert any("--state-key" in n for n in chosen.notes)
        ema = nets.MLP(20, 32, 3)
        ema.load_state_dict(other)
        np.testing.assert_array_equal(chosen.run({"x": X})["output"], reference(ema.eval(), X))


def test_checkpoint_with_numpy_metrics_loads_without_trust(tmp_path, mlp):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": mlp.state_dict(), "best_acc": np.float64(0.93), "step": np.int64(400)}, path)
    loaded = convert.load(path, mlp_hints())  # weights_only=True, with the numpy scalars our scan vouches for
    np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))


def test_dataparallel_and_compile_prefixes_are_stripped_and_reported(tmp_path, mlp):
    path = tmp_path / "dp.pt"
    torch.save(torch.nn.DataParallel(mlp).state_dict(), path)
    loaded = convert.load(path, mlp_hints())
    assert any("'module.'" in n and "DataParallel" in n for n in loaded.notes), loaded.notes
    np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))
    torch.save({"model": {f"_orig_mod.module.{k}": v for k, v in mlp.state_dict().items()}}, path)
    loaded = convert.load(path, mlp_hints())
    assert sum("prefix" in n for n in loaded.notes) == 2


def test_torchscript_archive_needs_no_class(tmp_path, mlp):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(mlp), path)
    assert convert.inspect(path).format == "torchscript"
    loaded = convert.load(path, inputs=inputs("batchx20"))
    assert loaded.signature.input_names == ("x",)  # named after the scripted forward()
    np.testing.assert_allclose(loaded.run({"x": X})["output"], reference(mlp, X), rtol=1e-6)
    result = compat.convert(loaded, tmp_path / "scripted.onnx", rows=200)
    assert result.passed and result.report.conversion["steps"].keys() >= {"export-torchscript"}


def test_pt2_archive_brings_its_own_input_specs_and_vocabulary(tmp_path):
    torch.manual_seed(0)
    model = nets.TokenClassifier(vocab=37, d_model=16, heads=2, layers=1).eval()
    program = torch.export.export(model, (torch.randint(0, 37, (2, 12)),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "tokens.pt2"
    torch.export.save(program, path)
    loaded = convert.load(path)
    (spec,) = loaded.signature.inputs
    assert (spec.name, spec.dtype, spec.shape) == ("tokens", "int64", ("batch", 12))
    assert (spec.domains[0].low, spec.domains[0].high) == (0, 37)  # the embedding's vocabulary
    rows = next(compat.synthesize(loaded.signature, rows=500).batches())["tokens"]
    assert rows.min() >= 0 and rows.max() < 37
    result = compat.convert(loaded, tmp_path / "tokens.onnx", rows=300)
    assert result.passed, result.report.outputs
    graph_input = result.converted.model.graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_pt2_with_a_fixed_batch_is_re_exported_with_a_dynamic_one_when_its_graph_allows(tmp_path, mlp):
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(mlp, (torch.randn(4, 20),)), path)  # torch.export's default: all static
    loaded = convert.load(path)
    assert loaded.signature.inputs[0].shape == ("batch", 20)
    assert any("fixes the batch size at 4" in n and "re-exported with a dynamic batch" in n for n in loaded.notes)
    np.testing.assert_allclose(loaded.run({"x": X})["output"], reference(mlp, X), rtol=1e-6, atol=1e-6)
    assert compat.convert(loaded, tmp_path / "static.onnx", rows=200).passed
    tokens = nets.TokenClassifier(vocab=20, d_model=8, heads=2, layers=1).eval()  # positions from tokens.shape[1]
    torch.export.save(torch.export.export(tokens, (torch.randint(0, 20, (4, 6)),)), path)
    with pytest.raises(convert.UnsupportedModelError) as info:
        convert.load(path)
    assert "fixes the batch size (axis 0: 4)" in info.value.line() and "Dim('batch')" in info.value.line()


def test_whole_pickled_module_loads_only_with_trust(tmp_path, mlp):
    path = tmp_path / "whole.pt"
    torch.save(mlp, path)
    with pytest.raises(convert.UnsafeArtifactError) as info:
        convert.load(path)
    assert "modelport_test_nets.MLP" in info.value.message and "--trust" in info.value.line()
    loaded = convert.load(path, trust=True)
    assert any("whole pickled module" in n for n in loaded.notes)
    np.testing.assert_array_equal(loaded.run({"x": X})["output"], reference(mlp, X))


def test_embedding_vocabulary_bounds_synthesized_tokens_for_state_dicts(tmp_path):
    model = nets.TokenClassifier(vocab=23, d_model=16, heads=2, layers=1)
    path = tmp_path / "tokens.pt"
    torch.save(model.state_dict(), path)
    hints = convert.Hints(model_class=f"{NETS}:TokenClassifier", inputs=inputs("batchx10:int64"),
                          model_args={"vocab": 23, "d_model": 16, "heads": 2, "layers": 1})
    loaded = convert.load(path, hints)
    (spec,) = loaded.signature.inputs
    assert spec.name == "tokens" and spec.domains[0].high == 23


def test_named_and_unnamed_inputs_follow_forward(tmp_path):
    (tmp_path / "two.py").write_text(
        "import torch\nclass Two(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a = torch.nn.Linear(4, 3)\n        self.e = torch.nn.Embedding(9, 3)\n"
        "    def forward(self, features, ids):\n        return {'score': self.a(features) + self.e(ids).mean(1), "
        "'pair': (features.sum(1), ids.sum(1))}\n")
    spec = importlib.util.spec_from_file_location("two_writer", tmp_path / "two.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.Two().state_dict(), tmp_path / "two.pt")
    hints = convert.Hints(model_class=f"{tmp_path / 'two.py'}:Two", inputs=inputs("batchx4", "batchx5:int64"))
    loaded = convert.load(tmp_path / "two.pt", hints)
    assert loaded.signature.input_names == ("features", "ids")
    assert loaded.signature.inputs[1].domains[0].high == 9  # the embedding that reads ids
    assert loaded.signature.output_names == ("score", "pair_0", "pair_1")
    renamed = convert.Hints(model_class=hints.model_class, inputs=inputs("f=batchx4", "batchx5:int64"))
    assert convert.load(tmp_path / "two.pt", renamed).signature.input_names == ("f", "ids")
    result = compat.convert(loaded, tmp_path / "two.onnx", rows=200)
    assert result.passed
    graph = result.converted.model.graph
    assert [i.name for i in graph.input] == ["features", "ids"]
    assert [o.name for o in graph.output] == ["score", "pair_0", "pair_1"]


def test_importing_the_adapter_does_not_import_torch():
    code = ("import sys\nimport convert.adapters.torch, convert.adapters.torch.sig, convert.adapters.torch.export, convert.adapters.torch.load\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False", out.stderr
