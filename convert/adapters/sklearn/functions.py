"""``FunctionTransformer`` with a NumPy elementwise function, written as the matching ONNX ops.

skl2onnx converts only the identity FunctionTransformer. A log/exp/sqrt of the features is common and
has an exact ONNX counterpart; anything else (a Python lambda, keyword arguments) stays refused."""

from __future__ import annotations

import copy

import numpy as np

# numpy function -> ONNX ops applied in sequence; ("Add", 1.0) adds a constant
UFUNCS = {
    np.log: [("Log",)], np.log1p: [("Add", 1.0), ("Log",)], np.exp: [("Exp",)], np.expm1: [("Exp",), ("Sub", 1.0)],
    np.sqrt: [("Sqrt",)], np.abs: [("Abs",)], np.absolute: [("Abs",)], np.square: [("Mul", None)],
    np.tanh: [("Tanh",)], np.sign: [("Sign",)], np.negative: [("Neg",)], np.reciprocal: [("Reciprocal",)],
    np.floor: [("Floor",)], np.ceil: [("Ceil",)],
}


def supported(est) -> bool:
    return (type(est).__name__ == "FunctionTransformer" and est.func in UFUNCS and not est.kw_args
            and not getattr(est, "accept_sparse", False))


def shape(operator):
    """Same as skl2onnx's calculator for the identity, for elementwise functions."""
    n = operator.inputs[0].get_first_dimension()
    c = operator.inputs[0].type.shape[1]
    operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)
    operator.outputs[0].type.shape = [n, c]


def convert(scope, operator, container):
    from onnx import TensorProto

    est = operator.raw_operator
    if est.func is None:
        container.add_node("Identity", [operator.inputs[0].full_name], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Identity"))
        return
    elem = TensorProto.DOUBLE if type(operator.inputs[0].type).__name__.startswith("Double") else TensorProto.FLOAT
    current = operator.inputs[0].full_name
    steps = UFUNCS[est.func]
    for i, step in enumerate(steps):
        out = operator.outputs[0].full_name if i == len(steps) - 1 else scope.get_unique_variable_name("fn")
        op = step[0]
        if len(step) == 2 and step[1] is not None:
            const = scope.get_unique_variable_name("const")
            container.add_initializer(const, elem, [], [float(step[1])])
            inputs = [current, const]
        elif op == "Mul":
            inputs = [current, current]
        else:
            inputs = [current]
        container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op))
        current = out
