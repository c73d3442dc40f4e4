"""`modelport convert` (check included) of the bundled torch fixtures against what a user writes by hand:
rebuild the model, one `torch.onnx.export`, one onnxruntime run compared with torch. Both run as fresh
processes, in turn (A B A B ...), and the ratio is the median of the pairs' ratios, so the machine's drift
does not move it. Target: ≤ 1.3× the hand-written TorchScript-exporter script.

Also printed, for the record: the hand-written script with the dynamo exporter (torch's default), and
`modelport convert --exporter dynamo`, so the cost of each exporter is visible on each fixture."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from _measure import PY, ROOT, run_once

TORCH = ROOT / "fixtures" / "torch"
TARGET = 1.3
PAIRS = 5

# what a user writes by hand (no input synthesis, no remedies, one comparison at another batch size)
BASELINE = r'''
import importlib.util, json, sys
import numpy as np, torch, onnxruntime as ort
path, out, exporter, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if path.endswith(".pt2"):
    model = torch.export.load(path)
elif spec.get("model_class"):
    file, cls = spec["model_class"].rsplit(":", 1)
    module_spec = importlib.util.spec_from_file_location("nets", file)
    nets = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(nets)
    model = getattr(nets, cls)(**spec.get("model_args", {}))
    state = torch.load(path, weights_only=True)
    state = state.get("model_state_dict", state)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    model.eval()
else:
    model = torch.jit.load(path).eval()
name, _, rest = spec["input"].rpartition("=")
dims, _, dtype = rest.partition(":")
dims = dims.split("x")
def example(batch, other=7):
    shape = [batch if i == 0 else int(d) if d.isdigit() else other for i, d in enumerate(dims)]
    return torch.randint(0, 50, shape) if dtype == "int64" else torch.randn(shape)
name = name or "x"
x = example(2)
if path.endswith(".pt2"):
    program = torch.onnx.export(model, (), dynamo=True)
    program.save(out)
elif exporter == "dynamo":
    dyn = ({i: torch.export.Dim.AUTO for i, d in enumerate(dims) if not d.isdigit()},)
    torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=dyn, input_names=[name]).save(out)
else:
    axes = {name: {i: d for i, d in enumerate(dims) if not d.isdigit()}}
    torch.onnx.export(model, (x,), out, dynamo=False, input_names=[name], dynamic_axes=axes)
sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
probe = example(64, 11) if not path.endswith(".pt2") else torch.randint(0, 50, (3, 16))  # sizes never exported
with torch.no_grad():
    want = model.module()(probe) if path.endswith(".pt2") else model(probe)
want = [want] if isinstance(want, torch.Tensor) else list(want.values()) if isinstance(want, dict) else list(want)
got = sess.run(None, {sess.get_inputs()[0].name: probe.numpy()})
for w, g in zip(want, got):
    np.testing.assert_allclose(g, w.numpy(), rtol=1e-3, atol=1e-4)
'''


def paired(ours: list[str], base: list[str], ok_codes=(0,)) -> tuple[float, float, float, str]:
    """Median seconds of each command and the median ratio ours/base over PAIRS alternating runs."""
    runs = []
    for _ in range(PAIRS):
        a, b = run_once(ours, cwd=ROOT), run_once(base, cwd=ROOT)
        for r, cmd in ((a, ours), (b, base)):
            if ok_codes is not None and r.returncode not in ok_codes:
                raise SystemExit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.output[-2000:]}")
        runs.append((a, b))
    return (statistics.median(a.seconds for a, _ in runs), statistics.median(b.seconds for _, b in runs),
            statistics.median(a.seconds / b.seconds for a, b in runs), runs[-1][0].output)


def cases() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(TORCH.glob("*.pt*")):
        hints_file = path.with_suffix(".hints.json")
        hints = json.loads(hints_file.read_text()) if hints_file.exists() else {}
        if path.suffix == ".pt2":
            hints = {"inputs": ["tokens=batchx16:int64"]}
        out.append((path.name, hints))
    return out


def ours_command(path: Path, hints: dict, out: Path, exporter: str | None = None) -> list[str]:
    cmd = [PY, "-m", "compat.cli", "convert", str(path), "-o", str(out)]
    if hints.get("model_class"):
        cmd += ["--model-class", hints["model_class"], "--model-args", json.dumps(hints.get("model_args", {}))]
    if path.suffix != ".pt2":
        cmd += [f"--input={spec}" for spec in hints.get("inputs", [])]
    if exporter:
        cmd += ["--exporter", exporter]
    return cmd


def main() -> list[str]:
    lines = [f"### Torch convert overhead (fixtures; fresh processes, {PAIRS} alternating pairs, medians)", "",
             "| fixture (exporter used) | modelport convert | hand-written TorchScript export + onnxruntime run | "
             "ratio |", "|---|---:|---:|---:|"]
    detail = ["", "The other exporter, for the record (`--exporter dynamo`; the hand-written script with "
              "torch's default, the dynamo exporter):", "",
              "| fixture | `modelport convert --exporter dynamo` | hand-written dynamo | ratio |", "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "baseline.py"
        script.write_text(BASELINE)
        for name, hints in cases():
            path = TORCH / name
            spec = json.dumps({"model_class": hints.get("model_class"), "model_args": hints.get("model_args", {}),
                               "input": hints["inputs"][0]})
            base = [PY, str(script), str(path), str(Path(tmp) / "b.onnx"), "torchscript", spec]
            ours, theirs, ratio, output = paired(ours_command(path, hints, Path(tmp) / "m.onnx"), base)
            used = next((w for w in ("dynamo", "torchscript") if f"exported with the {w} exporter" in output), "?")
            verdict = " ✓" if ratio <= TARGET else f" ✗ (target ≤ {TARGET}×)"
            lines.append(f"| {name} ({used}) | {ours:.2f} s | {theirs:.2f} s | {ratio:.2f}×{verdict} |")
            if path.suffix == ".pt2" or "script" in name:
                continue  # one exporter only: nothing to compare
            base = [PY, str(script), str(path), str(Path(tmp) / "d.onnx"), "dynamo", spec]
            ours, theirs, ratio, output = paired(ours_command(path, hints, Path(tmp) / "n.onnx", "dynamo"), base,
                                                 ok_codes=None)
            refused = "" if "PASS" in output else " (refused: its graph freezes an axis)"
            detail.append(f"| {name} | {ours:.2f} s{refused} | {theirs:.2f} s | {ratio:.2f}× |")
    return lines + detail


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print("\n".join(main()))
