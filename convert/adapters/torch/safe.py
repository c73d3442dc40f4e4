"""A whole pickled torch module (or a checkpoint rebuilt with ``--model-class``) as safetensors weights plus the
reference of its class: a file that holds no code. Loading it back needs that class, as any state dict does;
``reload`` proves the weights restore the computation: a copy of the module with every tensor zeroed, filled from
the file, must compute what the module did.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from ...atomic import write_atomic
from ...errors import EnvironmentProblem, UnsupportedModelError
from ..base import Loaded
from .sig import Runner


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as exc:
        raise EnvironmentProblem(f"safetensors is not installed ({exc})", hint="pip install 'modelport[torch]'") from None
    return st


def class_reference(module) -> str:
    return f"{type(module).__module__}:{type(module).__qualname__}"


def _module(loaded: Loaded):
    import torch

    if loaded.facts.get("kind") != "module" or not isinstance(loaded.model, torch.nn.Module):
        raise UnsupportedModelError(f"{loaded.facts.get('estimator') or 'this model'} is not a torch module "
                                    "(TorchScript and torch.export archives keep their own program: convert them to ONNX)",
                                    path=loaded.artifact.path)
    return loaded.model


def save_safetensors(loaded: Loaded, path: str | Path) -> dict:
    """Write the module's state dict as safetensors (atomically); the class reference goes in its metadata.
    Tensors that share storage are written once each (cloned), so any loader reads them."""
    module = _module(loaded)
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    reference = class_reference(module)
    write_atomic(path, _safetensors().save(state, metadata={"modelport.class": reference}))
    return {"class": reference, "tensors": len(state), "parameters": int(sum(v.numel() for v in state.values()))}


def reload_safetensors(loaded: Loaded, path: str | Path) -> Loaded:
    """A Loaded whose module is a copy of ``loaded``'s with every tensor zeroed and then filled from ``path``."""
    import torch

    module = copy.deepcopy(_module(loaded))
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.zero_()
    tensors = _safetensors().load(Path(path).read_bytes())
    module.load_state_dict(tensors, strict=True)
    module.eval()
    return replace(loaded, model=module, runner=Runner(module, loaded.signature))
