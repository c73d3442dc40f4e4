"""What every torch module of the adapter shares, importing torch only inside functions: importing torch
(or saying it is missing), the native model a file turns into, quiet exports, one-line errors, dtypes."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from ...errors import EnvironmentProblem, UnsupportedModelError

_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx", "torch._subclasses",
            "onnxscript")


@dataclass
class Native:
    """What a torch file turned into: the callable model and what loading it did."""

    model: Any  # nn.Module | torch.jit.ScriptModule | torch.export.ExportedProgram
    kind: str  # "module" | "script" | "export"
    description: str
    notes: list[str] = field(default_factory=list)


def require_torch():
    try:
        import torch
    except ImportError as exc:
        raise EnvironmentProblem(f"PyTorch is not installed ({exc})", hint="pip install 'modelport[torch]'") from None
    return torch


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line`` of an exception, without terminal colours."""
    text = next((line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: torch.onnx wraps what went wrong in generic 'failed to export' errors."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


@contextlib.contextmanager
def torch_advice_off():
    """torch's own UserWarnings about how it will run a module (``enable_nested_tensor is True, but ...``,
    prototype nested tensors) are advice for the model's author, not for someone converting the model: they
    stay off the terminal while a model is built and run. Warnings from the user's own code still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
        for message in TORCH_ADVICE:  # raised with a stacklevel that points at the user's line, not torch's
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


# torch's advice that it attributes to the caller's line (so a filter on torch's modules misses it)
TORCH_ADVICE = (r"enable_nested_tensor is True, but self\.use_nested_tensor is False",
                r"The PyTorch API of nested tensors is in prototype stage")


@contextlib.contextmanager
def quiet():
    """Silence an export: loggers, warnings, and both output streams at the file-descriptor level (the
    TorchScript exporter prints whole IR graphs from C++ when it fails)."""
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), _silenced_fds():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _silenced_fds():
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fds = [sys.stdout.fileno(), sys.stderr.fileno()]
    except (AttributeError, io.UnsupportedOperation, ValueError):  # streams without descriptors (pytest capture)
        fds = []
    saved = [os.dup(fd) for fd in fds]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


@contextlib.contextmanager
def captured_stderr():
    """Collect what C++ libraries write to file descriptor 2 (onnxruntime's log sink) while the block runs;
    the list it yields holds the lines once the block ends."""
    import tempfile

    lines: list[str] = []
    sys.stderr.flush()
    fd = 2  # C++ writes to the descriptor itself, whatever Python's sys.stderr is at the moment

    with tempfile.TemporaryFile() as sink:
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            lines.extend(_ANSI.sub("", sink.read().decode(errors="replace")).splitlines())


_TORCH_DTYPES = {"float32": "float32", "float64": "float64", "float16": "float16", "int64": "int64",
                 "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool"}


def torch_dtype(name: str):
    import torch

    return getattr(torch, _TORCH_DTYPES[name])


def dtype_name(dtype) -> str:
    name = str(dtype).replace("torch.", "")
    if name not in _TORCH_DTYPES:
        raise UnsupportedModelError(f"inputs of dtype {name} are not supported", hint="use a float or integer input")
    return name
