"""Legacy rescue: a model file moved to a format that cannot run code, with the evidence that it still computes
what it did.

``rescue`` loads the file through the gate (a file another scikit-learn release wrote migrates, and
``Loaded.facts["migrated"]`` lists what changed), proves the loaded model against the release that saved it
(``original.prove``: that release rebuilt in a throwaway virtualenv, or an independent evaluation from the fitted
arrays, or a plain "not verified"), then writes the target: ONNX converted and checked as ``modelport convert``
does; skops (scikit-learn) or safetensors (a torch module's weights plus its class reference) written, read back
and compared output for output. A provenance file goes beside it (``<output>.provenance.json``): the source's
sha256 and saved-with versions, the migration's changes, how it was verified and the margins.

Nothing is written when the model disagrees with its original, its ONNX graph with it, or the round trip with the
model; the input is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import convert
from convert import adapters
from convert.atomic import write_atomic
from convert.errors import BadInputError
from convert.versions import installed

from .original import DEFAULT_ROWS, TOLERANCE, Proof, prove

PROVENANCE_SCHEMA = "modelport.provenance/1"
TARGETS = ("onnx", "skops", "safetensors")
SUFFIX = {"onnx": ".onnx", "skops": ".skops", "safetensors": ".safetensors"}


@dataclass
class Rescue:
    """What ``rescue`` did: the file written (or None and ``reason``), the proof against the original, the round
    trip or ONNX check, and the provenance written beside the output."""

    source: dict
    to: str
    model: str
    loaded: str  # "migrated" | "as saved"
    migration: list[dict]
    proof: Proof
    output: Path | None = None
    provenance: Path | None = None
    round_trip: dict | None = None
    onnx_check: dict | None = None
    written: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.output is not None

    def to_dict(self) -> dict:
        from ..checks.report import environment

        return {
            "schema": PROVENANCE_SCHEMA, "source": self.source, "model": self.model, "loaded": self.loaded,
            "migration": self.migration,
            "output": {"path": str(self.output) if self.output else None, "format": self.to, **self.written},
            "verification": {"against_original": self.proof.to_dict(), "round_trip": self.round_trip,
                             "onnx_check": self.onnx_check},
            "written": self.passed, "reason": self.reason or None, "notes": self.notes, "environment": environment(),
        }


def default_output(path: str | Path, to: str) -> Path:
    path = Path(path)
    return path.with_name(path.name.split(".", 1)[0] + SUFFIX[to])


def provenance_path(output: Path) -> Path:
    return output.with_name(output.name + ".provenance.json")


def rescue(path, output=None, to: str = "onnx", *, hints: convert.Hints | None = None, rows: int = DEFAULT_ROWS,
           seed: int = 0, original: bool = True) -> Rescue:
    """Load ``path``, prove it against its original, write it as ``to`` with its provenance (see the module)."""
    if to not in TARGETS:
        raise BadInputError(f"cannot migrate to {to!r}", hint=f"use --to {' | '.join(TARGETS)}")
    hints = hints or convert.Hints()
    source = Path(path)
    target = Path(output) if output else default_output(source, to)
    if target.exists() and target.is_dir():
        raise BadInputError("the output is a directory", path=target, hint="give a file name with -o")
    for out in (target, provenance_path(target)):
        if source.exists() and out.resolve() == source.resolve():
            raise BadInputError("the output would overwrite the input", path=out, hint="choose another -o")
    loaded = convert.load(source, hints)
    adapter = adapters.get(loaded.adapter)
    if to != "onnx" and to not in getattr(adapter, "safe_formats", ()):
        allowed = ", ".join(("onnx",) + tuple(getattr(adapter, "safe_formats", ())))
        raise BadInputError(f"--to {to} does not apply to a {loaded.adapter} model", path=source,
                            hint=f"use --to {allowed}")
    migration = list(loaded.facts.get("migrated") or [])
    result = Rescue(_source(loaded, hints), to, loaded.facts.get("estimator") or loaded.adapter,
                    "migrated" if migration else "as saved", migration, Proof("none", "not run"),
                    notes=list(loaded.notes))
    if to == "onnx":
        _to_onnx(result, loaded, target, hints, rows, seed, original)
    else:
        _to_safe(result, loaded, adapter, target, hints, rows, seed, original)
    if result.output is not None:
        result.provenance = write_atomic(provenance_path(target), json.dumps(result.to_dict(), indent=2,
                                                                              default=str) + "\n")
    return result


def _source(loaded, hints) -> dict:
    a = loaded.artifact
    return {"path": str(a.path), "sha256": a.sha256, "size": a.size, "format": a.format,
            "saved_with": dict(a.saved_with), "estimator_key": hints.state_key}


def _proof(loaded, onnx_model, hints, rows, seed, original) -> Proof:
    """Against the release that saved it; a file saved with the installed release needs none."""
    if loaded.adapter != "sklearn":
        return Proof("none", f"a {loaded.adapter} model is not migrated: it loads as saved")
    saved = loaded.artifact.saved_with.get("sklearn")
    if saved and saved == installed("sklearn") and not loaded.facts.get("migrated"):
        return Proof("none", f"saved with scikit-learn {saved}, the release installed here: nothing to prove")
    return prove(loaded, onnx_model, rows=rows, seed=seed, original=original, state_key=hints.state_key)


def _to_onnx(result: Rescue, loaded, target: Path, hints, rows: int, seed: int, original: bool) -> None:
    from convert import onnxfile

    from ..checks.harness import convert_and_check

    converted = convert_and_check(loaded, target, rows=rows, seed=seed, write=False)
    report = converted.report
    result.onnx_check = {"verdict": report.verdict, "rows": report.inputs.get("rows"),
                         "remedy": converted.converted.remedy if converted.converted else None,
                         "outputs": [o.to_dict() for o in report.outputs],
                         "what": "the ONNX graph against the loaded model on synthesized rows (modelport check)"}
    result.proof = _proof(loaded, converted.converted.model, hints, rows, seed, original)
    if not converted.passed:
        result.reason = "the ONNX graph disagrees with the model (every conversion tried); nothing written"
    elif result.proof.agrees is False or result.proof.onnx_agrees is False:
        result.reason = f"{result.proof.line()}; nothing written"
    else:
        result.output = onnxfile.save(converted.converted.model, target)
        result.written = _file_facts(target)


def _to_safe(result: Rescue, loaded, adapter, target: Path, hints, rows: int, seed: int, original: bool) -> None:
    from ..checks.inputs import synthesize

    result.proof = _proof(loaded, None, hints, rows, seed, original)
    if result.proof.agrees is False:
        result.reason = f"{result.proof.line()}; nothing written"
        return
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise BadInputError("output directory does not exist", path=directory, hint="create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        info = adapter.save_safe(loaded, tmp, result.to)
        back = adapter.reload_safe(loaded, tmp, result.to)
        feeds = next(iter(synthesize(loaded.signature, rows=rows, seed=seed).batches(rows)))
        outputs = _round_trip(loaded, back, feeds)
        agrees = all(o["passed"] for o in outputs)
        result.round_trip = {"what": f"{result.to} read back and run on {rows} synthesized rows, compared with the "
                                     "loaded model output for output", "agrees": agrees, "outputs": outputs}
        if not agrees:
            result.reason = f"the {result.to} file read back computes something else; nothing written"
            return
        os.replace(tmp, target)
        tmp = None
        result.output = target
        result.written = dict(info, **_file_facts(target))
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _round_trip(loaded, back, feeds) -> list[dict]:
    from ..checks.compare import OutputComparison, Tolerance

    want, got = loaded.run(feeds), back.run(feeds)
    out = []
    for spec in loaded.signature.outputs:
        a, b = np.asarray(want[spec.name]), np.asarray(got[spec.name])
        tol = Tolerance(*TOLERANCE["float64"]) if "f" in (a.dtype.kind, b.dtype.kind) else None
        comp = OutputComparison(spec.name, spec.kind, tol)
        comp.update(a, b, 0, feeds)
        out.append(comp.stats.to_dict())
    return out


def _file_facts(path: Path) -> dict:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"sha256": digest, "size": path.stat().st_size}
