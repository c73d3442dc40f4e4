"""The native model's own noise, measured where a check needs it.

An element that fails its default tolerance, or a label that differs, is judged against what the native
model itself does when its float parameters are perturbed at the graph's precision: the adapter's
``NativeProbe`` gives the copies (``Loaded.probe``; scikit-learn has one, other frameworks keep the dtype
defaults). Only the rows that fail without it are re-run, so a check whose rows all agree costs nothing
more. ``compare`` decides what the measurements excuse.
"""

from __future__ import annotations

import numpy as np

from .compare import EPS, NOISE_DRAWS, Noise

_FLOAT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)", "tensor(bfloat16)")


def graph_precision(runner) -> str:
    """The float type the graph's results carry: float32 if any float output (or, without one, any input)
    is float32 or narrower, else float64. Noise floors are measured at that precision."""
    types = [t for t in runner.output_types.values() if t in _FLOAT_TYPES]
    types = types or [t for t in runner.inputs.values() if t in _FLOAT_TYPES]
    return "float64" if types and all(t == "tensor(double)" for t in types) else "float32"


class NoiseMeter:
    """Measures, for one check, the native noise on the rows that need it. The perturbed copies of the
    model (deep copies) are made on first need and dropped with the meter."""

    def __init__(self, loaded, runner):
        self.probe = getattr(loaded, "probe", None)
        self.precision = graph_precision(runner)
        self._copies = None

    def measure(self, comparisons: dict, native_out: dict, onnx_out: dict, batch: dict,
                notes: list[str]) -> dict[str, Noise]:
        """For each output of this batch (``onnx_out`` named like the native outputs): each perturbed copy's
        output on the rows that fail without it, and for labels the quantity ``predict`` compares, exact and
        perturbed. Empty when every row agrees or the model cannot be perturbed (then ``notes`` says so)."""
        if self.probe is None:
            return {}
        suspects = None
        for name, comp in comparisons.items():
            if comp.overridden and comp.stats.kind != "label":
                continue
            rows = comp.suspects(native_out[name], onnx_out[name])
            suspects = rows if suspects is None else suspects | rows
        if suspects is None or not suspects.any():
            return {}
        rows = np.flatnonzero(suspects)
        sub = {k: np.asarray(v)[rows] for k, v in batch.items()}
        try:
            if self._copies is None:
                self._copies = [self.probe.perturbed(EPS[self.precision], draw) for draw in range(NOISE_DRAWS)]
            draws = [c.run(sub) for c in self._copies]
            deciding = self.probe.deciding(sub)
            deciding_draws = [c.deciding(sub) for c in self._copies] if deciding else []
        except Exception as exc:  # noqa: BLE001 -- a model that cannot run perturbed gives no evidence
            note = f"noise floor not measured ({type(exc).__name__}: {str(exc)[:120]}): the default tolerances stand"
            if note not in notes:
                notes.append(note)
            self.probe = None  # once is enough: the rest of the check keeps the defaults
            return {}
        return {name: Noise(rows, [np.asarray(d[name]) for d in draws], deciding.get(name),
                            [d[name] for d in deciding_draws if name in d], self.precision)
                for name in comparisons if all(name in d for d in draws)}
