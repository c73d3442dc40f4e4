"""torch -> ONNX through the two exporters torch ships, with real dynamic axes and the signature's names.

``dynamo``: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript; opset >= 18). ``torchscript``:
``torch.onnx.export(dynamo=False)`` (tracing or the scripted graph; fast, older opsets). Both are quieted:
their progress lines, deprecation warnings and logger chatter are not the user's business unless they fail.
"""

from __future__ import annotations

import io
import re

import numpy as np

from ...spec import Signature
from .env import Native, captured_stderr, quiet, torch_dtype

DYNAMO, TORCHSCRIPT = "dynamo", "torchscript"
DYNAMO_MIN_OPSET = 18


class ExporterRefused(Exception):
    """This exporter cannot take this kind of model (the message says why)."""


def example_args(signature: Signature, feeds: dict[str, np.ndarray]) -> tuple:
    import torch

    return tuple(torch.as_tensor(np.ascontiguousarray(feeds[s.name])).to(torch_dtype(s.dtype))
                 for s in signature.inputs)


def _dim_name(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    return text if text and not text[0].isdigit() else f"d_{text}"


def dynamic_shapes(signature: Signature) -> tuple:
    """torch.export dims, one per symbolic name, shared across inputs (``Dim("batch")``)."""
    from torch.export import Dim

    dims: dict[str, object] = {}
    shapes = []
    for spec in signature.inputs:
        axes = {}
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str):
                axes[axis] = dims.setdefault(d, Dim(_dim_name(d)))
        shapes.append(axes or None)
    return tuple(shapes)


def dynamic_axes(signature: Signature) -> dict[str, dict[int, str]]:
    return {s.name: {axis: d for axis, d in enumerate(s.shape) if isinstance(d, str)}
            for s in signature.inputs if any(isinstance(d, str) for d in s.shape)}


def export_dynamo(native: Native, signature: Signature, args: tuple, opset: int | None):
    import torch

    if native.kind == "script":
        raise ExporterRefused("it cannot take a TorchScript module")
    names = dict(input_names=list(signature.input_names), output_names=list(signature.output_names))
    with quiet():
        if native.kind == "export":
            program = torch.onnx.export(native.model, (), dynamo=True, opset_version=opset, verbose=False, **names)
        else:
            program = torch.onnx.export(native.model, args, dynamo=True, dynamic_shapes=dynamic_shapes(signature),
                                        opset_version=opset, verbose=False, **names)
    return program.model_proto


def export_torchscript(native: Native, signature: Signature, args: tuple, opset: int | None):
    import onnx
    import torch

    if native.kind == "export":
        raise ExporterRefused("it cannot take an ExportedProgram without freezing its dynamic sizes")
    model = native.model
    buffer = io.BytesIO()
    with quiet():
        torch.onnx.export(model, args, buffer, dynamo=False, input_names=list(signature.input_names),
                          output_names=list(signature.output_names), dynamic_axes=dynamic_axes(signature),
                          opset_version=opset, do_constant_folding=True, verbose=False)
    return onnx.load_from_string(buffer.getvalue())


EXPORTERS = {DYNAMO: export_dynamo, TORCHSCRIPT: export_torchscript}


# ---------------------------------------------------------------------------------------------
# after export: names, dims


def rename_dim_params(model, mapping: dict[str, str]) -> None:
    """Rename symbolic dims (a .pt2's ``s77`` -> ``batch``) everywhere in the graph's declared types."""
    graph = model.graph
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def add_unused_inputs(model, signature: Signature, notes: list[str]) -> None:
    """Inputs forward() ignores are dropped by exporters; put them back (unused) so the graph takes what
    the model takes."""
    from onnx import TensorProto, helper

    present = {i.name for i in model.graph.input}
    for spec in signature.inputs:
        if spec.name in present:
            continue
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype)) if spec.dtype != "bool" else TensorProto.BOOL
        dims = [d if isinstance(d, (int, str)) else None for d in spec.shape]
        model.graph.input.append(helper.make_tensor_value_info(spec.name, elem, dims))
        notes.append(f"input {spec.name} is not used by forward(); kept as an unused graph input")


def check_graph(model, signature: Signature) -> str | None:
    """Why the graph does not take and give what the model does (names, or a dynamic input axis the
    exporter froze: onnxruntime would refuse any other size), or None."""
    outs = [o.name for o in model.graph.output]
    if outs != list(signature.output_names):
        return f"graph outputs ({', '.join(outs)}) differ from the model's ({', '.join(signature.output_names)})"
    inputs = {i.name: i for i in model.graph.input}
    if not set(inputs) <= set(signature.input_names):
        return (f"graph inputs ({', '.join(sorted(inputs))}) differ from the model's "
                f"({', '.join(signature.input_names)})")
    for spec in signature.inputs:
        graph_input = inputs.get(spec.name)
        if graph_input is None:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str) and axis < len(dims) and dims[axis].HasField("dim_value"):
                return f"it froze dynamic axis {d!r} of {spec.name} at {dims[axis].dim_value}"
    return None


def runs_at_other_sizes(model, signature: Signature, feeds: dict[str, np.ndarray]) -> str | None:
    """Why the graph is not the model at input sizes other than the export example's (``feeds``), or None.

    An exporter can freeze a dynamic axis inside the graph (a Reshape to the example's length, a shape
    declared fixed) and still compute the right values at the example's size. So the graph is run at other
    sizes with every intermediate tensor exposed, and any of these is a failed export: onnxruntime cannot run
    it; onnxruntime warns about a shape; a tensor anywhere in the graph, its outputs included, is declared
    with a fixed size, or with one of the input's dynamic axes, that the run contradicts."""
    import onnxruntime as ort

    probe, declared = _exposed(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 2  # warnings: VerifyOutputSizes says "Expected shape ... does not match"
    with captured_stderr() as log:
        try:
            session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            names = {i.name for i in session.get_inputs()}
            outputs = [o.name for o in session.get_outputs()]
            values = session.run(None, {k: v for k, v in feeds.items() if k in names})
        except Exception as exc:
            text = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            return f"the graph does not run on other input sizes ({text[:160]})"
    warned = [line for line in log if "[W:" in line and "shape" in line.lower()]
    if warned:
        return f"onnxruntime warns at other input sizes: {_log_message(warned[0])[:200]}"
    sizes = _dynamic_sizes(signature, feeds)
    for name, value in zip(outputs, values):
        dims = declared.get(name)
        if dims is None or not hasattr(value, "shape"):
            continue
        if len(dims) != value.ndim:
            return f"the graph declares {name} with {len(dims)} axes, but it has {value.ndim} at other input sizes"
        for axis, (want, got) in enumerate(zip(dims, value.shape)):
            expected = want if isinstance(want, int) else sizes.get(want)
            if expected is not None and expected != got:
                said = str(want) if isinstance(want, int) else f"{want!r} ({expected})"
                return (f"the graph declares {name}[{axis}] as {said} where it is {got} at other input sizes "
                        "(a dynamic axis frozen at export)")
    return None


def _exposed(model):
    """A copy of ``model`` whose every declared intermediate tensor is also a graph output, and the declared
    dims of all of them (int: fixed; str: symbolic; None: unknown)."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    declared: dict[str, list] = {}
    for vi in list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            declared[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                 for d in vi.type.tensor_type.shape.dim]
    produced = {out for node in graph.node for out in node.output}
    present = {o.name for o in graph.output}
    for vi in graph.value_info:
        if vi.name in produced and vi.name not in present and vi.type.HasField("tensor_type"):
            graph.output.append(vi)
            present.add(vi.name)
    return probe, declared


def _dynamic_sizes(signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """The size each named dynamic axis has in ``feeds``."""
    sizes = {}
    for spec in signature.inputs:
        value = feeds.get(spec.name)
        if value is None:
            continue
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str) and axis < np.ndim(value):
                sizes[d] = int(np.shape(value)[axis])
    return sizes


def _log_message(line: str) -> str:
    """onnxruntime's log line without its time stamp and source location."""
    return line.split("] ", 1)[1] if "] " in line else line
