"""Small real artifacts several test modules build (written by the real libraries, never hand-made bytes)."""

from __future__ import annotations

from pathlib import Path


def tiny_onnx(path: Path, op: str = "Identity", width: int = 3, batch: str | None = None,
              producer: str = "", ir_version: int | None = None) -> Path:
    """A one-node ONNX model ``y = op(x)`` on float32[batch, width] at opset 17, saved at ``path``; ``batch``
    names the first dim (None: unnamed)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=producer)
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.save(model, path)
    return path
