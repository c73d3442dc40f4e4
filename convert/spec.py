"""What a model takes and gives: tensors with named, possibly symbolic dimensions.

A ``Domain`` describes what values one input column plausibly holds, as far as the fitted
model tells us (a scaler's mean, an encoder's categories, a tree's split points). Adapters fill
it in; ``compat.checks.inputs`` turns it into realistic rows without knowing any framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

Dim = int | str | None  # int: fixed; str: symbolic ("batch"); None: unknown

# dtype names used across modelport, as ONNX spells them
DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "string")


def numpy_dtype(name: str):
    """The numpy dtype modelport uses to hold values of an ONNX-named dtype."""
    import numpy as np  # here, not at import: `modelport --help` loads this module

    return np.dtype(object) if name == "string" else np.dtype(name)


@dataclass(frozen=True)
class Domain:
    """Plausible values of one input column. Every field is optional."""

    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None
    integer: bool = False
    categories: tuple | None = None  # the only values seen in training
    unknown_allowed: bool = False  # the model accepts values outside ``categories``
    thresholds: tuple[float, ...] = ()  # decision boundaries worth hitting exactly
    vocabulary: tuple[str, ...] | None = None  # text inputs: words the model knows
    missing_allowed: bool = False  # NaN / None are valid inputs
    lowercase: bool = False  # text: the model lowercases, so case variants are fair inputs


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]
    # One Domain per column of the last axis (tabular inputs), or a single Domain for all values.
    domains: tuple[Domain, ...] = ()
    column_names: tuple[str, ...] | None = None  # the names of the last axis' columns, if known

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        dims = "x".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class OutputSpec:
    """One output. ``kind`` tells the comparator how to judge it: ``label`` (exact, except where the native
    model's own decision is tied within its noise), ``scores`` / ``value`` (tolerance)."""

    name: str
    kind: str = "value"  # "label" | "probabilities" | "scores" | "value"
    scores_from: str | None = None  # for labels: the output holding the class scores
    classes: tuple | None = None  # for labels: the label of each column of ``scores_from`` and of the decision
    decided_by: str | None = None  # for labels: what the native predict compares (e.g. "decision_function")


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[OutputSpec, ...] = field(default_factory=tuple)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def output(self, name: str) -> OutputSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.inputs) + " -> " + ", ".join(self.output_names)


_DIM = re.compile(r"[1-9][0-9]*|[A-Za-z_][A-Za-z0-9_]*")  # a size, or the name of a dynamic dimension
_INPUT_NAME = re.compile(r"[^\s=:]+")


def parse_dims(text: str, sep: str = "x") -> tuple[Dim, ...]:
    """``"batchx3x32"`` -> ``("batch", 3, 32)``. A dim is a positive size or a name (a dynamic dimension:
    letters, digits, ``_``, not starting with a digit); anything else (``batch*3*32``, ``-1``, ``3.5``) is
    refused rather than read as one oddly named dimension."""
    dims: list[Dim] = []
    for part in text.split(sep):
        part = part.strip()
        if not part:
            raise ValueError(f"empty dimension in {text!r}")
        if not _DIM.fullmatch(part):
            raise ValueError(f"{part!r} is not a dimension (a positive size or a name, joined by {sep!r})")
        dims.append(int(part) if part.isdigit() else part)
    return tuple(dims)


def with_shape(spec: TensorSpec, shape: Sequence[Dim]) -> TensorSpec:
    return TensorSpec(spec.name, spec.dtype, tuple(shape), spec.domains, spec.column_names)


_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
                  "str": "string", "f32": "float32", "f64": "float64", "i64": "int64", "i32": "int32"}


def parse_input_spec(text: str, index: int = 0) -> TensorSpec:
    """``[name=]DIMS[:DTYPE]`` -> TensorSpec, e.g. ``tokens=batchx16:int64`` or ``batchx3x32x32``.
    Without a name the spec is called ``input_<index>``: adapters may rename such specs."""
    from .errors import BadInputError

    raw = text
    name = f"input_{index}"  # adapters may rename unnamed inputs (e.g. after forward()'s parameters)
    if "=" in text:
        name, text = text.split("=", 1)
        name = name.strip()
    dtype = "float32"
    if ":" in text:
        text, dtype = text.rsplit(":", 1)
        dtype = _DTYPE_ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if not _INPUT_NAME.fullmatch(name):
        raise BadInputError(f"bad --input {raw!r}: {name!r} is not an input name",
                            hint="use [name=]DIMS[:DTYPE]: a name without spaces, '=' or ':', e.g. tokens=batchx16")
    if dtype not in DTYPES:
        raise BadInputError(f"bad --input {raw!r}: unknown dtype {dtype!r}",
                            hint=f"use [name=]DIMS[:DTYPE], dtype one of {', '.join(DTYPES)}")
    try:
        dims = parse_dims(text)
    except ValueError as exc:
        raise BadInputError(f"bad --input {raw!r}: {exc}",
                            hint="use [name=]DIMS[:DTYPE], dims joined by x, e.g. batchx3x32x32 or tokens=batchx16:int64") from None
    return TensorSpec(name, dtype, dims)
