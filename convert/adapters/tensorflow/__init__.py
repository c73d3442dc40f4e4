"""TensorFlow / Keras: SavedModel folders, Keras .keras and .h5 files -> ONNX through tf2onnx. ``env``
(quiet imports, versions), ``keras`` and ``savedmodel`` (load through the scan gate, signatures), ``graph``
(input specs, native runner), ``to_onnx`` (tf2onnx with explicit signatures), ``adapter`` (the verbs).
TensorFlow is imported inside functions only."""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
