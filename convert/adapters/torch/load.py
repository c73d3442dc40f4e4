"""PyTorch files -> a native model, through the safety gate.

What users have on disk: a state dict (zip or pre-1.6 legacy format) and the class that rebuilds it, a
training checkpoint holding one, a whole pickled module, a TorchScript archive, a ``torch.export`` archive.
Every pickle is judged statically first (the artifact's globals against torch's own ``weights_only``
allowlist) and then loaded with ``weights_only=True`` unless the user trusts the file. torch is imported
inside functions only.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import importlib.util
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

from ... import formats
from .. import memory
from ...artifact import Artifact
from ...errors import (BadInputError, ModelClassError, OutOfMemoryError, UnsafeArtifactError,
                      UnsupportedModelError)
from ..base import ClassSpec, Hints
from .env import Native, first_line, require_torch, root_cause, torch_advice_off

TRUST_HINT = "pass --trust only if you trust whoever wrote it"
CLASS_HINT = ("give --model-class pkg.module:Class or path/to/file.py:Class, and --model-args '{...}' if it takes "
              "arguments")
# checkpoint keys that usually hold the weights, most specific first
STATE_KEYS = ("model_state_dict", "state_dict", "model_state", "model", "net", "network", "module",
              "model_ema", "ema_state_dict", "ema", "weights", "params")
# prefixes wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile
WRAPPER_PREFIXES = {"module.": "DataParallel/DistributedDataParallel", "_orig_mod.": "torch.compile"}
SHOWN = 3  # keys listed per kind of mismatch
# torch archives: zips torch itself writes (their directories declare what torch will allocate)
ZIP_FORMATS = tuple(f for f in formats.formats_of("torch")
                    if formats.get(f).container == "zip" and formats.get(f).framework == "torch")


# ---------------------------------------------------------------------------------------------
# the gate


def _canonical(qualname: str) -> str:
    module, _, name = qualname.rpartition(".")
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _torch_allowed() -> set[str]:
    """``module.name`` of every global torch's ``weights_only`` unpickler accepts (private API: when it moves,
    our allowlist's verdicts decide alone)."""
    try:
        from torch import _weights_only_unpickler as wo

        return set(wo._get_allowed_globals())
    except (ImportError, AttributeError):
        return set()


def vouches(ref) -> bool:
    """Does torch's own ``weights_only`` unpickler accept this global? Then it enforces it itself when the
    file is loaded untrusted (``formats.gate`` lets a file through whose only flags are such globals)."""
    return _canonical(ref.qualname) in _torch_allowed()


def gate(artifact: Artifact, hints: Hints) -> None:
    """Raise unless the file may be loaded (``formats.gate``, with what ``weights_only`` enforces itself), and
    refuse a zip archive declaring more memory than a bound, trust or not (torch allocates what the zip
    directory declares). Nothing of the file runs here."""
    formats.gate(artifact, hints.trust, vouched=vouches,
                 hint=f"{TRUST_HINT}; or save model.state_dict() and convert it with --model-class")
    if artifact.format in ZIP_FORMATS:
        memory.check_archive(artifact.path, "torch archive")


def _vouched_globals(artifact: Artifact) -> list:
    """Objects our allowlist calls safe that torch's weights_only unpickler does not know (numpy scalars
    in a checkpoint's metrics, say): resolved here so ``weights_only=True`` accepts them."""
    allowed = _torch_allowed()
    objects = []
    for g in artifact.globals:
        name = _canonical(g.qualname)
        if g.verdict != "safe" or name in allowed:
            continue
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        objects.append(obj)
        if name == "numpy.dtype":  # numpy 2 builds one class per dtype; weights_only checks those classes
            import numpy as np

            objects.extend({type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGUSMm"})
    return objects


# ---------------------------------------------------------------------------------------------
# torch.save files: state dicts, checkpoints, whole modules


def load_saved(artifact: Artifact, hints: Hints) -> Native:
    """A ``torch.save`` file (zip or legacy): rebuild the model from the state dict inside, or take the
    pickled module itself (``--trust`` only)."""
    torch, obj, module, where = read_saved(artifact, hints)
    notes: list[str] = []
    if module is not None:
        return _whole_module(module, where, artifact, hints, notes, torch)
    key, state = find_state_dict(obj, hints.state_key, artifact, notes)
    model, name = build_model(hints, artifact, state, torch)
    state = strip_wrapper_prefixes(state, model.state_dict().keys(), notes)
    load_weights(model, state, name, artifact)
    what = f"{name} from a state dict" + (f" (checkpoint key {key!r})" if key else "")
    return Native(model.eval(), "module", what, notes)


def read_saved(artifact: Artifact, hints: Hints):
    """Through the gate, ``torch.load`` a torch.save file: (torch, what it holds, the pickled module in it
    or None, the checkpoint key that module is under)."""
    torch = require_torch()
    gate(artifact, hints)
    obj = _torch_load(artifact, hints, torch)
    module, where = _find_module(obj, torch)
    return torch, obj, module, where


def _torch_load(artifact: Artifact, hints: Hints, torch):
    import pickle

    extra = [] if hints.trust else _vouched_globals(artifact)
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(str(artifact.path), map_location="cpu", weights_only=not hints.trust)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise UnsafeArtifactError(f"torch's weights_only loader refuses it: {_weights_only_reason(exc)}",
                                      path=artifact.path, hint=TRUST_HINT) from None
        raise BadInputError(f"corrupt or truncated torch file: {first_line(exc)}", path=artifact.path,
                            hint="restore it from the original source") from None
    except (ModuleNotFoundError, AttributeError) as exc:  # --trust: the pickled classes are not importable here
        raise BadInputError(f"the pickled model's code cannot be imported here: {first_line(exc)}",
                            path=artifact.path, hint="run from the project that defines it, or re-save "
                            "model.state_dict() and use --model-class") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, MemoryError) as exc:
        _raise_if_out_of_memory(exc, artifact)
        raise BadInputError(f"corrupt or truncated torch file: {first_line(exc)}", path=artifact.path,
                            hint="restore it from the original source") from None


def _raise_if_out_of_memory(exc: BaseException, artifact: Artifact) -> None:
    """An allocation that failed while loading is no sign of a damaged file: say so (exit 2, out-of-memory)."""
    if memory.is_allocation_failure(exc):
        raise OutOfMemoryError(f"ran out of memory while loading it: {first_line(exc)}", path=artifact.path,
                               hint="nothing was converted; run it where more memory is free") from None


def weights_summary(artifact: Artifact, hints: Hints) -> dict | None:
    """Tensors, parameters, dtypes and state-dict key of a file holding weights; None for a pickled module."""
    from collections import Counter

    torch, obj, module, _ = read_saved(artifact, hints)
    if module is not None:
        return None
    key, state = find_state_dict(obj, None, artifact, [])
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    dtypes = dict(Counter(str(t.dtype).replace("torch.", "") for t in tensors))
    return {"tensors": len(tensors), "parameters": int(sum(t.numel() for t in tensors)), "dtypes": dtypes,
            "state_key": key}


def _weights_only_reason(exc) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("WeightsUnpickler error:", 1)[-1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest[:200]
    return first_line(exc)


def _find_module(obj, torch):
    """A pickled nn.Module: the object itself or one value of a checkpoint dict."""
    if isinstance(obj, torch.nn.Module):
        return obj, None
    if isinstance(obj, Mapping):
        found = [(k, v) for k, v in obj.items() if isinstance(v, torch.nn.Module)]
        if found:
            preferred = sorted(found, key=lambda kv: _key_rank(kv[0]))
            return preferred[0][1], preferred[0][0]
    return None, None


def _whole_module(module, where, artifact, hints, notes, torch) -> Native:
    for wrapper in ("DataParallel", "DistributedDataParallel"):
        if type(module).__name__ == wrapper and hasattr(module, "module"):
            module = module.module
            notes.append(f"unwrapped the {wrapper} around the model")
    cls = type(module)
    notes.append(f"loaded a whole pickled module (--trust): {cls.__module__}.{cls.__qualname__}"
                 + (f" from checkpoint key {where!r}" if where else ""))
    return Native(module.eval(), "module", f"{cls.__name__} (pickled module)", notes)


def _is_state_dict(obj) -> bool:
    import torch

    if not isinstance(obj, Mapping) or not obj:
        return False
    tensors = 0
    for key, value in obj.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, torch.Tensor):
            tensors += 1
        elif not key.endswith("_extra_state"):
            return False
    return tensors > 0


def _key_rank(key) -> int:
    return STATE_KEYS.index(key) if key in STATE_KEYS else len(STATE_KEYS)


def _candidates(obj, prefix: str = "", depth: int = 2):
    """(path, state dict) for every state dict within ``depth`` levels of a checkpoint."""
    if not isinstance(obj, Mapping) or depth == 0:
        return
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if _is_state_dict(value):
            yield path, value
        elif isinstance(value, Mapping):
            yield from _candidates(value, path + "/", depth - 1)


def _lookup(obj, key: str):
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    node = obj
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def find_state_dict(obj, state_key: str | None, artifact: Artifact, notes: list[str]):
    """(key used or None, state dict): the file itself, ``--state-key``, or the best-named state dict
    inside a checkpoint. The choice is reported in ``notes``."""
    if state_key:
        found = _lookup(obj, state_key)
        if not _is_state_dict(found):
            keys = ", ".join(map(str, list(obj)[:10])) if isinstance(obj, Mapping) else type(obj).__name__
            what = "no key" if found is None else "no state dict under key"
            raise BadInputError(f"{what} {state_key!r} (it holds: {keys})", path=artifact.path,
                                hint="--state-key names a key whose value maps parameter names to tensors")
        notes.append(f"state dict taken from key {state_key!r} (--state-key)")
        return state_key, found
    if _is_state_dict(obj):
        return None, obj
    found = list(_candidates(obj))
    if not found:
        what = (f"a dict with keys {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, Mapping)
                else f"a {type(obj).__name__}")
        raise BadInputError(f"holds {what}, and no state dict (parameter names -> tensors) inside it",
                            path=artifact.path, hint="save model.state_dict(), or name its key with --state-key")
    rank = lambda kv: _key_rank(kv[0].split("/")[-1])  # noqa: E731
    ranked = sorted(found, key=rank)
    key, state = ranked[0]
    if len(ranked) > 1 and rank(ranked[0]) == rank(ranked[1]):
        names = ", ".join(k for k, _ in ranked if rank((k, None)) == rank(ranked[0]))
        raise BadInputError(f"holds several state dicts ({names}) and none is the obvious one", path=artifact.path,
                            hint="choose one with --state-key, e.g. --state-key " + ranked[0][0])
    others = [str(k) for k in obj if str(k) != key.split("/")[0]] if isinstance(obj, Mapping) else []
    notes.append(f"checkpoint: state dict found under key {key!r}"
                 + (f" (the file also holds {', '.join(others[:6])})" if others else "")
                 + ("; other state dicts: " + ", ".join(k for k, _ in ranked[1:4]) + " (--state-key picks one)"
                    if len(found) > 1 else ""))
    return key, state


def strip_wrapper_prefixes(state, model_keys, notes: list[str]):
    """Drop the ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) prefix from every key when
    the file has it and the model does not."""
    model_keys = list(model_keys)
    changed = True
    while changed:
        changed = False
        for prefix, wrapper in WRAPPER_PREFIXES.items():
            if all(k.startswith(prefix) for k in state) and not all(k.startswith(prefix) for k in model_keys):
                state = type(state)((k[len(prefix):], v) for k, v in state.items())
                notes.append(f"stripped the {prefix!r} prefix {wrapper} adds from {len(state)} keys")
                changed = True
    return state


def fit_problems(state, model) -> list[str]:
    """Why ``state`` does not fit ``model``: missing keys, unexpected keys, shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {list(v.shape)} vs model {list(own[k].shape)}" for k, v in state.items()
              if k in own and _shape(v) is not None and _shape(v) != _shape(own[k])]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            problems.append(f"{label} {', '.join(items[:SHOWN])}{more}")
    return problems


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else None


def load_weights(model, state, name: str, artifact: Artifact) -> None:
    problems = fit_problems(state, model)
    if problems:
        raise BadInputError(f"the state dict does not fit {name}: " + "; ".join(problems), path=artifact.path,
                            hint="check --model-class and --model-args (layer sizes)")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise BadInputError(f"the state dict does not fit {name}: {first_line(exc)}", path=artifact.path,
                            hint="check --model-class and --model-args") from None


# ---------------------------------------------------------------------------------------------
# --model-class


def build_model(hints: Hints, artifact: Artifact, state, torch):
    """Import ``--model-class`` and construct it with ``--model-args``; (model, class name). Nothing is called
    unless it is a subclass of ``torch.nn.Module``: a spec naming ``subprocess:Popen`` or ``os:system`` is
    refused, not run."""
    if not hints.model_class:
        first = next(iter(state.items()))
        raise BadInputError(f"holds a state dict ({len(state)} tensors, e.g. {first[0]} {list(first[1].shape)}) "
                            "but not the model's code", path=artifact.path, hint=CLASS_HINT)
    cls = import_class(hints.model_class)
    require_module_class(cls, hints.model_class, torch)
    name = cls.__name__
    args = dict(hints.model_args or {})
    try:
        with torch_advice_off():
            model = cls(**args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise BadInputError(f"cannot construct {name}({shown}): {first_line(exc)}", path=hints.model_class,
                            hint="check --model-args (a JSON object of constructor arguments)") from None
    if not isinstance(model, torch.nn.Module):  # a __new__ that returns something else
        raise BadInputError(f"{name}(...) gives a {type(model).__name__}, not a torch.nn.Module",
                            path=hints.model_class, hint=CLASS_HINT)
    return model, name


def require_module_class(obj, spec: str, torch) -> None:
    """Refuse, before anything calls it, whatever is not a class deriving from ``torch.nn.Module``. The test
    reads the object's real type (``type(obj)``, not ``obj.__class__``, which an object can fake)."""
    if issubclass(type(obj), type) and issubclass(obj, torch.nn.Module):
        return
    raise ModelClassError(f"{_what(obj)}, not a torch.nn.Module subclass; nothing was called", path=spec,
                          hint=CLASS_HINT)


def _what(obj) -> str:
    """What ``obj`` is, read from its real type only (no attribute lookup on ``obj`` that it could answer)."""
    kind = type(obj)
    if issubclass(kind, type):
        return f"is the class {type.__getattribute__(obj, '__module__')}.{type.__getattribute__(obj, '__qualname__')}"
    noun = {"builtin_function_or_method": "a built-in function", "function": "a function", "module": "a module",
            "method": "a method"}.get(kind.__name__, f"an object of type {kind.__name__}")
    return f"is {noun}"


@contextmanager
def _on_path(folder: str):
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def import_class(spec: str):
    """``pkg.module:Class`` (importable from the current folder) or ``path/to/file.py:Class``: the object it
    names, imported (which runs the module's code: only for a class the user named or trusts)."""
    parsed = ClassSpec.parse(spec)
    where, attr = parsed.where, parsed.attr
    try:
        module = _import_file(Path(where)) if parsed.is_file else _import_module(where)
    except BadInputError:
        raise
    except SyntaxError as exc:
        raise BadInputError(f"syntax error in {exc.filename or where} line {exc.lineno}: {exc.msg}",
                            path=where, hint="fix the file that defines the model class") from None
    except ImportError as exc:
        raise BadInputError(f"cannot import {where}: {first_line(exc)}", path=where,
                            hint="run from the folder that holds it, or give path/to/file.py:Class") from None
    except Exception as exc:
        raise BadInputError(f"importing {where} failed: {first_line(exc)}", path=where,
                            hint="the module must import cleanly") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            known = sorted(n for n, v in vars(module).items() if isinstance(v, type) and _is_module_class(v))
            raise ModelClassError(f"{where} has no {attr}", path=where,
                                  hint=f"it defines: {', '.join(known)}" if known else CLASS_HINT)
    return obj


def _is_module_class(cls) -> bool:
    import torch

    try:
        return issubclass(cls, torch.nn.Module)
    except TypeError:
        return False


def _import_module(name: str):
    with _on_path(os.getcwd()):
        return importlib.import_module(name)


def _import_file(path: Path):
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ModelClassError("no such file", path=path, hint=CLASS_HINT)
    name = f"_modelport_user_{path.stem}_{abs(hash(str(path))) & 0xFFFFFF:x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        with _on_path(str(path.parent)):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


# ---------------------------------------------------------------------------------------------
# TorchScript and torch.export archives


def load_script(artifact: Artifact, hints: Hints) -> Native:
    """A ``torch.jit.save`` archive: its code travels with it, no class needed."""
    torch = require_torch()
    gate(artifact, hints)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; its files are not
            model = torch.jit.load(str(artifact.path), map_location="cpu")
    except Exception as exc:
        _raise_if_out_of_memory(exc, artifact)
        raise BadInputError(f"not a loadable TorchScript archive: {first_line(exc)}", path=artifact.path,
                            hint="restore it from the original source") from None
    name = getattr(model, "original_name", None) or type(model).__name__
    return Native(model.eval(), "script", f"{name} (TorchScript)", [])


def load_export(artifact: Artifact, hints: Hints) -> Native:
    """A ``torch.export.save`` archive (.pt2): the traced program and its input specs, no class needed."""
    torch = require_torch()
    gate(artifact, hints)  # torch.export.load unpickles members with weights_only=False: the gate must hold
    try:
        program = torch.export.load(str(artifact.path))
    except Exception as exc:
        _raise_if_out_of_memory(exc, artifact)
        raise BadInputError(f"not a loadable torch.export archive: {first_line(exc)}", path=artifact.path,
                            hint="restore it, or re-export it with this torch version") from None
    notes = []
    saved = artifact.saved_with.get("torch") or artifact.details.get("torch_version")
    if saved and saved.split("+")[0] != torch.__version__.split("+")[0]:
        notes.append(f"exported with torch {saved}, loaded with {torch.__version__}")
    program = with_dynamic_batch(program, artifact, notes)
    return Native(program, "export", "ExportedProgram (torch.export)", notes)


def _user_placeholders(program):
    user = set(program.graph_signature.user_inputs)
    return [n for n in program.graph.nodes if n.op == "placeholder" and n.name in user]


def with_dynamic_batch(program, artifact: Artifact, notes: list[str]):
    """``torch.export`` fixes every size unless told otherwise, and a check needs batches of other sizes. When
    no input's axis 0 is dynamic, re-export the program's own graph with a dynamic batch; keep it only if it
    traces (the graph does not depend on the batch size) and gives the same outputs as the archive's."""
    import torch

    inputs = _user_placeholders(program)
    shapes = [tuple(n.meta["val"].shape) for n in inputs]
    if not shapes or any(not s or not isinstance(s[0], int) for s in shapes):
        return program
    sizes = {s[0] for s in shapes}
    example = tuple(torch.zeros(n.meta["val"].shape, dtype=n.meta["val"].dtype) for n in inputs)
    batch = torch.export.Dim("batch")
    try:
        from .env import quiet

        with quiet():
            unguarded = program.module(check_guards=False)  # the graph alone, without the archive's size checks
            dynamic = torch.export.export(unguarded, example, dynamic_shapes=tuple({0: batch} for _ in inputs))
            same = _same_outputs(program.module()(*example), dynamic.module()(*example))
    except Exception as exc:
        dynamic, same = None, False
        reason = first_line(root_cause(exc)).split(" For more information")[0]
    else:
        reason = "it gives other outputs"
    if len(sizes) > 1 or not same:
        raise UnsupportedModelError(
            f"the archive fixes the batch size (axis 0: {', '.join(map(str, sorted(sizes)))}) and its graph cannot "
            f"take another ({reason}), so no check could tell a frozen axis from a right one", path=artifact.path,
            hint=f"re-export with dynamic_shapes={{'{inputs[0].name}': {{0: torch.export.Dim('batch')}}}}")
    notes.append(f"the archive fixes the batch size at {sizes.pop()}; its graph does not depend on it, so it was "
                 "re-exported with a dynamic batch (outputs identical on the archive's size)")
    return dynamic


def _same_outputs(a, b) -> bool:
    import torch

    flat_a, flat_b = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    return len(flat_a) == len(flat_b) and all(
        torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(flat_a, flat_b))


def refuse_other_zip(artifact: Artifact, hints: Hints) -> Native:
    names = artifact.details.get("member_names") or ()
    shown = ", ".join(map(str, list(names)[:4])) if isinstance(names, (list, tuple)) else ""
    raise BadInputError("a zip archive, but not one torch writes (no data.pkl, code/ or archive_format)"
                        + (f": it holds {shown}" if shown else ""), path=artifact.path,
                        hint="torch.save, torch.jit.save or torch.export.save write the files modelport converts")


LOADERS = {"torch-zip": load_saved, "torch-legacy": load_saved, "torchscript": load_script,
           "torch-export": load_export, "zip": refuse_other_zip}
