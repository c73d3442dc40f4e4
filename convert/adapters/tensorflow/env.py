"""TensorFlow, Keras and tf2onnx, imported on demand and kept quiet.

TensorFlow writes start-up chatter (oneDNN notices, CPU feature guards, absl's "log messages before
InitializeLog") straight to file descriptor 2 from C++, before and regardless of Python logging, so
``quiet()`` points fd 2 at a temporary file while TensorFlow works and keeps what it caught for error
messages. Nothing here imports TensorFlow at module import time.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from ...errors import EnvironmentProblem
from ...versions import installed_version

INSTALL_HINT = "pip install 'modelport[tensorflow]'"
CAUGHT_MAX = 64 << 10  # bytes of caught stderr kept for error messages
QUIET_LOGGERS = ("tensorflow", "tf2onnx", "absl", "keras", "h5py", "py.warnings")


@dataclass
class Caught:
    """What TensorFlow wrote to stderr while it was muted."""

    text: str = ""

    def lines(self, needle: str) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if needle in line]


@contextmanager
def quiet():
    """Mute fd 2 (C++ logs), Python warnings and library loggers; yield a ``Caught`` filled on exit."""
    caught = Caught()
    _environment()
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved_fd = _dup(2)
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR + 10)
        if saved_fd is not None:
            os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            if saved_fd is not None:
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            sink.seek(0)
            caught.text = sink.read(CAUGHT_MAX).decode("utf-8", "replace")


def _dup(fd: int):
    try:
        return os.dup(fd)
    except OSError:  # no fd 2 (some embedded interpreters): nothing to mute
        return None


def _environment() -> None:
    """Settings TensorFlow and Keras read once, at import: set before the first import only."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def version(dist: str) -> str:
    """Installed version of a distribution, read from metadata (imports nothing)."""
    return installed_version(dist) or "not installed"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def tensorflow():
    """``import tensorflow`` quietly, or EnvironmentProblem (exit 3) naming the versions involved."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet():
        try:
            import tensorflow as tf
        except ImportError as exc:
            if version("tensorflow") == "not installed":
                raise EnvironmentProblem("TensorFlow is not installed", hint=INSTALL_HINT) from None
            raise EnvironmentProblem(
                f"TensorFlow {version('tensorflow')} cannot be imported with NumPy {version('numpy')} and "
                f"protobuf {version('protobuf')}: {first_line(exc)}", hint=INSTALL_HINT) from None
        except Exception as exc:  # binary incompatibilities surface as anything
            raise EnvironmentProblem(
                f"TensorFlow {version('tensorflow')} fails to import with NumPy {version('numpy')}: "
                f"{type(exc).__name__}: {first_line(exc)}", hint=INSTALL_HINT) from None
        tf.get_logger().setLevel(logging.ERROR)
        try:
            tf.autograph.set_verbosity(0)
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except (ImportError, AttributeError):
            pass
    return tf


def keras():
    """Keras 3 on the TensorFlow backend (the only backend tf2onnx can trace). Returns ``(keras, note)``,
    the note saying when a KERAS_BACKEND setting was overridden."""
    note = None
    if "keras" not in sys.modules:
        chosen = os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = "tensorflow"
        if chosen and chosen != "tensorflow":
            note = f"KERAS_BACKEND={chosen} overridden: modelport runs Keras models on TensorFlow"
    tensorflow()
    with quiet():
        try:
            import keras as k
        except Exception as exc:
            raise EnvironmentProblem(f"Keras {version('keras')} cannot be imported with TensorFlow "
                                     f"{version('tensorflow')}: {first_line(exc)}", hint=INSTALL_HINT) from None
    backend = k.backend.backend()
    if backend != "tensorflow":
        raise EnvironmentProblem(f"Keras was already imported with the {backend} backend in this process",
                                 hint="set KERAS_BACKEND=tensorflow before importing keras")
    if not k.__version__.startswith("3"):
        raise EnvironmentProblem(f"Keras {k.__version__} is installed; modelport needs Keras 3",
                                 hint="pip install 'keras>=3'")
    return k, note


def tf2onnx():
    """``import tf2onnx`` quietly, or EnvironmentProblem (exit 3) naming tf2onnx, TensorFlow and NumPy."""
    tensorflow()
    if version("tf2onnx") == "not installed":
        raise EnvironmentProblem("tf2onnx is not installed", hint=INSTALL_HINT)
    with quiet():
        try:
            import tf2onnx as t
            from tf2onnx import convert, tf_loader  # noqa: F401  (what the conversion uses)
        except Exception as exc:  # old tf2onnx on new NumPy fails with AttributeError (np.cast, np.object)
            raise EnvironmentProblem(
                f"tf2onnx {version('tf2onnx')} cannot be imported with TensorFlow {version('tensorflow')}, "
                f"NumPy {version('numpy')} and protobuf {version('protobuf')} "
                f"({type(exc).__name__}: {first_line(exc)})",
                hint="install a tf2onnx release that supports them, or pin NumPy/TensorFlow to versions it does") \
                from None
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return t
