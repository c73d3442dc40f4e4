"""Same inputs through the native and the ONNX model, one verdict; and conversion with its check."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

import convert
from convert import onnxfile
from convert.atomic import snapshot
from convert.errors import BadInputError, UnsupportedModelError

from .compare import DEFAULT_TOLERANCES, OutputComparison, Tolerance
from .inputs import InputSource, auto_batch_size, chain, read_inputs, synthesize
from .localize import describe, localize
from .noise import NoiseMeter
from .report import Attempt, Report
from .run import OnnxRunner

DEFAULT_ROWS = 1000


class OnnxRunFailed(BadInputError):
    """onnxruntime raised while running the graph: bad input for a given file, a failed attempt for a
    conversion (``convert_and_check`` then tries the next remedy)."""


def _loaded(native, hints: convert.Hints | None) -> convert.Loaded:
    if isinstance(native, convert.Loaded):
        return native
    return convert.load(native, hints or convert.Hints())


def _input_source(loaded: convert.Loaded, inputs, rows: int, seed: int) -> InputSource:
    """The user's rows (a file, a dict of arrays, an InputSource), followed by ``rows`` synthesized rows that
    probe the model's boundaries; ``rows=0`` keeps only the user's."""
    synthesized = synthesize(loaded.signature, rows=rows, seed=seed) if rows else None
    if inputs is None:
        if synthesized is None:
            raise BadInputError("nothing to compare on: no --inputs and --rows 0")
        return synthesized
    if isinstance(inputs, InputSource):
        given = inputs
    elif isinstance(inputs, Mapping):
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        n = len(next(iter(arrays.values())))
        given = InputSource("arrays given", n, lambda bs: ({k: v[i:i + bs] for k, v in arrays.items()}
                                                          for i in range(0, n, bs)))
    else:
        given = read_inputs(inputs, loaded.signature)
    return chain(given, synthesized)


@dataclass
class Prepared:
    """Both models ready to run on the same rows: the native model, the onnxruntime session, the rows, and
    how the native input/output names map onto the graph's (``notes`` says where they matched by position)."""

    loaded: convert.Loaded
    runner: OnnxRunner
    source: InputSource
    input_map: dict[str, str]
    output_map: dict[str, str]
    notes: list[str]
    onnx_path: str | None


def prepare(native, onnx_model, *, inputs=None, rows: int = DEFAULT_ROWS, seed: int = 0,
            hints: convert.Hints | None = None, onnx_path: str | None = None,
            threads: int | None = None) -> Prepared:
    """Load the native model (a path, Artifact or Loaded), open ``onnx_model`` (a path or ModelProto) in
    onnxruntime (``threads``: its intra-op threads), line up their names and the rows to run: what ``check``
    and ``bench`` share."""
    loaded = _loaded(native, hints)
    runner = _onnx_runner(onnx_model, onnx_path, threads)
    if isinstance(onnx_model, (str, Path)):
        onnx_path = str(onnx_model)
    source = _input_source(loaded, inputs, rows, seed)
    input_map, output_map, notes = _match_names(loaded, runner, onnx_path)
    return Prepared(loaded, runner, source, input_map, output_map, notes, onnx_path)


def check(native, onnx_model, *, inputs=None, rows: int = DEFAULT_ROWS, seed: int = 0,
          rtol: float | None = None, atol: float | None = None,
          tolerances: Mapping[str, Tolerance] | None = None, batch_size: int | None = None,
          hints: convert.Hints | None = None, onnx_path: str | None = None) -> Report:
    """Run the native model (a path, Artifact or Loaded) and ``onnx_model`` (a path or ModelProto) on the
    same inputs (synthesized, a file, or a dict of arrays) and compare every output."""
    t0 = time.perf_counter()
    prepared = prepare(native, onnx_model, inputs=inputs, rows=rows, seed=seed, hints=hints, onnx_path=onnx_path)
    loaded, runner, source, onnx_path = prepared.loaded, prepared.runner, prepared.source, prepared.onnx_path
    input_map, output_map, notes = prepared.input_map, prepared.output_map, list(prepared.notes)
    per_output = dict(tolerances or {})
    _known_outputs(loaded, per_output)
    comparisons = _comparisons(loaded, runner, output_map, per_output, rtol, atol)
    meter = NoiseMeter(loaded, runner)
    timings = {"native": 0.0, "onnx": 0.0, "noise": 0.0}
    offset = 0
    for batch in source.batches(batch_size or auto_batch_size(loaded.signature)):
        t = time.perf_counter()
        try:
            native_out = loaded.run(batch)
        except Exception as exc:
            raise BadInputError(f"the native model rejects these inputs: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}",
                                path=loaded.artifact.path, hint="check the input file's columns and dtypes") from None
        timings["native"] += time.perf_counter() - t
        t = time.perf_counter()
        try:
            onnx_out = runner({input_map[k]: v for k, v in batch.items() if k in input_map})
        except Exception as exc:
            raise OnnxRunFailed(f"onnxruntime fails on these inputs: {str(exc).splitlines()[0][:200]}",
                                path=onnx_path) from None
        timings["onnx"] += time.perf_counter() - t
        t = time.perf_counter()
        noise = meter.measure(comparisons, native_out, {n: onnx_out[output_map[n]] for n in comparisons}, batch, notes)
        timings["noise"] += time.perf_counter() - t
        for name, comp in comparisons.items():
            comp.update(native_out[name], onnx_out[output_map[name]], offset, batch, noise=noise.get(name))
        offset += len(next(iter(batch.values())))
    if offset == 0:
        raise BadInputError("no rows to compare", path=source.description)
    outputs = [c.result() for c in comparisons.values()]
    verdict = "pass" if all(o.passed for o in outputs) else "fail"
    timings["check"] = time.perf_counter() - t0
    return Report(
        verdict=verdict, native=str(loaded.artifact.path), onnx=onnx_path, model=loaded.facts.get("estimator", ""),
        outputs=outputs, inputs={"source": source.description, "rows": offset},
        notes=list(loaded.notes) + notes, timings=timings,
        diagnosis=describe(loaded, outputs) if verdict == "fail" else None,
        migration=list(loaded.facts.get("migrated") or []),
    )


def _onnx_runner(onnx_model, onnx_path, threads: int | None = None) -> OnnxRunner:
    """onnxruntime reads a path itself (no onnx import on the happy path); when it cannot, the onnx
    package explains why in one line (missing, empty, not a model...)."""
    if not isinstance(onnx_model, (str, Path)):
        return OnnxRunner(onnx_model, path=onnx_path, threads=threads)
    path = Path(onnx_model)
    if path.is_file() and path.stat().st_size:
        try:
            return OnnxRunner(str(path), path=path, threads=threads)
        except BadInputError:
            pass
    return OnnxRunner(onnxfile.load(path), path=path, threads=threads)


def _match_names(loaded, runner: OnnxRunner, onnx_path):
    """Map native input/output names onto the ONNX graph's; by name, else by position when counts match."""
    notes = []
    native_in = list(loaded.signature.input_names)
    if set(native_in) <= set(runner.input_names):
        input_map = {n: n for n in native_in}
    elif len(native_in) == len(runner.input_names):
        input_map = dict(zip(native_in, runner.input_names))
        notes.append("inputs matched by position: " + ", ".join(f"{a}→{b}" for a, b in input_map.items() if a != b))
    else:
        raise BadInputError(f"takes inputs ({', '.join(runner.input_names)}) but the native model takes "
                            f"({', '.join(native_in)})", path=onnx_path, hint="was it converted from this model?")
    missing = [n for n in runner.input_names if n not in input_map.values()]
    if missing:
        raise BadInputError(f"needs input(s) {', '.join(missing)} the native model does not take", path=onnx_path)
    native_out = list(loaded.signature.output_names)
    named = [n for n in native_out if n in runner.output_names]
    if len(named) == len(native_out):
        output_map = {n: n for n in native_out}
    elif not named and len(native_out) <= len(runner.output_names):  # a graph that names its outputs its own way
        output_map = dict(zip(native_out, runner.output_names))
        notes.append("outputs matched by position: " + ", ".join(f"{a}→{b}" for a, b in output_map.items() if a != b))
    else:  # some names agree, so the others are different outputs, not the same ones named otherwise
        lacking = [n for n in native_out if n not in runner.output_names]
        raise BadInputError(f"gives outputs ({', '.join(runner.output_names)}) but the native model gives "
                            f"({', '.join(native_out)}): nothing corresponds to {', '.join(lacking)}",
                            path=onnx_path, hint="was it converted from this model?")
    _outputs_correspond(loaded, runner, output_map, onnx_path)
    return input_map, output_map, notes


_FLOAT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)", "tensor(bfloat16)")


def _outputs_correspond(loaded, runner: OnnxRunner, output_map: dict[str, str], onnx_path) -> None:
    """Each paired output must be the same kind of thing: labels a tensor, scores and probabilities floats
    (or ZipMap's dicts), probabilities one column per class. A pair that is not compares two different
    quantities: that is the wrong ONNX file (exit 2), not a numeric disagreement."""
    shapes = {o.name: o.shape for o in runner.session.get_outputs()}
    for native, graph in output_map.items():
        spec, onnx_type = loaded.signature.output(native), runner.output_types.get(graph, "")
        if spec.kind == "label":
            fits = onnx_type.startswith("tensor(")
        elif spec.kind in ("probabilities", "scores"):
            fits = onnx_type in _FLOAT_TYPES or onnx_type.startswith("seq(map(")
        else:
            fits = True
        if not fits:
            raise BadInputError(f"its output {graph} is {onnx_type}, which cannot be the native model's {spec.kind} "
                                f"output {native}", path=onnx_path, hint="was it converted from this model?")
        probabilities = spec.scores_from and output_map.get(spec.scores_from)
        if probabilities and spec.classes and loaded.signature.output(spec.scores_from).kind == "probabilities":
            shape = shapes.get(probabilities) or []
            columns = shape[-1] if len(shape) == 2 else None
            if isinstance(columns, int) and columns != len(spec.classes):
                raise BadInputError(f"its output {probabilities} has {columns} column(s) but the native model has "
                                    f"{len(spec.classes)} classes", path=onnx_path,
                                    hint="was it converted from this model?")


def _known_outputs(loaded, tolerances: Mapping[str, Tolerance] | None) -> None:
    """A tolerance for an output the model does not have would be silently ignored: refuse it."""
    names = loaded.signature.output_names
    unknown = [name for name in (tolerances or {}) if name not in names]
    if unknown:
        raise BadInputError(f"--tol names output {', '.join(map(repr, unknown))}, which this model does not have",
                            path=loaded.artifact.path, hint=f"its outputs are: {', '.join(names)}")


def _comparisons(loaded, runner, output_map, per_output, rtol, atol) -> dict[str, OutputComparison]:
    comps = {}
    for spec in loaded.signature.outputs:
        onnx_type = runner.output_types.get(output_map[spec.name], "")
        tol = per_output.get(spec.name)
        source = "--tol" if tol is not None else None
        if tol is None and (rtol is not None or atol is not None):
            base = _dtype_default(onnx_type)
            tol = Tolerance(rtol if rtol is not None else base.rtol, atol if atol is not None else base.atol)
            source = "--rtol/--atol"
        comps[spec.name] = OutputComparison(spec.name, spec.kind, tol, None, spec.classes, source=source,
                                            decided_by=spec.decided_by)
    return comps


def _dtype_default(onnx_type: str) -> Tolerance:
    name = {"tensor(double)": "float64", "tensor(float16)": "float16"}.get(onnx_type, "float32")
    return Tolerance(*DEFAULT_TOLERANCES[name])


# ---------------------------------------------------------------------------------------------
# convert + check + remedies


@dataclass
class ConversionResult:
    """What ``compat.convert`` did: the file written (or None), the report of the conversion kept,
    and every attempt."""

    output: Path | None
    report: Report | None
    converted: convert.Converted | None
    loaded: convert.Loaded
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report is not None and self.report.passed


def default_output(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".onnx") if path.suffix else path.with_name(path.name + ".onnx")


def _claim_default_output(target: Path, artifact) -> None:
    """The default output replaces only modelport's own conversion of this same file (``model.keras`` and
    ``model.h5`` both default to ``model.onnx``): any other file there is refused, never silently replaced."""
    if not target.exists():
        return
    source = onnxfile.source_of(target)
    name = Path(artifact.path).name
    if source is not None and (source["name"] == name or source["sha256"] == artifact.sha256):
        return
    what = f"holds the conversion of {source['name']}" if source else "exists and was not converted by modelport"
    raise BadInputError(f"{what}; converting {name} would replace it", path=target,
                        hint=f"name the output: -o {target.with_name(name + '.onnx')}, or -o {target} to replace it")


@dataclass
class RemedyEvent:
    """One thing that happened while trying a remedy: ``unavailable`` (it does not convert: ``error``),
    ``converted``, then ``pass``/``fail`` (``report``) or ``does-not-run`` (``error``: OnnxRunFailed)."""

    remedy: str | None
    status: str
    converted: convert.Converted | None = None
    report: Report | None = None
    error: Exception | None = None
    started: float = 0.0


def remedy_attempts(loaded: convert.Loaded, check_one=None, opset: int | None = None):
    """The adapter's remedies in order, each converted and then, when ``check_one(converted) -> Report`` is
    given, checked; yields a RemedyEvent as each step ends. Lazy: a consumer that has what it needs stops
    iterating, and one that reports steps as they happen sees each conversion before its check runs."""
    for remedy in convert.remedies(loaded):
        started = time.perf_counter()
        try:
            converted = convert.to_onnx(loaded, opset=opset, remedy=remedy)
        except UnsupportedModelError as exc:
            yield RemedyEvent(remedy, "unavailable", error=exc, started=started)
            continue
        yield RemedyEvent(remedy, "converted", converted, started=started)
        if check_one is None:
            continue
        try:
            report = check_one(converted)
        except OnnxRunFailed as exc:
            yield RemedyEvent(remedy, "does-not-run", converted, error=exc, started=started)
            continue
        yield RemedyEvent(remedy, report.verdict, converted, report, started=started)


def convert_and_check(source, output: str | Path | None = None, *, opset: int | None = None, inputs=None,
                      rows: int = DEFAULT_ROWS, seed: int = 0, rtol: float | None = None, atol: float | None = None,
                      tolerances: Mapping[str, Tolerance] | None = None, check: bool = True, keep_failed: bool = False,
                      batch_size: int | None = None, hints: convert.Hints | None = None,
                      write: bool = True) -> ConversionResult:
    """Load, convert, check; when the check fails, try the adapter's remedies in order. Writes the ONNX
    file (atomically) only for a conversion that passed, unless ``keep_failed`` (or ``check=False``)."""
    t0 = time.perf_counter()
    loaded = _loaded(source, hints)
    _known_outputs(loaded, tolerances)
    target = Path(output) if output else default_output(loaded.artifact.path)
    if write and target.resolve() == Path(loaded.artifact.path).resolve():
        raise BadInputError("the output would overwrite the input", path=target, hint="choose another -o")
    if write and not output:
        _claim_default_output(target, loaded.artifact)
    baseline = snapshot(target) if write else None  # what the target was: a racing writer is detected at rename
    source_inputs = _input_source(loaded, inputs, rows, seed) if check else None

    def check_one(converted: convert.Converted) -> Report:
        return globals()["check"](loaded, converted.model, inputs=source_inputs, rows=0, rtol=rtol, atol=atol,
                                  tolerances=tolerances, batch_size=batch_size, onnx_path=str(target))

    attempts: list[Attempt] = []
    best: tuple[Report, convert.Converted] | None = None
    noisy_pass: tuple[Report, convert.Converted] | None = None  # agrees only within the native noise
    last_unsupported: UnsupportedModelError | None = None
    for event in remedy_attempts(loaded, check_one if check else None, opset):
        seconds = time.perf_counter() - event.started
        if event.status == "unavailable":
            attempts.append(Attempt(event.remedy, "unavailable", reason=event.error.message, seconds=seconds))
            last_unsupported = event.error
        elif event.status == "converted":
            if not check:
                attempts.append(Attempt(event.remedy, "unchecked", seconds=seconds))
                return _finish(loaded, event.converted, None, attempts, target, write, t0, opset, baseline)
        elif event.status == "does-not-run":
            attempts.append(Attempt(event.remedy, "fail", reason=event.error.message, seconds=seconds))
            last_unsupported = UnsupportedModelError(f"the converted graph does not run: {event.error.message}",
                                                     path=loaded.artifact.path)
        else:
            report = event.report
            mismatched = sum(o.mismatched for o in report.outputs)
            attempts.append(Attempt(event.remedy, report.verdict, mismatched, seconds=seconds,
                                    within_noise=_within_noise(report)))
            if report.passed and not _within_noise(report):
                return _finish(loaded, event.converted, report, attempts, target, write, t0, opset, baseline)
            if report.passed:  # keep it, but a later remedy may agree without leaning on the noise
                noisy_pass = noisy_pass or (report, event.converted)
                continue
            if best is None or mismatched < sum(o.mismatched for o in best[0].outputs):
                best = (report, event.converted)
    if noisy_pass is not None:
        report, converted = noisy_pass
        return _finish(loaded, converted, report, attempts, target, write, t0, opset, baseline)
    if best is None:
        raise last_unsupported or UnsupportedModelError("no conversion available", path=loaded.artifact.path)
    report, converted = best

    def check_part(part: convert.Loaded, model) -> Report:
        return globals()["check"](part, model, inputs=source_inputs, rows=0, batch_size=batch_size,
                                  onnx_path=str(target))

    t = time.perf_counter()
    report.diagnosis = localize(loaded, report.outputs, converted.remedy, check_part)
    report.timings["diagnose"] = time.perf_counter() - t
    return _finish(loaded, converted, report, attempts, target, write and keep_failed, t0, opset, baseline)


def _within_noise(report: Report) -> int:
    """How many elements or labels agree only within the native model's measured noise."""
    return sum(o.noise_elements + o.excused for o in report.outputs)


def _finish(loaded, converted, report, attempts, target, write, t0, opset, baseline=None):
    written = onnxfile.save(converted.model, target, unchanged_since=baseline) if write else None
    if report is not None:
        report.remedies = attempts
        report.onnx = str(target)
        report.conversion = {
            "remedy": converted.remedy, "notes": converted.notes, "opset": onnxfile.opset_of(converted.model),
            "steps": {k: round(v, 3) for k, v in converted.steps.items()}, "seconds": round(converted.seconds, 3),
            "written": written is not None,
        }
        report.timings["load"] = loaded.seconds
        report.timings["total"] = time.perf_counter() - t0
    return ConversionResult(written, report, converted, loaded, attempts)
