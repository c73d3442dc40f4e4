"""`modelport` on PyTorch files, run the way users run it: a subprocess, exit codes, stdout/stderr."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from cli_run import modelport as run_modelport

ROOT = Path(__file__).resolve().parents[2]
TORCH = ROOT / "fixtures" / "torch"
NETS = TORCH / "nets.py"


def modelport(*args, cwd=None):
    return run_modelport(*args, cwd=cwd or ROOT)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def _nets():
    spec = importlib.util.spec_from_file_location("modelport_cli_nets", NETS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_state_dict_with_class_args_and_input_converts_and_reports_export_time(tmp_path):
    out, report = tmp_path / "mlp.onnx", tmp_path / "report.json"
    result = modelport("convert", TORCH / "mlp_state.pt", "--model-class", "fixtures/torch/nets.py:MLP",
                       "--model-args", '{"in_features": 20, "hidden": 32, "classes": 3}', "--input", "batchx20",
                       "-o", out, "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MLP from a state dict" in flat(result.stdout) and "x: float32[batchx20]" in flat(result.stdout)
    assert "PASS" in flat(result.stdout) and f"wrote {out}" in flat(result.stdout)
    assert "exported with the torchscript exporter in" in flat(result.stdout)
    data = json.loads(report.read_text())
    assert data["verdict"] == "pass" and data["conversion"]["steps"]["export-torchscript"] > 0
    assert data["inputs"]["rows"] == 1000 and "torch" in data["environment"]


PLAIN_RUN = """
import sys, numpy as np, onnxruntime as ort
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])  # warnings on, as by default
for batch, seq in ((1, 3), (4, 9), (2, 21)):
    outs = sess.run(None, {"sequence": np.zeros((batch, seq, 8), np.float32)})
    print(batch, seq, [o.shape for o in outs])
"""


def test_lstm_checkpoint_written_graph_runs_silently_at_every_length(tmp_path):
    """The fixture's LSTM through the default route: the graph written runs in plain onnxruntime at other
    sequence lengths without a shape warning; forcing the dynamo exporter, whose graph freezes the example's
    length, is refused with the reason (exit 3) and nothing is written."""
    out = tmp_path / "lstm.onnx"
    args = ("--model-class", "fixtures/torch/nets.py:SequenceTagger", "--input", "batchxseqx8")
    result = modelport("convert", TORCH / "lstm_checkpoint.pt", *args, "-o", out)
    assert result.returncode == 0, result.stdout + result.stderr
    import subprocess

    plain = subprocess.run([sys.executable, "-c", PLAIN_RUN, str(out)], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == "", plain.stderr  # no "VerifyOutputSizes ... Expected shape" on any call
    assert "4 9 [(4, 9, 5), (4, 4, 16)]" in plain.stdout, plain.stdout
    forced = modelport("convert", TORCH / "lstm_checkpoint.pt", *args, "--exporter", "dynamo",
                       "-o", tmp_path / "frozen.onnx", "--report", tmp_path / "frozen.json")
    assert forced.returncode == 3, forced.stdout + forced.stderr
    assert "dynamo: " in forced.stderr and ("Expected shape" in forced.stderr or "declares" in forced.stderr)
    assert not (tmp_path / "frozen.onnx").exists()
    assert json.loads((tmp_path / "frozen.json").read_text())["exit_code"] == 3


def test_checkpoint_and_dataparallel_fixtures_say_what_loading_did(tmp_path):
    result = modelport("convert", TORCH / "lstm_checkpoint.pt", "--model-class",
                       "fixtures/torch/nets.py:SequenceTagger",
                       "--input", "batchxseqx8", "--exporter", "torchscript", "-o", tmp_path / "lstm.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "state dict found under key 'model_state_dict'" in flat(result.stdout)
    assert "exported with the torchscript exporter" in flat(result.stdout)
    args = '{"vocab": 100, "d_model": 32, "heads": 4, "layers": 2, "classes": 4}'
    result = modelport("convert", TORCH / "transformer_dataparallel.pt", "--model-class",
                       "fixtures/torch/nets.py:TokenClassifier", "--model-args", args, "--input",
                       "tokens=batchx16:int64", "--exporter", "torchscript", "-o", tmp_path / "tokens.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stripped the 'module.' prefix" in flat(result.stdout) and "tokens: int64[batchx16]" in flat(result.stdout)


def test_pt2_and_torchscript_archives_need_no_class(tmp_path):
    result = modelport("convert", TORCH / "transformer.pt2", "-o", tmp_path / "t.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tokens: int64[batchx16]" in flat(result.stdout) and "PASS" in flat(result.stdout)
    result = modelport("convert", TORCH / "cnn_script.pt", "--input", "batchx3x16x16", "-o", tmp_path / "c.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TorchScript" in flat(result.stdout) and "PASS" in flat(result.stdout)


def test_whole_pickled_module_needs_trust_and_lists_its_globals(tmp_path):
    (tmp_path / "mynets.py").write_text(
        "import torch\nclass Wide(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a = torch.nn.Linear(5, 3)\n    def forward(self, x):\n        return self.a(x)\n")
    spec = importlib.util.spec_from_file_location("mynets", tmp_path / "mynets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mynets"] = module
    try:
        spec.loader.exec_module(module)
        torch.save(module.Wide(), tmp_path / "whole.pt")
    finally:
        del sys.modules["mynets"]
    refused = modelport("convert", tmp_path / "whole.pt", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "mynets.Wide" in flat(refused.stderr) and "--trust" in flat(refused.stderr)
    assert not (tmp_path / "whole.onnx").exists()
    trusted = modelport("convert", tmp_path / "whole.pt", "--trust", "--exporter", "torchscript", cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "whole pickled module" in flat(trusted.stdout) and (tmp_path / "whole.onnx").exists()


def test_a_reducer_that_would_create_a_file_never_runs(tmp_path):
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": _nets().MLP().state_dict(), "callback": Payload()}, path)
    inspected = modelport("inspect", path)
    assert inspected.returncode == 1 and "system" in flat(inspected.stdout)
    convert_it = ["convert", path, "--model-class", "fixtures/torch/nets.py:MLP"]
    for args in (convert_it, ["check", path, tmp_path / "x.onnx"]):
        result = modelport(*args)
        assert result.returncode == 1, result.stderr
        assert "system" in flat(result.stderr) and "--trust" in flat(result.stderr)
    assert not canary.exists()


def _bad_inputs(tmp_path):
    nets = _nets()
    torch.save(nets.MLP(hidden=64).state_dict(), tmp_path / "wide.pt")
    good = (TORCH / "mlp_state.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as zf:
        zf.writestr("readme.txt", "not a model")
    mlp = TORCH / "mlp_state.pt"
    cls = ["--model-class", "fixtures/torch/nets.py:MLP"]
    return {
        "no model class": (["convert", mlp], "--model-class"),
        "class not importable": (["convert", mlp, "--model-class", "nowhere.models:MLP"], "cannot import nowhere"),
        "class not constructible": (["convert", mlp, *cls, "--model-args", '{"depth": 3}'], "cannot construct MLP"),
        "shapes do not fit": (["convert", tmp_path / "wide.pt", *cls],
                              "hidden.weight: file [64, 20] vs model [32, 20]"),
        "truncated": (["convert", tmp_path / "truncated.pt", *cls], "truncated.pt"),
        "zip of something else": (["convert", tmp_path / "other.pt", *cls],
                                  "other.pt: a zip archive, but not one torch"),
        "missing state key": (["convert", TORCH / "lstm_checkpoint.pt", "--state-key", "ema", "--model-class",
                               "fixtures/torch/nets.py:SequenceTagger"], "no key 'ema'"),
        "torchscript without --input": (["convert", TORCH / "cnn_script.pt"], "--input"),
        "bad --input": (["convert", mlp, *cls, "--input", "batchx20:complex"], "bad --input"),
    }


@pytest.mark.parametrize("case", ["no model class", "class not importable", "class not constructible",
                                  "shapes do not fit", "truncated", "zip of something else", "missing state key",
                                  "torchscript without --input", "bad --input"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    args, expected = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    fixtures_before = sorted(p.name for p in TORCH.iterdir() if p.name != "__pycache__")
    result = modelport(*args, "-o", tmp_path / "out.onnx")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in flat(result.stderr), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in TORCH.iterdir() if p.name != "__pycache__") == fixtures_before
