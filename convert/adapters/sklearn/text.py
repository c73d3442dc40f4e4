"""TF-IDF with ``sublinear_tf=True``, written as scikit-learn computes it.

scikit-learn replaces each non-zero term count ``tf`` by ``1 + log(tf)`` (zeros stay zero); skl2onnx
writes ``log(1 + tf)`` for every count, so any document changes (a repeated token most: "the the
service": 0.67661 in scikit-learn, 0.68027 in the graph, as issue 14 measured). This converter keeps skl2onnx's
count vectorizer and replaces the TF-IDF step: ``where(tf == 0, 0, 1 + log(tf))``, times the idf
weights, then the row norm (zero rows left as they are, as ``sklearn.preprocessing.normalize`` does).
Registered as a custom converter for ``TfidfVectorizer`` and ``TfidfTransformer`` instances with
``sublinear_tf``; every other operator those instances produce goes to skl2onnx's own converter.
"""

from __future__ import annotations

import numpy as np

TFIDF_CLASSES = ("TfidfVectorizer", "TfidfTransformer")
TRANSFORMER_OP = "SklearnTfidfTransformer"


def supported(est) -> bool:
    return type(est).__name__ in TFIDF_CLASSES and bool(getattr(est, "sublinear_tf", False)) \
        and getattr(est, "norm", None) in (None, "l1", "l2")


def convert(scope, operator, container):
    from skl2onnx.common._registration import get_converter

    if operator.type != TRANSFORMER_OP or not supported(operator.raw_operator):  # skl2onnx's own
        return get_converter(operator.type)(scope, operator, container)
    from onnx import TensorProto

    est = operator.raw_operator
    double = type(operator.inputs[0].type).__name__.startswith("Double")
    elem, dtype = (TensorProto.DOUBLE, np.float64) if double else (TensorProto.FLOAT, np.float32)

    def const(name, values, dims=()):
        full = scope.get_unique_variable_name(name)
        container.add_initializer(full, elem, list(dims), list(np.asarray(values, dtype=dtype).ravel()))
        return full

    def node(op, inputs, name, **attrs):
        out = scope.get_unique_variable_name(name)
        container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op), **attrs)
        return out

    zero, one = const("zero", [0.0]), const("one", [1.0])
    counts = operator.inputs[0].full_name
    is_zero = node("Equal", [counts, zero], "tf_is_zero")
    logged = node("Add", [node("Log", [counts], "log_tf"), one], "one_plus_log_tf")
    data = node("Where", [is_zero, zero, logged], "sublinear_tf")
    if getattr(est, "use_idf", False):
        idf = np.asarray(est.idf_, dtype=dtype).ravel()
        data = node("Mul", [data, const("idf", idf, idf.shape)], "tfidf")
    norm = getattr(est, "norm", None)
    if norm is None:
        container.add_node("Identity", [data], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Identity"))
        return
    reduce = "ReduceL2" if norm == "l2" else "ReduceL1"
    if container.target_opset >= 18:
        axes = scope.get_unique_variable_name("axes")
        container.add_initializer(axes, TensorProto.INT64, [1], [1])
        length = node(reduce, [data, axes], "row_norm", keepdims=1)
    else:
        length = node(reduce, [data], "row_norm", axes=[1], keepdims=1)
    safe = node("Where", [node("Equal", [length, zero], "norm_is_zero"), one, length], "safe_norm")
    container.add_node("Div", [data, safe], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Div"))
