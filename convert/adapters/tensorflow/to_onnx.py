"""A traced TensorFlow function -> ONNX through tf2onnx, with the names and dynamic dims modelport promises.

tf2onnx 1.17's ``from_keras`` fails on Keras 3 models and its Python API has no ``from_saved_model``
(measured with Keras 3.15). Both our routes end in a concrete function with an explicit input signature, which goes through
the same two steps tf2onnx's own ``from_function`` and ``--saved-model`` paths use: freeze it together with
the object owning its variables and lookup tables (``tf_loader.from_trackable``), then convert the frozen
graph (``convert._convert_common``). tf2onnx is told to continue past ops it cannot map, so that every such
op can be named at once instead of the first only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import EnvironmentProblem, UnsupportedModelError
from ...spec import Signature
from . import env

# Opset domains onnxruntime runs without extensions.
RUNTIME_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
MIN_OPSET = 9  # below this tf2onnx lacks handlers for common Keras ops (e.g. Upsample, dynamic Slice)


@dataclass
class Serving:
    """What to convert and run: a concrete function with an explicit input signature, the object owning its
    variables and tables, and modelport's names for its inputs (in the function's order) and outputs."""

    concrete: Any
    trackable: Any
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def opset_range() -> tuple[int, int]:
    """The opsets both tf2onnx and the installed onnx can write (onnxruntime is checked on the result)."""
    import onnx
    from tf2onnx import constants

    return MIN_OPSET, min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version())


def choose_opset(requested: int | None, path) -> int:
    low, high = opset_range()
    if requested is None:
        return high
    if not low <= requested <= high:
        raise UnsupportedModelError(f"opset {requested} is outside what tf2onnx {env.version('tf2onnx')} "
                                    f"writes here ({low}-{high})", path=path, hint=f"use --opset {high}")
    return requested


def to_onnx(serving: Serving, signature: Signature, opset: int, path, notes: list[str]):
    """Convert ``serving``; the graph's inputs and outputs carry the signature's names and symbolic dims."""
    env.tf2onnx()
    tf = env.tensorflow()
    from tf2onnx import convert, tf_loader

    cf = serving.concrete
    structured = [s for s in tf.nest.flatten(cf.structured_input_signature) if isinstance(s, tf.TensorSpec)]
    inputs = [t.name for t in cf.inputs if t.dtype != tf.resource][:len(structured)]
    outputs = [t.name for t in cf.outputs if t.dtype != tf.resource]
    rename = dict(zip(inputs, serving.input_names))
    if isinstance(cf.structured_outputs, dict):
        rename.update(zip(outputs, sorted(cf.structured_outputs)))  # tf.nest flattens dicts in key order
    with env.quiet() as caught:
        try:
            frozen, tables = tf_loader.from_trackable(serving.trackable, cf, inputs, outputs, False)
            model, _ = convert._convert_common(frozen, name=str(path), continue_on_error=True, opset=opset,
                                               input_names=inputs, output_names=outputs,
                                               tensors_to_rename=rename, initialized_tables=tables)
        except AttributeError as exc:
            if "_convert_common" in str(exc) or "from_trackable" in str(exc):
                raise EnvironmentProblem(f"tf2onnx {env.version('tf2onnx')} lacks the API modelport uses "
                                         f"({env.first_line(exc)})", hint="pip install 'tf2onnx==1.17.*'") \
                    from None
            raise _failed(exc, path) from None
        except Exception as exc:
            raise _failed(exc, path) from None
    _refuse_unconverted(model, opset, path, caught)
    _name_values(model, signature, notes)
    _name_dims(model, signature)
    model.producer_version = producer_version(model.producer_version)
    return model


def producer_version(text: str) -> str:
    """tf2onnx writes its version followed by its build's git hash, which is the word ``None`` in released
    wheels (``1.17.0 None``): keep the version, and a hash only when there is one."""
    return " ".join(part for part in text.split() if part != "None")


def _failed(exc: Exception, path) -> UnsupportedModelError:
    return UnsupportedModelError(f"tf2onnx could not convert it: {type(exc).__name__}: {env.first_line(exc)}",
                                 path=path, hint="nothing was written")


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _refuse_unconverted(model, opset: int, path, caught) -> None:
    """tf2onnx leaves ops it cannot map in the graph as TensorFlow ops: name them all."""
    import onnx

    left, foreign = set(), set()
    for node in _all_nodes(model.graph):
        if node.domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type):
                left.add(node.op_type)
        elif node.domain not in RUNTIME_DOMAINS:
            foreign.add(f"{node.domain}:{node.op_type}")
    if left:
        reported = [m.group(1) for line in caught.lines("is not supported")
                    for m in [re.search(r"op \[?([\w:]+)", line)] if m]
        ops = sorted(left | {r for r in reported if r in left})
        raise UnsupportedModelError(f"tf2onnx {env.version('tf2onnx')} has no ONNX conversion (opset {opset}) "
                                    f"for TensorFlow op(s) {', '.join(ops)}", path=path, hint="nothing was written")
    if foreign:
        raise UnsupportedModelError(f"the conversion needs ops onnxruntime does not have: {', '.join(sorted(foreign))}",
                                    path=path, hint="they come from onnxruntime-extensions; nothing was written")


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _name_values(model, signature: Signature, notes: list[str]) -> None:
    """Graph inputs/outputs carry the signature's names, in the signature's order."""
    graph = model.graph
    want_in = list(signature.input_names)
    have_in = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if sorted(have_in) != sorted(want_in) and len(have_in) == len(want_in):
        for old, new in zip(have_in, want_in):
            if old != new:
                _rename(graph, old, new)
                notes.append(f"graph input {old!r} renamed {new!r} (a name TensorFlow does not allow)")
    want_out = list(signature.output_names)
    have_out = [o.name for o in graph.output]
    if set(have_out) != set(want_out):
        raise UnsupportedModelError(f"tf2onnx produced outputs ({', '.join(have_out)}) where "
                                    f"({', '.join(want_out)}) were expected")
    order = {n: i for i, n in enumerate(want_out)}
    ordered = sorted(graph.output, key=lambda o: order[o.name])
    outs = [type(o)() for o in ordered]
    for new, old in zip(outs, ordered):
        new.CopyFrom(old)
    del graph.output[:]
    graph.output.extend(outs)


def _name_dims(model, signature: Signature) -> None:
    """Symbolic dims named as the signature names them (tf2onnx writes ``unk__N``); outputs' first symbolic
    dim is the batch."""
    for graph_input in model.graph.input:
        try:
            spec = signature.input(graph_input.name)
        except KeyError:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        for dim, want in zip(dims, spec.shape):
            if isinstance(want, str):
                dim.Clear()
                dim.dim_param = want
    for out in model.graph.output:
        for axis, dim in enumerate(out.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
                dim.dim_param = "batch" if axis == 0 else f"{out.name}_dim{axis}"
