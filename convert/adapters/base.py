"""What every adapter gives back, and the verbs it implements."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    import numpy as np

from ..artifact import Artifact
from ..errors import ModelClassError
from ..spec import Signature, TensorSpec

CLASS_SPEC_HINT = "give pkg.module:Class or path/to/file.py:Class"


@dataclass(frozen=True)
class ClassSpec:
    """A model class as people name it: ``pkg.module:Class`` (a module importable from the current folder) or
    ``path/to/file.py:Class`` (a file). Parsing reads and imports nothing: callers decide where a file path
    is relative to, and whether whoever named it may make modelport import it."""

    where: str  # the module name or the file path
    attr: str  # the class, possibly dotted (Outer.Inner)

    @classmethod
    def parse(cls, text: str) -> ClassSpec:
        where, sep, attr = str(text).rpartition(":")
        if not sep or not where or not attr:
            raise ModelClassError(f"model class {text!r} is not MODULE:CLASS", hint=CLASS_SPEC_HINT)
        return cls(where, attr)

    @property
    def is_file(self) -> bool:
        return self.where.endswith(".py") or "/" in self.where or os.sep in self.where

    def with_where(self, where: str) -> ClassSpec:
        return ClassSpec(where, self.attr)

    def __str__(self) -> str:
        return f"{self.where}:{self.attr}"


@dataclass(frozen=True)
class Hints:
    """What the user told us about a model that its file does not say. Adapters ignore what they
    do not need."""

    trust: bool = False  # run the file's own code (unpickle non-allowlisted globals)
    inputs: tuple[TensorSpec, ...] = ()  # --input specs, overriding what the adapter infers
    model_class: str | None = None  # torch: "pkg.module:Class" or "path/file.py:Class"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    state_key: str | None = None  # torch: where the state dict sits in a checkpoint
    signature_name: str | None = None  # tensorflow: SavedModel signature
    exporter: str | None = None  # torch: "dynamo" | "torchscript"


class NativeProbe(Protocol):
    """What a check may ask of a native model beyond its outputs: how sure its own results are. Adapters
    that can answer (scikit-learn) set ``Loaded.probe``; elsewhere the dtype's default tolerances stand."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs, as ``Loaded.run`` gives them."""

    def deciding(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """For each label output whose decision a continuous quantity describes, that quantity: columns in
        the order of the spec's ``classes`` (argmax decides), or 1-D (a binary margin, positive: classes[1])."""

    def perturbed(self, eps: float, draw: int) -> NativeProbe:
        """The same model with its float parameters perturbed at relative precision ``eps`` (a new copy per
        call; draw 0: rounded to the float type of that precision; later draws: other perturbations of that
        size, deterministic per draw)."""


@dataclass
class Loaded:
    """A native model ready to run. ``run`` returns outputs named exactly as the ONNX graph names them."""

    artifact: Artifact
    model: Any
    signature: Signature
    runner: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    adapter: str
    notes: list[str] = field(default_factory=list)  # what loading did on the user's behalf
    facts: dict = field(default_factory=dict)  # adapter-specific (estimator name, classes, ...)
    seconds: float = 0.0
    probe: NativeProbe | None = None  # how sure the native results are (noise floors, deciding quantities)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner(feeds)


@dataclass
class Converted:
    """An ONNX model and how it was made. ``remedy`` names the precision remedy in use (None: plain)."""

    model: Any  # onnx.ModelProto
    remedy: str | None = None
    notes: list[str] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # step name -> seconds

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


class Adapter(Protocol):
    """One per framework, registered by format in ``convert.adapters``."""

    name: str
    formats: tuple[str, ...]

    def can_load(self, artifact: Artifact) -> bool: ...

    def load(self, artifact: Artifact, hints: Hints) -> Loaded: ...

    def to_onnx(self, loaded: Loaded, opset: int | None = None, remedy: str | None = None) -> Converted: ...

    def remedies(self, loaded: Loaded) -> tuple[str | None, ...]:
        """The conversions to try in order when a check fails; the first is the plain one (None)."""

    # library modules each step imports ("load", "convert", "check"): an audit imports them ahead of a file,
    # outside its clock, with ``warm``
    modules: Mapping[str, tuple[str, ...]]

    def warm(self, step: str) -> list[str]:
        """Import what ``step`` needs (never anything a file names); returns the modules imported now.
        A missing or broken library is left for the step itself to report."""


STEPS = ("load", "convert", "check")


def warm_modules(modules: Mapping[str, tuple[str, ...]], step: str,
                 importers: Mapping[str, Callable] | None = None) -> list[str]:
    """Import the not-yet-imported modules of ``step`` (``importers`` overrides how one is imported, e.g.
    TensorFlow through its quiet importer); errors are swallowed: the step reports them with a reason."""
    import importlib
    import sys
    import warnings

    wanted = [m for m in modules.get(step, ()) if m not in sys.modules]
    for name in wanted:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importers[name]() if importers and name in importers else importlib.import_module(name)
        except Exception:  # noqa: BLE001,S110 -- missing or broken: the step itself says so, with the reason
            pass
    return wanted


class Stopwatch:
    """Times named steps into a dict: ``with watch("export"): ...``."""

    def __init__(self, steps: dict[str, float] | None = None):
        self.steps = steps if steps is not None else {}

    def __call__(self, name: str):
        return _Step(self.steps, name)


class _Step:
    def __init__(self, steps, name):
        self.steps, self.name = steps, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.steps[self.name] = self.steps.get(self.name, 0.0) + time.perf_counter() - self.t0
