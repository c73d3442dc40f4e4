"""PyTorch: state dicts, checkpoints, whole modules, TorchScript and torch.export archives -> ONNX.
``env`` (torch import, shared types), ``load`` (files -> native model, through the gate), ``sig`` (the
signature and native runner), ``export`` (the two exporters), ``adapter`` (the verbs). torch is imported
inside functions only."""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
