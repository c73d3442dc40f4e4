"""What a torch model takes and gives: input specs (from --input, a .pt2 archive, or the first layer),
integer domains from the embedding that reads them, output names, and the native runner.

Outputs are named the same way on both sides: ``output`` for one tensor, ``output_0..`` for the tensors of
a tuple or list (flattened), the keys of a dict (``key_0..`` when a value holds several tensors).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ...artifact import Artifact
from ...errors import BadInputError, UnsupportedModelError
from ...spec import Domain, OutputSpec, Signature, TensorSpec
from .env import Native, dtype_name, first_line, torch_advice_off

AUTO_NAME = re.compile(r"input_\d+$")  # what convert.spec.parse_input_spec calls an unnamed --input
BATCH_EXAMPLE = 2  # the export example's size on axis 0: never the size the check runs
OTHER_EXAMPLES = (5, 6, 7, 9, 10, 11, 12, 13)  # symbolic non-batch axes
CHECK_DIM = 8  # the size compat.checks.inputs synthesizes for symbolic non-batch axes: never an export example
INPUT_HINT = "give --input [name=]DIMS[:DTYPE] per forward() argument, e.g. --input batchx3x32x32"

# ---------------------------------------------------------------------------------------------
# inputs


def forward_params(native: Native) -> tuple[list[str], bool]:
    """(positional parameter names of forward(), whether it takes *args)."""
    if native.kind == "export":
        return list(native.model.graph_signature.user_inputs), False
    if native.kind == "script":
        try:
            return [a.name for a in native.model.forward.schema.arguments[1:]], False
        except (AttributeError, RuntimeError):
            return [], True
    try:
        params = inspect.signature(native.model.forward).parameters.values()
    except (TypeError, ValueError):
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind == p.VAR_POSITIONAL for p in params)


def input_specs(native: Native, hints, artifact: Artifact, notes: list[str]) -> tuple[TensorSpec, ...]:
    params, varargs = forward_params(native)
    if hints.inputs:
        specs = _named_after(tuple(hints.inputs), params, varargs, native, artifact)
    elif native.kind == "export":
        specs = _program_specs(native.model)
    elif native.kind == "module":
        specs = _guessed_specs(native, params, artifact, notes)
    else:
        raise BadInputError("a TorchScript archive does not record its input shapes", path=artifact.path,
                            hint=INPUT_HINT)
    return tuple(_with_vocabulary(s, vocab) for s, vocab in zip(specs, embedding_vocabularies(native, specs)))


def _named_after(specs, params, varargs, native, artifact) -> tuple[TensorSpec, ...]:
    """Unnamed --input specs take forward()'s parameter names, in order."""
    if len(specs) > len(params) and not varargs:
        raise BadInputError(f"{len(specs)} --input given but forward() takes {len(params)} "
                            f"({', '.join(params) or 'none'})", path=artifact.path, hint=INPUT_HINT)
    out = []
    for i, spec in enumerate(specs):
        if AUTO_NAME.match(spec.name) and i < len(params):
            spec = TensorSpec(params[i], spec.dtype, spec.shape, spec.domains, spec.column_names)
        out.append(spec)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise BadInputError(f"two inputs share a name ({', '.join(names)})", hint="name each --input")
    return tuple(out)


def _program_specs(program) -> tuple[TensorSpec, ...]:
    """Input specs an ExportedProgram carries: dtypes and shapes, symbolic dims named ``batch`` (axis 0)
    or ``<input>_dim<axis>``, one name per symbol."""
    names: dict[str, str] = {}
    user = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user:
            continue
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise UnsupportedModelError(f"input {node.name} is not a tensor", hint="modelport converts tensor inputs")
        dims = []
        for axis, d in enumerate(val.shape):
            if isinstance(d, int):
                dims.append(d)
                continue
            key = str(d)
            if key not in names:
                names[key] = "batch" if axis == 0 and "batch" not in names.values() else f"{node.name}_dim{axis}"
            dims.append(names[key])
        specs.append(TensorSpec(node.name, dtype_name(val.dtype), tuple(dims)))
    return tuple(specs)


def program_symbols(program) -> dict[str, tuple[str, int]]:
    """Symbol (as torch prints it, e.g. ``s77``) -> (our dim name, lowest size allowed)."""
    bounds = {str(sym): int(vr.lower) for sym, vr in program.range_constraints.items()
              if str(vr.lower).lstrip("-").isdigit()}
    out = {}
    user = set(program.graph_signature.user_inputs)
    specs = {s.name: s for s in _program_specs(program)}
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            for axis, d in enumerate(node.meta["val"].shape):
                if not isinstance(d, int):
                    out[str(d)] = (specs[node.name].shape[axis], bounds.get(str(d), 0))
    return out


# first-layer table: module class name -> (shape, dtype) of the input it reads
def _rnn_shape(m):
    return ("batch", "seq", m.input_size) if m.batch_first else ("seq", "batch", m.input_size)


def _encoder_shape(m):
    layer = m.layers[0] if hasattr(m, "layers") else m
    attn = layer.self_attn
    return ("batch", "seq", attn.embed_dim) if attn.batch_first else ("seq", "batch", attn.embed_dim)


FIRST_LAYER_INPUTS = {
    "Linear": (lambda m: ("batch", m.in_features), "float32"),
    "Bilinear": (lambda m: ("batch", m.in1_features), "float32"),
    "Embedding": (lambda m: ("batch", "seq"), "int64"),
    "EmbeddingBag": (lambda m: ("batch", "seq"), "int64"),
    "LSTM": (_rnn_shape, "float32"), "GRU": (_rnn_shape, "float32"), "RNN": (_rnn_shape, "float32"),
    "TransformerEncoder": (_encoder_shape, "float32"), "TransformerEncoderLayer": (_encoder_shape, "float32"),
    "BatchNorm1d": (lambda m: ("batch", m.num_features), "float32"),
}


def _guessed_specs(native, params, artifact, notes) -> tuple[TensorSpec, ...]:
    """One input read from the first layer that consumes it (Linear, Embedding, RNN, encoder)."""
    consumers = first_consumers(native.model)
    first = consumers.get(params[0]) if params else None
    if first is None or (len(params) > 1 and not _has_defaults(native.model, 1)):
        raise BadInputError(f"cannot tell what {native.description.split(' ')[0]} takes", path=artifact.path,
                            hint=INPUT_HINT)
    entry = FIRST_LAYER_INPUTS.get(type(first).__name__)
    if entry is None:
        layer = _describe_layer(first)
        raise BadInputError(f"cannot tell the input shape from its first layer, {layer}", path=artifact.path,
                            hint=INPUT_HINT)
    shape_of, dtype = entry
    spec = TensorSpec(params[0], dtype, tuple(shape_of(first)))
    notes.append(f"input {spec.describe()} read from the first layer, {_describe_layer(first)} (--input overrides)")
    return (spec,)


def _has_defaults(model, start: int) -> bool:
    params = list(inspect.signature(model.forward).parameters.values())[start:]
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _describe_layer(module) -> str:
    text = repr(module).splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def first_consumers(model) -> dict[str, Any]:
    """forward() argument -> the first submodule that reads it (following plain tensor methods such as
    ``.long()``), by a torch.fx trace; when the model cannot be traced, its first leaf layer for the first
    argument."""
    import torch

    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception:
        leaves = [m for _, m in model.named_modules() if not list(m.children()) and list(m.parameters(recurse=False))]
        params, _ = forward_params(Native(model, "module", ""))
        return {params[0]: leaves[0]} if leaves and params else {}
    modules = dict(traced.named_modules())
    found = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            hit = _first_module_user(node, modules)
            if hit is not None:
                found[node.target.lstrip("*")] = hit
    return found


def _first_module_user(node, modules, depth: int = 4):
    frontier = [node]
    for _ in range(depth):
        following = []
        for current in frontier:
            for user in current.users:
                if user.op == "call_module":
                    return modules.get(user.target)
                if user.op in ("call_method", "call_function") and user.args and user.args[0] is current:
                    following.append(user)
        frontier = following
    return None


def embedding_vocabularies(native: Native, specs) -> list[int | None]:
    """For each integer input, the vocabulary size of the embedding that reads it (None if unknown)."""
    wanted = [s.dtype.startswith(("int", "uint")) for s in specs]
    if not any(wanted):
        return [None] * len(specs)
    if native.kind == "export":
        found = _program_vocabularies(native.model)
        return [found.get(s.name) if w else None for s, w in zip(specs, wanted)]
    if native.kind == "module":
        try:
            consumers = first_consumers(native.model)
        except Exception:
            consumers = {}
        vocab = {name: _vocab_of(m) for name, m in consumers.items()}
        if any(v is not None for v in vocab.values()):
            return [vocab.get(s.name) if w else None for s, w in zip(specs, wanted)]
    first = next((v for v in map(_vocab_of, _submodules(native.model)) if v is not None), None)
    return [first if w else None for w in wanted]


def _submodules(model):
    try:
        return [m for _, m in model.named_modules()]
    except Exception:
        return []


def _vocab_of(module) -> int | None:
    name = getattr(module, "original_name", None) or type(module).__name__
    weight = getattr(module, "weight", None)
    if name in ("Embedding", "EmbeddingBag") and weight is not None and weight.dim() == 2:
        return int(weight.shape[0])
    return None


def _program_vocabularies(program) -> dict[str, int]:
    import torch

    user = set(program.graph_signature.user_inputs)
    found = {}
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.embedding.default,):
            weight, index = node.args[0], node.args[1]
            if getattr(index, "name", None) in user and index.name not in found:
                found[index.name] = int(weight.meta["val"].shape[0])
    return found


def _with_vocabulary(spec: TensorSpec, vocab: int | None) -> TensorSpec:
    if vocab is None or spec.domains:
        return spec
    return TensorSpec(spec.name, spec.dtype, spec.shape, (Domain(low=0, high=vocab, integer=True),), spec.column_names)


# ---------------------------------------------------------------------------------------------
# examples


def example_sizes(signature: Signature, shift: int = 0, floors: Mapping[str, int] | None = None) -> dict[str, int]:
    """A size for each symbolic dim: axis-0 dims 2 (the check runs 1000 rows), others 5, 6, 7, 9...
    (the check runs 8), all distinct and distinct from fixed dims, so the tracer keeps them apart."""
    fixed = {d for s in signature.inputs for d in s.shape if isinstance(d, int)}
    taken = set(fixed)
    if shift:  # the probe's sizes are never the export example's, whatever the fixed dims push them to
        taken |= set(example_sizes(signature, 0, floors).values())
    sizes: dict[str, int] = {}
    order = sorted({(axis != 0, d) for s in signature.inputs for axis, d in enumerate(s.shape) if isinstance(d, str)})
    others = iter(OTHER_EXAMPLES)
    for not_first, name in order:
        if name in sizes:
            continue
        size = BATCH_EXAMPLE + shift if not not_first else next(others) + shift
        size = max(size, (floors or {}).get(name, 0))
        while size in taken or size == CHECK_DIM:
            size += 1
        sizes[name] = size
        taken.add(size)
    return sizes


def example_feeds(signature: Signature, shift: int = 0, floors=None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the example sizes, integers within their domain."""
    rng = np.random.default_rng(seed)
    sizes = example_sizes(signature, shift, floors)
    feeds = {}
    for spec in signature.inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else (1 if d is None else d) for d in spec.shape)
        dom = spec.domains[0] if spec.domains else Domain()
        if spec.dtype == "bool":
            feeds[spec.name] = rng.random(shape) < 0.5
        elif spec.dtype.startswith(("int", "uint")):
            low = int(dom.low) if dom.low is not None else 0
            high = int(dom.high) if dom.high is not None else 10
            feeds[spec.name] = rng.integers(low, max(high, low + 1), shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


# ---------------------------------------------------------------------------------------------
# outputs and the runner


def _clean(name) -> str:
    text = re.sub(r"[^\w.]", "_", str(name)) or "output"
    return text


def _leaves(value) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    return []  # None and Python scalars are not graph outputs


def flatten_outputs(out) -> list[tuple[str, Any]]:
    """(name, tensor) for every tensor the model returns, in the order exporters emit them."""
    import torch

    if isinstance(out, torch.Tensor):
        return [("output", out)]
    if isinstance(out, Mapping):
        named = []
        for key, value in out.items():
            leaves = _leaves(value)
            if len(leaves) == 1 and isinstance(value, torch.Tensor):
                named.append((_clean(key), leaves[0]))
            else:
                named.extend((f"{_clean(key)}_{i}", leaf) for i, leaf in enumerate(leaves))
        return named
    return [(f"output_{i}", leaf) for i, leaf in enumerate(_leaves(out))]


@dataclass
class Runner:
    """Feeds named like the ONNX inputs -> the model in eval mode, without gradients -> outputs named
    like the ONNX outputs."""

    model: Any
    signature: Signature

    def call(self, feeds: dict[str, np.ndarray]):
        import torch

        args = [torch.as_tensor(np.ascontiguousarray(np.asarray(feeds[s.name]).astype(s.dtype, copy=False)))
                for s in self.signature.inputs]
        with torch.no_grad(), torch_advice_off():
            return self.model(*args)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flat = flatten_outputs(self.call(feeds))
        return {name: t.detach().cpu().numpy() for name, t in flat}


def callable_of(native: Native):
    return native.model.module() if native.kind == "export" else native.model


def output_specs(native: Native, signature: Signature, artifact: Artifact, floors=None) -> tuple[OutputSpec, ...]:
    """Run the model once on the export example to learn what it returns."""
    runner = Runner(callable_of(native), signature)
    feeds = example_feeds(signature, floors=floors)
    try:
        out = runner.call(feeds)
    except Exception as exc:
        shown = ", ".join(f"{k}: {v.dtype}[{'x'.join(map(str, v.shape))}]" for k, v in feeds.items())
        raise BadInputError(f"the model does not run on example inputs ({shown}): {first_line(exc)}",
                            path=artifact.path, hint=INPUT_HINT) from None
    flat = flatten_outputs(out)
    if not flat:
        raise UnsupportedModelError(f"forward() returns a {type(out).__name__} holding no tensors",
                                    path=artifact.path, hint="modelport converts models that return tensors")
    names = [n for n, _ in flat]
    clash = set(names) & set(signature.input_names)
    if len(set(names)) != len(names) or clash:
        raise UnsupportedModelError(f"output names collide ({', '.join(names)})", path=artifact.path,
                                    hint="rename the input or the dict keys")
    return tuple(OutputSpec(n, "value") for n in names)
