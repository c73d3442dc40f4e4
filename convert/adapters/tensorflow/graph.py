"""Shared by the Keras and SavedModel routes: dtypes, symbolic shapes, ``--input`` hints, the native runner."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import BadInputError, UnsupportedModelError
from ...spec import DTYPES, TensorSpec, numpy_dtype, with_shape
from . import env

# TensorFlow dtype names that modelport's specs cannot carry, with the reason
UNSUPPORTED_DTYPES = {"resource": "a resource handle", "variant": "a variant (ragged or nested) value",
                      "bfloat16": "bfloat16", "complex64": "complex", "complex128": "complex"}


def dtype_name(tf_name: str, what: str, path) -> str:
    """A TensorFlow dtype name as modelport (and ONNX) spells it, or UnsupportedModelError."""
    name = {"half": "float16", "float": "float32", "double": "float64"}.get(tf_name, tf_name)
    if name not in DTYPES:
        reason = UNSUPPORTED_DTYPES.get(name, name)
        raise UnsupportedModelError(f"{what} is {reason}; modelport converts dense numeric, bool and string tensors",
                                    path=path)
    return name


def symbolic_shape(name: str, shape) -> tuple:
    """``(None, None, 8)`` -> ``("batch", "<name>_dim1", 8)``; an unknown rank stays unknown (``()``)."""
    if shape is None:
        return ()
    dims = list(shape) if not hasattr(shape, "as_list") else (shape.as_list() if shape.rank is not None else None)
    if dims is None:
        return ()
    return tuple(int(d) if d is not None else ("batch" if axis == 0 else f"{name}_dim{axis}")
                 for axis, d in enumerate(dims))


def apply_input_hints(specs: list[TensorSpec], hints: Sequence[TensorSpec], path) -> list[TensorSpec]:
    """``--input`` specs complete or override the inferred ones: matched by name, or by position for the
    unnamed ``input_<i>`` form. Fixed dims the model declares cannot be changed."""
    if not hints:
        return specs
    by_name = {s.name: i for i, s in enumerate(specs)}
    out = list(specs)
    for position, hint in enumerate(hints):
        index = by_name.get(hint.name)
        if index is None and hint.name == f"input_{position}" and position < len(specs):
            index = position
        if index is None:
            if specs:
                raise BadInputError(f"--input {hint.name}: the model has no input of that name",
                                    path=path, hint=f"its inputs are: {', '.join(s.name for s in specs)}")
            out.append(hint)
            continue
        out[index] = _merge(out[index], hint, path)
    return out


def _merge(base: TensorSpec, hint: TensorSpec, path) -> TensorSpec:
    """``base`` with the hint's fixed dims; symbolic hint dims keep the model's names, and a dynamic batch
    stays dynamic (the check feeds batches of its own size)."""
    if not base.shape:
        return TensorSpec(base.name, hint.dtype, hint.shape, base.domains, base.column_names)
    if len(hint.shape) != len(base.shape):
        raise BadInputError(f"--input {hint.name} has {len(hint.shape)} dims; the model's input "
                            f"{base.describe()} has {len(base.shape)}", path=path)
    if hint.dtype != base.dtype and hint.dtype != "float32":  # float32 is also what an unspecified dtype reads as
        raise BadInputError(f"--input {hint.name}: the model's input is {base.dtype}, not {hint.dtype}", path=path)
    shape = []
    for axis, (have, want) in enumerate(zip(base.shape, hint.shape)):
        if isinstance(have, int) and isinstance(want, int) and want != have:
            raise BadInputError(f"--input {hint.name}: axis {axis} is fixed to {have} in the model, not {want}",
                                path=path)
        shape.append(want if isinstance(want, int) and not (axis == 0 and have == "batch") else have)
    return with_shape(base, shape)


class Runner:
    """Runs the native function on numpy feeds and returns numpy outputs under the signature's names.
    ``call(tensors_by_name) -> dict`` is the Keras serving function or the SavedModel signature."""

    def __init__(self, call, specs: Sequence[TensorSpec], output_names: Sequence[str]):
        self.call, self.specs, self.output_names = call, tuple(specs), tuple(output_names)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = env.tensorflow()
        missing = [s.name for s in self.specs if s.name not in feeds]
        if missing:
            raise KeyError(f"missing input(s) {', '.join(missing)}")
        with env.quiet():  # the first op TensorFlow runs logs CPU features from C++
            tensors = {s.name: _tensor(tf, s, feeds[s.name]) for s in self.specs}
            result = self.call(tensors)
        return {name: to_numpy(result[name]) for name in self.output_names}


def _tensor(tf, spec: TensorSpec, value):
    value = np.asarray(value)
    if spec.dtype == "string":
        return tf.constant(value.astype(str).astype(object), dtype=tf.string)
    return tf.constant(value.astype(numpy_dtype(spec.dtype), copy=False))


def to_numpy(value) -> np.ndarray:
    arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if arr.dtype.kind == "O" or arr.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                            otypes=[object])(arr) if arr.size else arr.astype(object)
    return arr

