"""Proof against the original: does a migrated model compute what the release that saved it computed?

Where that scikit-learn release still installs here (wheels for this CPython exist from ``INSTALLS_FROM`` on), a
throwaway virtualenv of it is built once (``matrix.ensure_env``, cached like the version matrix's) and the file is
loaded there through the same gate, as that release reads it, with nothing migrated; it runs on the same
synthesized rows as the migrated model here, and every output is compared, the migrated model's and, when one is
given, its ONNX graph's. Where the release no longer installs, the adapter's independent evaluation from the fitted
arrays stands in (its ``independent`` hook: tree traversal, coefficients, support vectors, ...). Where neither
exists, the proof says so: migrated, not verified against the original.

``python -m compat.records.original FILE ROWS.npz OUT.npz`` is what runs inside the old environment (it imports
only numpy and ``convert``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INSTALLS_FROM = (1, 1, 3)  # scikit-learn's oldest wheels for CPython 3.11 (STACK.md)
# what an old release's environment needs besides the release itself: (before release, pins), first match wins.
# numpy 2 came after 1.4 (STACK.md); scipy 1.13.1 is the release the fixtures of 1.2.2 and 1.3.2 were written with.
ERA_PINS = (((1, 4), ("numpy<2", "scipy==1.13.1", "pandas<2.3")),
            ((99,), ("pandas",)))
DEFAULT_ROWS = 256
TOLERANCE = {"float64": (1e-7, 1e-9)}  # migrated vs original: both scikit-learn in double


@dataclass
class Proof:
    """How a migrated model was checked against what the saving release computes. ``method``: ``original``
    (that release, in its own environment), ``independent`` (evaluated from the fitted arrays), ``none``."""

    method: str
    how: str
    agrees: bool | None = None  # the migrated model
    onnx_agrees: bool | None = None  # its ONNX graph, when one was given
    rows: int = 0
    outputs: list[dict] = field(default_factory=list)  # migrated model vs the reference, per output
    onnx: list[dict] | None = None  # the ONNX graph vs the reference, per output
    environment: dict = field(default_factory=dict)  # versions of the original's environment
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if self.method == "none":
            return "not verified"
        return "agrees" if self.agrees else "disagrees"

    def line(self) -> str:
        """One sentence: what was compared with what, on how many rows, and the largest difference."""
        if self.method == "none":
            return f"migrated, not verified against the original ({self.how})"
        worst = _worst(self.outputs)
        against = "the original" if self.method == "original" else "an independent evaluation"
        text = (f"{'agrees' if self.agrees else 'DISAGREES'} with {against} ({self.how}) on {self.rows} rows, "
                f"largest difference {worst}")
        if self.onnx is not None:
            text += (f"; its ONNX graph {'agrees' if self.onnx_agrees else 'DISAGREES'} (largest difference "
                     f"{_worst(self.onnx)})")
        return text

    def to_dict(self) -> dict:
        return {"method": self.method, "how": self.how, "verdict": self.verdict, "agrees": self.agrees,
                "onnx_agrees": self.onnx_agrees, "rows": self.rows, "outputs": self.outputs, "onnx": self.onnx, "environment": self.environment,
                "seconds": round(self.seconds, 2)}


def _worst(outputs: list[dict]) -> str:
    errors = [o["max_abs_error"] for o in outputs if o.get("max_abs_error") is not None]
    mismatched = sum(o["mismatched"] for o in outputs)
    text = f"{max(errors):.3g}" if errors else "0"
    return text + (f", {mismatched} value(s) outside tolerance" if mismatched else "")


def original_pins(saved: str | None) -> list[str] | None:
    """The pins that rebuild the environment of scikit-learn ``saved``, or None when it does not install here."""
    from convert import versions

    release = versions.parse(saved) if saved and saved[:1].isdigit() else None
    if release is None or versions.cmp(release, INSTALLS_FROM) < 0 or sys.version_info[:2] != (3, 11):
        return None
    era = next(pins for before, pins in ERA_PINS if versions.cmp(release, before) < 0)
    return [f"scikit-learn=={saved}", *era]


def prove(loaded, onnx_model=None, *, rows: int = DEFAULT_ROWS, seed: int = 0, original: bool = True,
          state_key: str | None = None) -> Proof:
    """Compare ``loaded`` (a migrated model) and ``onnx_model`` (optional: a ModelProto, bytes or path) with the
    release that saved it, in its own environment when ``original`` and it installs; else with the adapter's
    independent evaluation; else say it was not verified. ``state_key``: the estimator taken from a dict/tuple."""
    from compat.checks.inputs import synthesize

    t0 = time.perf_counter()
    saved = loaded.artifact.saved_with.get("sklearn")
    feeds = _feeds(synthesize(loaded.signature, rows=rows, seed=seed), rows)
    pins = original_pins(saved) if original else None
    reference = None
    if pins is not None:
        reference, environment = reference_outputs(loaded.artifact.path, feeds, pins, state_key)
        method = "original"
        how = (f"scikit-learn {environment.get('scikit-learn', saved)} with numpy {environment.get('numpy', '?')} "
               "in a throwaway virtualenv")
    else:
        from convert import adapters

        hook = getattr(adapters.get(loaded.adapter), "independent", None)
        independent = hook(loaded) if hook else None
        environment = {}
        if independent is None:
            why = (f"scikit-learn {saved} does not install on this Python" if saved else "no saved-with release") + \
                  f", and {loaded.facts.get('estimator') or 'this model'} has no exact evaluation from its arrays here"
            return Proof("none", why, None, seconds=time.perf_counter() - t0)
        run, method, how = independent[0], "independent", independent[1]
        reference = run(feeds)
    migrated = loaded.run(feeds)
    outputs = _compare(loaded, reference, migrated, feeds, double=True)
    onnx = None
    if onnx_model is not None:
        from compat.checks.run import OnnxRunner

        graph = OnnxRunner(onnx_model)(feeds)
        onnx = _compare(loaded, reference, graph, feeds, double=False)
    agrees = all(o["passed"] for o in outputs)
    onnx_agrees = None if onnx is None else all(o["passed"] for o in onnx)
    return Proof(method, how, agrees, onnx_agrees, rows, outputs, onnx, environment, time.perf_counter() - t0)


def _feeds(source, rows: int) -> dict[str, np.ndarray]:
    parts = list(source.batches(rows))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _compare(loaded, reference: dict, candidate: dict, feeds: dict, double: bool) -> list[dict]:
    from compat.checks.compare import OutputComparison, Tolerance, default_tolerance

    out = []
    for spec in loaded.signature.outputs:
        want, got = np.asarray(reference[spec.name]), np.asarray(candidate[spec.name])
        if want.dtype.kind in "OUS" or got.dtype.kind in "OUS":
            want, got = want.astype(str), got.astype(str)
        tol = Tolerance(*TOLERANCE["float64"]) if double else (
            default_tolerance(want.dtype, got.dtype) if "f" in (want.dtype.kind, got.dtype.kind) else None)
        scores = reference.get(spec.scores_from) if spec.scores_from else None
        scores_tol = Tolerance(*TOLERANCE["float64"]) if spec.scores_from else None
        comp = OutputComparison(spec.name, spec.kind, tol, scores_tol, spec.classes)
        comp.update(want, got, 0, feeds, scores)
        out.append(comp.stats.to_dict())
    return out


# ------------------------------------------------------------------------------------ the original's side


def reference_outputs(path, feeds: dict[str, np.ndarray], pins: list[str], state_key: str | None = None,
                      timeout: float = 900) -> tuple[dict[str, np.ndarray], dict]:
    """(outputs, versions): ``path`` loaded and run on ``feeds`` inside the environment ``pins`` describe (built
    once and cached by ``matrix.ensure_env``)."""
    import subprocess

    from convert.errors import EnvironmentProblem

    from .matrix import ensure_env, telling_line

    env, error = ensure_env(pins, None)
    if error:
        raise EnvironmentProblem(f"cannot build the original environment ({' '.join(pins)}): {error}")
    root = Path(__file__).resolve().parents[2]  # this checkout: its convert/ is the one imported there
    with tempfile.TemporaryDirectory() as tmp:
        rows, out = Path(tmp) / "rows.npz", Path(tmp) / "out.npz"
        np.savez(rows, **{k: _storable(v) for k, v in feeds.items()})
        cmd = [str(env / "bin" / "python"), "-m", "compat.records.original", str(Path(path).resolve()), str(rows),
               str(out)] + (["--state-key", str(state_key)] if state_key is not None else [])
        minimal = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "PYTHONNOUSERSITE": "1",
                   "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=minimal)
        if done.returncode != 0 or not out.exists():
            raise EnvironmentProblem(f"the original environment ({' '.join(pins)}) could not run it: "
                                     f"{telling_line(done.stderr or done.stdout) or f'exit {done.returncode}'}")
        with np.load(out, allow_pickle=False) as data:
            outputs = {k: data[k] for k in data.files}
        environment = json.loads(out.with_suffix(".json").read_text())
    return outputs, environment


def _storable(value) -> np.ndarray:
    value = np.asarray(value)
    return value.astype(str) if value.dtype.kind == "O" else value


def main(argv: list[str] | None = None) -> int:
    """Inside the original environment: load FILE through the gate, run it on ROWS.npz, write OUT.npz (+ .json
    with the versions). Exit 2 with one line when it cannot."""
    import argparse
    from importlib import metadata

    import convert
    from convert.errors import ModelportError

    parser = argparse.ArgumentParser(prog="python -m compat.records.original")
    parser.add_argument("file")
    parser.add_argument("rows")
    parser.add_argument("out")
    parser.add_argument("--state-key")
    args = parser.parse_args(argv)
    try:
        loaded = convert.load(args.file, state_key=args.state_key)
        with np.load(args.rows, allow_pickle=False) as data:
            feeds = {k: data[k].astype(object) if data[k].dtype.kind == "U" else data[k] for k in data.files}
        outputs = loaded.run(feeds)
    except ModelportError as exc:
        sys.stderr.write(f"modelport: {exc.line()}\n")
        return exc.exit_code
    np.savez(args.out, **{k: _storable(v) for k, v in outputs.items()})
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for dist in ("scikit-learn", "numpy", "scipy", "joblib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    Path(args.out).with_suffix(".json").write_text(json.dumps(versions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
