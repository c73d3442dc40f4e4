"""Both models behind one call: feeds named like the ONNX inputs in, outputs named like the ONNX outputs out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.errors import BadInputError

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


class OnnxRunner:
    """An onnxruntime session on the CPU. Feeds are cast to the graph's input types; ZipMap outputs
    (lists of dicts) become score matrices."""

    def __init__(self, model, threads: int | None = None, path: str | Path | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        data = model if isinstance(model, (bytes, str)) else model.SerializeToString()  # str: a file path
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            line = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
            raise BadInputError(f"onnxruntime cannot load this model: {line}", path=path) from None
        self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_types = {o.name: o.type for o in self.session.get_outputs()}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cast = {name: _cast(np.asarray(feeds[name]), self.inputs[name]) for name in self.input_names}
        results = self.session.run(None, cast)
        return {name: _as_array(value) for name, value in zip(self.output_names, results)}


def _cast(arr: np.ndarray, onnx_type: str) -> np.ndarray:
    if onnx_type == "tensor(string)":
        if arr.dtype.kind in "OUS":
            return arr.astype(str).astype(object) if arr.dtype.kind != "O" else arr
        return arr.astype(str).astype(object)
    target = _ORT_TO_NUMPY.get(onnx_type)
    if target is None or arr.dtype == target:
        return arr
    return arr.astype(target)


def _as_array(value) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap
        keys = list(value[0].keys())
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
    return np.asarray(value)
