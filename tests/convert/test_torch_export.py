"""torch -> ONNX: the exporters, their fallback, dynamic axes checked at sizes never seen at export (inside
the graph too: a frozen axis is a failed export, never patched over), output names, and the standard torch.nn
building blocks in every file format (slow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import compat  # noqa: E402
import convert  # noqa: E402
from convert.adapters.torch.sig import example_sizes  # noqa: E402
from convert.spec import Signature, TensorSpec, parse_input_spec  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]  # torch.export's notes on LSTM weights

ROOT = Path(__file__).resolve().parents[2]
NETS = ROOT / "fixtures" / "torch" / "nets.py"
CHECK_ROWS = 300


def _import(path: Path, name: str):
    if name in sys.modules:  # one module object for every test file: pickling finds its classes
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


nets = _import(NETS, "modelport_test_nets")


def inputs(*specs):
    return tuple(parse_input_spec(s, i) for i, s in enumerate(specs))


CUSTOM = '''
import numpy as np
import torch


class NumpyClip(torch.autograd.Function):
    """A custom op computed in numpy, with an ONNX symbolic for the TorchScript exporter (dynamo cannot trace it)."""

    @staticmethod
    def forward(ctx, x):
        return torch.from_numpy(np.clip(x.detach().numpy(), -0.5, 0.5))

    @staticmethod
    def symbolic(g, x):
        low = g.op("Constant", value_t=torch.tensor(-0.5))
        high = g.op("Constant", value_t=torch.tensor(0.5))
        return g.op("Clip", x, low, high)


class Clipped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 4)

    def forward(self, x, unused_mask=None):
        return NumpyClip.apply(self.lin(x))


class Differences(torch.nn.Module):
    """torch.diff: the TorchScript exporter has no ONNX symbolic for it, the dynamo exporter decomposes it."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 5)

    def forward(self, x):
        return torch.diff(self.lin(x), dim=-1)


class TokenTagger(torch.nn.Module):
    """The issue's LSTM: int64 tokens of any length, one tag vector per token."""

    def __init__(self, vocab=100, dim=16, hidden=16, tags=5):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.lstm = torch.nn.LSTM(dim, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, tags)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


class BatchBaked(torch.nn.Module):
    """Reads the batch size as a Python int: tracing bakes the example's size into the graph."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 4)

    def forward(self, x):
        return self.lin(x) * int(x.shape[0])
'''


@pytest.fixture
def custom(tmp_path):
    path = tmp_path / "custom_nets.py"
    path.write_text(CUSTOM)
    return path, _import(path, f"custom_nets_{tmp_path.name}")


def test_the_torchscript_exporter_comes_first_and_dynamo_cannot_take_everything(tmp_path, custom):
    path, module = custom
    torch.save(module.Clipped().state_dict(), tmp_path / "clip.pt")
    hints = convert.Hints(model_class=f"{path}:Clipped", inputs=inputs("batchx6"))
    loaded = convert.load(tmp_path / "clip.pt", hints)
    assert convert.remedies(loaded) == (None, "dynamo")
    result = compat.convert(loaded, tmp_path / "clip.onnx", rows=CHECK_ROWS)
    assert result.passed
    assert "exported with the torchscript exporter in" in " ".join(result.report.conversion["notes"])
    assert set(result.report.conversion["steps"]) >= {"export-torchscript"}
    assert "export-dynamo" not in result.report.conversion["steps"]  # never paid for when not needed
    forced = convert.load(tmp_path / "clip.pt", convert.Hints(**{**vars(hints), "exporter": "dynamo"}))
    assert convert.remedies(forced) == (None,)
    with pytest.raises(convert.UnsupportedModelError, match="no exporter converts Clipped.*dynamo: "):
        convert.to_onnx(forced)


def test_torchscript_failure_falls_back_to_dynamo_and_says_so(tmp_path, custom):
    path, module = custom
    torch.save(module.Differences().state_dict(), tmp_path / "diff.pt")
    loaded = convert.load(tmp_path / "diff.pt", convert.Hints(model_class=f"{path}:Differences",
                                                              inputs=inputs("batchx6")))
    result = compat.convert(loaded, tmp_path / "diff.onnx", rows=CHECK_ROWS)
    assert result.passed, result.attempts
    notes = result.report.conversion["notes"]
    assert any(n.startswith("torchscript exporter failed (") and "aten::diff" in n
               and n.endswith("used the dynamo exporter") for n in notes), notes
    assert {"export-dynamo", "export-torchscript"} <= set(result.report.conversion["steps"])


def _run_plain(path_or_model, feeds):
    """Run a graph in onnxruntime as a user does, its warnings (C++ log lines on stderr) collected."""
    import onnxruntime as ort

    from convert.adapters.torch.env import captured_stderr

    opts = ort.SessionOptions()
    opts.log_severity_level = 2  # warnings, onnxruntime's default
    data = path_or_model if isinstance(path_or_model, (str, Path)) else path_or_model.SerializeToString()
    with captured_stderr() as log:
        session = ort.InferenceSession(str(data) if isinstance(data, Path) else data, opts,
                                       providers=["CPUExecutionProvider"])
        outputs = session.run(None, feeds)
    return outputs, [line for line in log if "[W:" in line]


def test_an_lstm_over_tokens_never_ships_a_graph_frozen_at_the_example_length(tmp_path, custom):
    """The issue's case: the dynamo exporter computes the right values at other lengths but declares shapes
    frozen at the example's length (onnxruntime warns on every call). That export is a failed one, never
    patched; the conversion written runs silently at every length and agrees with torch."""
    path, module = custom
    torch.manual_seed(0)
    model = module.TokenTagger().eval()
    torch.save(model.state_dict(), tmp_path / "tagger.pt")
    hints = convert.Hints(model_class=f"{path}:TokenTagger", inputs=inputs("tokens=batchxseq:int64"))
    forced = convert.load(tmp_path / "tagger.pt", convert.Hints(**{**vars(hints), "exporter": "dynamo"}))
    with pytest.raises(convert.UnsupportedModelError, match=r"dynamo: .*(onnxruntime warns at other input sizes: "
                                                            r"Expected shape|fixes .* where it is)"):
        convert.to_onnx(forced)

    loaded = convert.load(tmp_path / "tagger.pt", hints)
    out = tmp_path / "tagger.onnx"
    result = compat.convert(loaded, out, rows=CHECK_ROWS)
    assert result.passed, result.attempts
    for batch, seq in ((1, 3), (4, 9), (3, 17)):
        tokens = np.random.default_rng(seq).integers(0, 100, (batch, seq))
        (got,), warned = _run_plain(out, {"tokens": tokens})
        assert warned == [], warned
        with torch.no_grad():
            want = model(torch.as_tensor(tokens)).numpy()
        assert got.shape == (batch, seq, 5)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_frozen_axis_inside_the_graph_is_a_failed_export_even_when_the_values_are_right():
    """A graph that computes the right values at every length but declares an intermediate tensor with the
    example's length (what the dynamo exporter did to the LSTM): found by running it at another length."""
    from onnx import TensorProto, helper

    from convert.adapters.torch import export

    def graph(middle_dims):
        nodes = [helper.make_node("Relu", ["x"], ["hidden"]), helper.make_node("Neg", ["hidden"], ["y"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
                              value_info=[helper.make_tensor_value_info("hidden", TensorProto.FLOAT, middle_dims)])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    sig = Signature((TensorSpec("x", "float32", ("batch", "seq", 4)),))
    at_other_size = {"x": np.random.default_rng(0).normal(size=(3, 9, 4)).astype(np.float32)}
    frozen = graph(["batch", 5, 4])
    # the values are right: only the declaration is frozen (onnxruntime runs it, warning)
    (values,), warned = _run_plain(frozen, at_other_size)
    np.testing.assert_array_equal(values, -np.maximum(at_other_size["x"], 0))
    assert any("VerifyOutputSizes" in w and "{-1,5,4}" in w for w in warned), warned
    problem = export.runs_at_other_sizes(frozen, sig, at_other_size)
    assert problem and ("Expected shape from model of {-1,5,4}" in problem or "hidden[1] as 5" in problem), problem
    # a symbolic dim named after the user's axis must hold that axis' size too
    assert "hidden[1] as 'batch' (3) where it is 9" in (
        export.runs_at_other_sizes(graph(["batch", "batch", 4]), sig, at_other_size) or "")
    assert export.runs_at_other_sizes(graph(["batch", "seq", 4]), sig, at_other_size) is None
    assert export.runs_at_other_sizes(graph(["batch", None, 4]), sig, at_other_size) is None


def test_unused_inputs_stay_in_the_graph(tmp_path, custom):
    path, module = custom
    torch.save(module.Clipped().state_dict(), tmp_path / "clip.pt")
    hints = convert.Hints(model_class=f"{path}:Clipped", inputs=inputs("batchx6", "batchx6"), exporter="torchscript")
    loaded = convert.load(tmp_path / "clip.pt", hints)
    converted = convert.to_onnx(loaded)
    assert [i.name for i in converted.model.graph.input] == ["x", "unused_mask"]
    assert any("unused_mask is not used" in n for n in converted.notes)


def test_a_batch_size_baked_into_the_graph_is_caught_and_nothing_written(tmp_path, custom):
    path, module = custom
    torch.save(module.BatchBaked().state_dict(), tmp_path / "baked.pt")
    loaded = convert.load(tmp_path / "baked.pt", convert.Hints(model_class=f"{path}:BatchBaked",
                                                               inputs=inputs("batchx6")))
    out = tmp_path / "baked.onnx"
    result = compat.convert(loaded, out, rows=CHECK_ROWS)
    assert not result.passed and not out.exists()
    # the traced graph runs but multiplies by the example's batch size: the check fails; the dynamo remedy
    # specializes the batch axis and is refused
    assert [(a.remedy, a.verdict) for a in result.attempts] == [(None, "fail"), ("dynamo", "unavailable")]
    assert "froze dynamic axis 'batch' of x at 2" in result.attempts[1].reason


def test_export_example_sizes_are_never_the_checks():
    sig = Signature((TensorSpec("a", "float32", ("batch", "seq", 5)), TensorSpec("b", "int64", ("batch", "width")),
                     TensorSpec("c", "float32", ("time", 6))))
    sizes = example_sizes(sig)
    assert sizes["batch"] == 2 and sizes["time"] == 3  # axis 0: small, and never the 1000 rows the check runs
    assert 8 not in sizes.values() and len(set(sizes.values())) == len(sizes)  # compat synthesizes other dims as 8
    assert not {5, 6} & set(sizes.values())  # never equal to a fixed dim (the tracer would merge them)


def test_opset_below_what_dynamo_writes_uses_the_torchscript_exporter(tmp_path):
    torch.save(nets.MLP().state_dict(), tmp_path / "mlp.pt")
    loaded = convert.load(tmp_path / "mlp.pt", model_class=f"{NETS}:MLP")
    result = compat.convert(loaded, tmp_path / "mlp.onnx", opset=13, rows=CHECK_ROWS)
    assert result.passed and result.report.conversion["opset"] == 13
    assert any("opset 13 is below" in n for n in result.report.conversion["notes"])


def test_export_time_is_reported_per_step(tmp_path):
    torch.save(nets.CNN().state_dict(), tmp_path / "cnn.pt")
    loaded = convert.load(tmp_path / "cnn.pt", model_class=f"{NETS}:CNN", inputs=inputs("batchx3x16x16"))
    converted = convert.to_onnx(loaded)
    steps, notes = converted.steps, converted.notes
    assert steps["export-torchscript"] > 0 and "finalize" in steps
    assert any(n.startswith("exported with the torchscript exporter in ") for n in notes)
    dynamo = convert.to_onnx(loaded, remedy="dynamo")
    assert dynamo.steps["export-dynamo"] > 0 and "export-torchscript" not in dynamo.steps
    assert any(n.startswith("exported with the dynamo exporter in ") for n in dynamo.notes)


def test_recurrent_outputs_are_named_and_their_dims_dynamic(tmp_path):
    torch.save(nets.SequenceTagger().state_dict(), tmp_path / "tagger.pt")
    loaded = convert.load(tmp_path / "tagger.pt", model_class=f"{NETS}:SequenceTagger",
                          inputs=inputs("batchxseqx8"), exporter="torchscript")
    assert loaded.signature.output_names == ("tags", "state")
    result = compat.convert(loaded, tmp_path / "tagger.onnx", rows=CHECK_ROWS)
    assert result.passed
    graph = result.converted.model.graph
    assert [o.name for o in graph.output] == ["tags", "state"]
    dims = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and isinstance(dims[1], str) and dims[2] == 5


# ---------------------------------------------------------------------------------------------
# the standard building blocks, in every format (slow: two dynamo exports per block)

FORMATS = ("state", "legacy", "checkpoint", "dataparallel", "whole")
# TorchScript archives go through the TorchScript exporter only, which cannot export scripted attention
# (aten::is_autocast_enabled and string-typed control flow in MultiheadAttention's fast-path checks)
SCRIPT_EXPORTER_GAPS = {"attention", "transformer"}
# torch.export specializes a sequence-first LSTM's leading (time) axis to the example's length, and the check
# synthesizes rows along axis 0: such a .pt2 cannot be checked on other sizes
PT2_GAPS = {"lstm_seq_first"}
# the dynamo exporter's recurrent graphs compute at other lengths but declare shapes frozen at the example's
# (onnxruntime warns on every call): refused when forced; the default route takes the TorchScript exporter
DYNAMO_GAPS = {"lstm", "gru", "lstm_seq_first"}
# the TorchScript exporter's attention graphs do not run at other sizes: the default route falls back to dynamo
TRACE_GAPS = {"attention", "transformer"}


def _save_all(model, kind, args, tmp_path) -> dict[str, Path]:
    files = {f: tmp_path / f"{kind}.{f}.pt" for f in FORMATS}
    torch.save(model.state_dict(), files["state"])
    torch.save(model.state_dict(), files["legacy"], _use_new_zipfile_serialization=False)
    torch.save({"model_state_dict": model.state_dict(), "epoch": 2,
                "optimizer_state_dict": torch.optim.SGD(model.parameters(), lr=0.1).state_dict()}, files["checkpoint"])
    torch.save(torch.nn.DataParallel(model).state_dict(), files["dataparallel"])
    torch.save(model, files["whole"])
    files["torchscript"] = tmp_path / f"{kind}.script.pt"
    torch.jit.save(torch.jit.script(model), files["torchscript"])
    specs = inputs(*nets.BLOCKS[kind][1])
    dims = tuple({axis: torch.export.Dim("batch") if d == "batch" else torch.export.Dim.AUTO
                  for axis, d in enumerate(s.shape) if isinstance(d, str)} for s in specs)
    files["pt2"] = tmp_path / f"{kind}.pt2"
    torch.export.save(torch.export.export(model, args, dynamic_shapes=dims), files["pt2"])
    return files


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(nets.BLOCKS))
def test_building_block_converts_from_every_format(tmp_path, kind):
    torch.manual_seed(0)
    model = nets.Block(kind)
    specs = inputs(*nets.BLOCKS[kind][1])
    args = tuple(torch.randint(0, 6, [2 if a == 0 else 5 if isinstance(d, str) else d for a, d in enumerate(s.shape)])
                 if s.dtype == "int64" else torch.randn([2 if a == 0 else 5 if isinstance(d, str) else d
                                                        for a, d in enumerate(s.shape)]) for s in specs)
    nets.trained_statistics(model, *args)
    files = _save_all(model, kind, args, tmp_path)
    hints = dict(model_class=f"{NETS}:Block", model_args={"kind": kind}, inputs=specs)
    probe = next(compat.synthesize(convert.load(files["state"], **hints).signature, rows=7, seed=3).batches())
    expected = None
    for fmt in FORMATS:  # five files, one model: the same outputs, bit for bit
        loaded = convert.load(files[fmt], **(dict(trust=True, inputs=specs) if fmt == "whole" else hints))
        got = loaded.run(probe)
        expected = expected or got
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{kind} {fmt} {name}")
    routes = {"state dict": (files["state"], hints),
              "state dict (dynamo)": (files["state"], {**hints, "exporter": "dynamo"}),
              "pt2": (files["pt2"], {}), "torchscript": (files["torchscript"], {"inputs": specs})}
    if kind in PT2_GAPS:
        del routes["pt2"]
    for route, (path, route_hints) in routes.items():
        loaded = convert.load(path, **route_hints)
        if route == "torchscript" and kind in SCRIPT_EXPORTER_GAPS:
            with pytest.raises(convert.UnsupportedModelError, match="aten::is_autocast_enabled|torch.export .pt2"):
                compat.convert(loaded, tmp_path / f"{kind}.onnx", rows=CHECK_ROWS)
            continue
        if route == "state dict (dynamo)" and kind in DYNAMO_GAPS:
            frozen = "dynamo: .*(Expected shape|declares|froze dynamic axis)"
            with pytest.raises(convert.UnsupportedModelError, match=frozen):
                compat.convert(loaded, tmp_path / f"{kind}.onnx", rows=CHECK_ROWS)
            continue
        result = compat.convert(loaded, tmp_path / f"{kind}.onnx", rows=CHECK_ROWS)
        assert result.passed, (route, result.attempts, [(o.name, o.max_abs_error) for o in result.report.outputs])
        assert result.report.inputs["rows"] == CHECK_ROWS  # a batch of 300: never the export example's 2
        if route == "state dict":  # the cheaper exporter first; the other only where the first fails
            used = "dynamo" if kind in TRACE_GAPS else "torchscript"
            assert f"exported with the {used} exporter" in " ".join(result.report.conversion["notes"])
