"""Every way a torch conversion can be refused: one-line errors of the right class, nothing of the file run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import convert  # noqa: E402
from convert.errors import BadInputError, UnsafeArtifactError  # noqa: E402
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


def mlp_state(tmp_path, hidden=32, name="mlp.pt"):
    path = tmp_path / name
    torch.save(nets.MLP(20, hidden, 3).state_dict(), path)
    return path


def load(path, **hints):
    if "inputs" in hints:
        hints["inputs"] = tuple(parse_input_spec(s, i) for i, s in enumerate(hints["inputs"]))
    return convert.load(path, convert.Hints(**hints))


def one_line(exc) -> str:
    line = exc.line()
    assert "\n" not in line and "Traceback" not in line
    return line


def test_state_dict_without_its_class_asks_for_model_class(tmp_path):
    with pytest.raises(BadInputError) as info:
        load(mlp_state(tmp_path))
    line = one_line(info.value)
    assert "state dict (4 tensors" in line and "--model-class" in line and "mlp.pt" in line


def test_state_dict_that_does_not_fit_lists_missing_unexpected_and_shapes(tmp_path):
    path = mlp_state(tmp_path, hidden=64)
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:MLP", model_args={"hidden": 32})
    line = one_line(info.value)
    assert "hidden.weight: file [64, 20] vs model [32, 20]" in line and "--model-args" in line
    state = nets.MLP().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    torch.save(state, path)
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:MLP")
    line = one_line(info.value)
    assert "missing keys head.bias" in line and "unexpected keys extra.weight" in line


@pytest.mark.parametrize("case", ["no file", "no module", "syntax error", "raises on import", "no class",
                                  "not MODULE:CLASS", "bad constructor args", "not a module"])
def test_model_class_that_cannot_be_imported_or_constructed(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("def oops(:\n")
    (tmp_path / "raising.py").write_text("raise RuntimeError('needs a GPU')\n")
    canary = tmp_path / "canary"
    (tmp_path / "plain.py").write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n"
                                       f"def make():\n    open({str(canary)!r}, 'w').close()\n    return 3\n")
    spec, args, expected = {
        "no file": (f"{tmp_path}/missing.py:Net", {}, "no such file"),
        "no module": ("nowhere_to_be_found.models:Net", {}, "cannot import nowhere_to_be_found.models"),
        "syntax error": (f"{tmp_path}/broken.py:Net", {}, "syntax error"),
        "raises on import": (f"{tmp_path}/raising.py:Net", {}, "needs a GPU"),
        "no class": (f"{tmp_path}/plain.py:Missing", {}, "has no Missing (it defines: Net)"),
        "not MODULE:CLASS": ("just_a_name", {}, "is not MODULE:CLASS"),
        "bad constructor args": (f"{NETS}:MLP", {"hiden": 3}, "cannot construct MLP(hiden=3): TypeError"),
        "not a module": (f"{tmp_path}/plain.py:make", {}, "plain.py:make: is a function, not a torch.nn.Module "
                                                         "subclass; nothing was called"),
    }[case]
    with pytest.raises(BadInputError) as info:
        load(mlp_state(tmp_path), model_class=spec, model_args=args)
    assert expected in one_line(info.value)
    assert not canary.exists()  # "make" was refused, not called


# spec -> (what the refusal calls it, constructor arguments that make it leave a trace: {canary} / {victim})
CALLABLE_PAYLOADS = {
    "subprocess:Popen": ("is the class subprocess.Popen", {"args": ["touch", "{canary}"]}),
    "subprocess:run": ("is a function", {"args": ["touch", "{canary}"]}),
    "os:system": ("is a built-in function", {"command": "touch {canary}"}),
    "shutil:rmtree": ("is a function", {"path": "{victim}"}),
}


def _payload_args(template: dict, canary: Path, victim: Path) -> dict:
    fill = lambda v: v.format(canary=canary, victim=victim) if isinstance(v, str) else [fill(x) for x in v]  # noqa: E731
    return {k: fill(v) for k, v in template.items()}


@pytest.mark.parametrize("spec", sorted(CALLABLE_PAYLOADS))
def test_a_model_class_that_is_not_an_nn_module_is_refused_before_it_is_called(tmp_path, spec):
    """``convert --model-class`` gets the same guard as a replay: only a torch.nn.Module subclass is ever
    constructed; a callable that would run a command with the model arguments is refused, never called."""
    what, template = CALLABLE_PAYLOADS[spec]
    canary, victim = tmp_path / "canary", tmp_path / "victim"
    victim.mkdir()
    args = _payload_args(template, canary, victim)
    with pytest.raises(convert.ModelClassError) as info:
        load(mlp_state(tmp_path), model_class=spec, model_args=args)
    line = one_line(info.value)
    assert info.value.exit_code == 2
    assert line.startswith(f"{spec}: {what}, not a torch.nn.Module subclass; nothing was called"), line
    assert not canary.exists() and victim.is_dir()
    # live control, in another process: the same spec and arguments, called, do leave their trace
    code = ("import importlib, json, sys\nmodule, attr = sys.argv[1].split(':')\n"
            "getattr(importlib.import_module(module), attr)(**json.loads(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, spec, json.dumps(args)], capture_output=True, timeout=60)
    for _ in range(50):  # Popen returns before its child has run
        if canary.exists() or not victim.exists():
            break
        time.sleep(0.1)
    assert canary.exists() or not victim.exists()


def test_checkpoint_keys_that_hold_no_state_dict(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(BadInputError, match="no state dict"):
        load(path, model_class=f"{NETS}:MLP")
    torch.save({"model_state_dict": nets.MLP().state_dict(), "epoch": 3}, path)
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:MLP", state_key="ema")
    assert "no key 'ema'" in one_line(info.value) and "model_state_dict, epoch" in info.value.line()


@pytest.mark.parametrize("layout", ["zip", "legacy", "pt2"])
@pytest.mark.parametrize("payload", ["os.system", "open"])
def test_a_pickled_reducer_that_would_create_a_file_is_refused_and_never_runs(tmp_path, layout, payload):
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):
            if payload == "os.system":
                return (os.system, (f"touch {canary}",))
            return (open, (str(canary), "w"))

    path = tmp_path / ("evil.pt2" if layout == "pt2" else "evil.pt")
    obj = {"model_state_dict": nets.MLP().state_dict(), "hook": Payload()}
    if layout == "pt2":
        program = torch.export.export(nets.MLP().eval(), (torch.randn(2, 20),))
        clean = tmp_path / "clean.pt2"
        torch.export.save(program, clean)
        member = tmp_path / "member.pt"
        torch.save(obj, member)
        with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                data = member.read_bytes() if info.filename.endswith("sample_inputs/model.pt") else src.read(info)
                dst.writestr(info, data)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=layout == "zip")
    for hints in ({}, {"model_class": f"{NETS}:MLP"}):
        with pytest.raises(UnsafeArtifactError) as info:
            load(path, **hints)
        line = one_line(info.value)
        assert "--trust" in line and ("system" in line or "open" in line), line
    assert not canary.exists()


@pytest.mark.parametrize("case", ["truncated zip", "truncated legacy", "zip of something else", "random bytes"])
def test_broken_torch_files_are_bad_input(tmp_path, case):
    good = mlp_state(tmp_path, name="good.pt")
    path = tmp_path / "model.pt"
    if case == "truncated zip":
        path.write_bytes(good.read_bytes()[:1500])
    elif case == "truncated legacy":
        torch.save(nets.MLP().state_dict(), good, _use_new_zipfile_serialization=False)
        path.write_bytes(good.read_bytes()[:-700])
    elif case == "zip of something else":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("notes/readme.txt", "hello")
            zf.writestr("data.csv", "a,b\n1,2\n")
    else:
        path.write_bytes(os.urandom(4096))
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:MLP")
    assert "model.pt" in one_line(info.value)


def test_torchscript_without_input_shapes_asks_for_them(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nets.MLP().eval()), path)
    with pytest.raises(BadInputError, match="does not record its input shapes.*--input"):
        load(path)
    with pytest.raises(BadInputError, match="dynamo exporter cannot take"):
        load(path, inputs=["batchx20"], exporter="dynamo")


def test_inputs_the_model_cannot_take(tmp_path):
    path = mlp_state(tmp_path)
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:MLP", inputs=["batchx7"])
    assert "does not run on example inputs (x: float32[2x7])" in one_line(info.value)
    with pytest.raises(BadInputError, match="2 --input given but forward\\(\\) takes 1 \\(x\\)"):
        load(path, model_class=f"{NETS}:MLP", inputs=["batchx20", "batchx3"])
    torch.save(nets.CNN().state_dict(), path)
    with pytest.raises(BadInputError) as info:
        load(path, model_class=f"{NETS}:CNN")
    assert "first layer, Conv2d(3, 8" in one_line(info.value) and "--input" in info.value.line()
