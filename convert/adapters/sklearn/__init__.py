"""scikit-learn: joblib / pickle files -> ONNX through skl2onnx. ``adapter`` (the verbs: load through the
gate, signature, conversion, remedies), ``trees`` (exact tree ensembles), ``domains`` (what inputs plausibly
hold), ``functions`` (FunctionTransformer ufuncs). scikit-learn and skl2onnx are imported inside functions."""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
