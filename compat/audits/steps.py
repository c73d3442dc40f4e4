"""What an audit worker does with one file, in the fresh process forked for it: the static facts
(``convert.inspect``, which never runs the file's code), then, unless the audit is static, load, convert
and check, each reported as soon as it is known so a crash is pinned on the step that caused it.

Importing a framework (TensorFlow takes seconds) is not the artifact's time. Each file's process is
forked from a worker slot: when the slot has not imported the file's framework yet, the process asks for
it (a ``warm`` message, sent before anything is loaded) and ends; the slot imports the framework
(``warm_framework``) and the file is started again in a process that has it. Should a process still
have to import something itself, it does so between ``clock`` messages, and the supervisor stops the
artifact's deadline meanwhile.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from convert import formats
from convert.versions import installed



# the diagnosis (and the adapters' knowledge it draws on) is imported when a file needs one, not by a static pass
def classify(exc, artifact=None):
    from .diagnose import classify as diagnose

    return diagnose(exc, artifact)


def refusal(artifact):
    from .diagnose import refusal as diagnose

    return diagnose(artifact)


def disagreement(artifact):
    from .diagnose import disagreement as diagnose

    return diagnose(artifact)


MAX_FINDINGS = 100
CHECK_ROWS = 1000
# detect() refusals that describe a damaged model file rather than a file that is no model
_DAMAGED = {"a damaged zip archive": "zip", "a .npy file with an unreadable header": "npy"}


def run_task(task: dict, send) -> None:
    """Answer one task: ``static`` (or ``skip``), then ``load``/``convert``/``check`` unless static, then
    ``done``; or, before loading, ``warm`` (the framework the slot should import first) and ``done``."""
    import convert
    from convert.errors import BadInputError
    from convert.storage import as_path

    path = as_path(task["path"])  # a store object is scanned in place (ranged reads): see ``task``
    try:
        artifact = convert.inspect(path)
    except BadInputError as exc:
        damaged = next((fmt for prefix, fmt in _DAMAGED.items() if exc.message.startswith(prefix)), None)
        if damaged is None:
            send({"stage": "static", "skip": f"not a model: {_plain(exc.message)}"})
            send({"stage": "done"})
            return
        send({"stage": "static", **_unreadable(path, damaged, exc.message)})
        if not task.get("static"):
            _send_steps(send, [("load", _outcome("failed", f"corrupt: {exc.message}", "corrupt"))])
        send({"stage": "done"})
        return
    except MemoryError:  # an allocation refused at the cap: not a damaged file
        send({"stage": "static", **_unreadable(path, None, "the static scan ran out of memory (allocation refused "
                                               "at the cap)", "out of memory")})
        if not task.get("static"):
            _send_steps(send, [("load", _outcome("out-of-memory", "not loaded: the static scan ran out of memory",
                                                 "out-of-memory"))])
        send({"stage": "done"})
        return
    except Exception as exc:  # noqa: BLE001 -- a scanner bug must cost one row (fail closed), not the worker
        why = f"the static scan failed ({type(exc).__name__}: {str(exc)[:200]})"
        send({"stage": "static", **_unreadable(path, None, why)})
        if not task.get("static"):
            _send_steps(send, [("load", _outcome("failed", f"not loaded: {why}", "other"))])
        send({"stage": "done"})
        return
    skip = _data_only(artifact)
    if skip:
        send({"stage": "static", "skip": skip})
        send({"stage": "done"})
        return
    send({"stage": "static", **static_facts(artifact)})
    if task.get("static"):
        send({"stage": "done"})
        return
    trust = bool(task.get("trust"))
    framework = framework_of(artifact) if _will_load(artifact, trust) else None
    if framework and framework not in task.get("warmed", ()) and not is_warm(framework):
        send({"stage": "warm", "framework": framework})
        send({"stage": "done"})
        return
    sent: list[str] = []
    try:
        for step, outcome in steps(artifact, trust):
            if step == CLOCK:
                send({"stage": CLOCK, **outcome})
                continue
            send({"stage": step, step: outcome})
            sent.append(step)
    except MemoryError:  # RLIMIT_DATA: the step that was running ran out of memory
        running = next(s for s in ("load", "convert", "check") if s not in sent)
        _send_steps(send, [(running, _outcome("out-of-memory", "ran out of memory (allocation refused at the cap)",
                                              "out-of-memory"))], skip_before=sent)
    except Exception as exc:  # noqa: BLE001 -- whatever escapes a step is that step's failure, not the worker's
        running = next(s for s in ("load", "convert", "check") if s not in sent)
        _send_steps(send, [(running, _outcome("failed", f"{type(exc).__name__}: {str(exc)[:300]}", "other"))],
                    skip_before=sent)
    send({"stage": "done"})


def _plain(message: str) -> str:
    return message.replace("not a model file modelport knows: ", "")


def _send_steps(send, given: list, skip_before=()) -> None:
    """Send ``given`` (step, outcome) pairs, then mark the later steps not reached."""
    done = set(skip_before) | {step for step, _ in given}
    for step, outcome in given:
        send({"stage": step, step: outcome})
    for step in ("load", "convert", "check"):
        if step not in done:
            send({"stage": step, step: _outcome("skipped", "not reached")})


def _unreadable(path: Path, fmt: str | None, why: str, kind: str = "corrupt or unreadable") -> dict:
    size = path.stat().st_size if path.is_file() else 0
    return {"format": fmt, "framework": None, "size": size, "sha256": "", "saved_with": {}, "safety": "unknown",
            "findings": [{"what": f"{kind}: {why}", "severity": "unknown", "where": ""}],
            "flagged": []}


def _data_only(artifact) -> str | None:
    """The skip reason for a data file that carries nothing to scan (no pickle, nothing flagged)."""
    data = formats.get(artifact.format).data if artifact.format in formats.FORMATS else None
    if data is None:
        return None
    scan = artifact.details.get("pickle_scan") or {}
    if artifact.safety != "safe" or scan.get("streams") or scan.get("npy_object_arrays"):
        return None
    return data


def static_facts(artifact) -> dict:
    findings = sorted(artifact.findings, key=lambda f: ("unsafe", "suspicious", "unknown", "info").index(f.severity)
                      if f.severity in ("unsafe", "suspicious", "unknown", "info") else 4)
    facts = {
        "format": artifact.format, "framework": artifact.framework, "size": artifact.size, "sha256": artifact.sha256,
        "saved_with": dict(artifact.saved_with), "safety": artifact.safety,
        "findings": [{"what": f.what, "severity": f.severity, "where": f.where} for f in findings[:MAX_FINDINGS]],
        "flagged": [g.qualname for g in artifact.globals if g.verdict != "safe"][:MAX_FINDINGS],
    }
    if len(findings) > MAX_FINDINGS:
        facts["findings"].append({"what": f"{len(findings) - MAX_FINDINGS} more findings not listed",
                                  "severity": "info", "where": ""})
    return facts


def _outcome(status: str, reason: str, category: str | None = None, seconds: float = 0.0, **details) -> dict:
    out = {"status": status, "reason": reason, "seconds": round(seconds, 3)}
    if category:
        out["category"] = category
    if details:
        out["details"] = details
    return out


def _not_reached(why: str):
    yield "convert", _outcome("skipped", why)
    yield "check", _outcome("skipped", why)


CLOCK = "clock"  # a pseudo-step: pause / resume the artifact's deadline around framework imports

# an ONNX file needs onnxruntime only: no adapter
_ONNX_MODULES = {"load": ("onnxruntime",), "convert": (), "check": ()}


def warm_static(folder: Path) -> None:
    """Fill the static scanner's caches (the allowlist, lazily imported modules) in the worker slot, on a
    file it writes itself, so that no file's process pays for them (tens of milliseconds each)."""
    import pickle

    import convert

    probe = folder / "warm-up.pkl"
    probe.write_bytes(pickle.dumps({"warm": [1.0, 2]}, 4))
    try:
        convert.inspect(probe)
    finally:
        probe.unlink()
    from convert.adapters.base import warm_modules

    warm_modules({"static": ("convert.scan.keras", "numpy", "h5py")}, "static")  # what scanning an HDF5 file imports


def framework_of(artifact) -> str | None:
    """The adapter (or ``onnx``) whose modules loading, converting and checking this artifact import."""
    warms = formats.get(artifact.format).warms if artifact.format in formats.FORMATS else None
    return warms or ("sklearn" if artifact.framework == "sklearn" else None)


def _will_load(artifact, trust: bool) -> bool:
    """Will ``steps`` hand this artifact to a loader (not corrupt, and safe or trusted)?"""
    if (artifact.details.get("corrupt") and not formats.restorable(artifact)) or not _may_load(artifact, trust):
        return False
    return _HANDLERS.get(artifact.format, _native) in (_native, _onnx)


def _modules_of(framework: str) -> dict:
    if framework == "onnx":
        return _ONNX_MODULES
    from convert import adapters

    return adapters.get(framework).modules if framework in adapters.names() else {}


def is_warm(framework: str) -> bool:
    return all(m in sys.modules for step in _modules_of(framework).values() for m in step)


def warm_framework(framework: str) -> None:
    """Import every module the steps need for ``framework`` (an adapter name or ``onnx``; anything else is
    ignored). For the worker slot, outside any artifact's clock."""
    for step in ("load", "convert", "check"):
        _warm_step(framework, step)


def _warm_step(framework: str, step: str) -> None:
    if framework == "onnx":
        from convert.adapters.base import warm_modules

        warm_modules(_ONNX_MODULES, step)
    else:
        from convert import adapters

        if framework in adapters.names():
            adapters.get(framework).warm(step)


def warm(artifact, step: str):
    """Import what ``step`` needs for this artifact, bracketed by clock messages (yields them). Only
    library modules are imported, never anything the file names; an ImportError is left for the step to
    report."""
    framework = framework_of(artifact)
    if framework is None:
        return
    modules = [m for m in _modules_of(framework).get(step, ()) if m not in sys.modules]
    if not modules:
        return
    yield CLOCK, {"paused": True, "importing": ", ".join(modules)}
    _warm_step(framework, step)
    yield CLOCK, {"paused": False}


# ------------------------------------------------------------------------------------------- steps


def steps(artifact, trust: bool):
    """(step, outcome dict) for load, convert and check, in order."""
    corrupt = artifact.details.get("corrupt") if not formats.restorable(artifact) else None  # CRLF: read restored
    if corrupt and not (artifact.safety == "unsafe" and not trust):  # a payload in a broken stream: refused, first
        cause = artifact.details.get("corrupt_cause")
        yield "load", _outcome("failed", f"corrupt: {cause or corrupt}", "corrupt")
        yield from _not_reached("not loaded")
        return
    if not _may_load(artifact, trust):
        category, reason = refusal(artifact)
        yield "load", _outcome("refused", reason, category)
        yield from _not_reached("not loaded (pass --trust to load files whose scan is not safe)")
        return
    handler = _HANDLERS.get(artifact.format, _native)
    yield from handler(artifact, trust)


def _may_load(artifact, trust: bool) -> bool:
    """The gate every command applies (``convert.formats.gate``), with what the artifact's loader enforces
    itself; a corrupt file never gets here."""
    from convert import adapters
    from convert.errors import ModelportError

    try:
        formats.gate(artifact, trust, vouched=adapters.vouches(artifact))
    except ModelportError:
        return False
    return True


def _onnx(artifact, trust: bool):
    yield from warm(artifact, "load")
    t0 = time.perf_counter()
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        status, category, reason = classify(exc, artifact)
        yield "load", _outcome(status, reason, category, time.perf_counter() - t0)
        yield from _not_reached("not loaded")
        return
    ins = ", ".join(i.name for i in session.get_inputs())
    outs = ", ".join(o.name for o in session.get_outputs())
    yield "load", _outcome("ok", f"onnxruntime {ort.__version__} opens it (inputs {ins}; outputs {outs})",
                           seconds=time.perf_counter() - t0)
    yield "convert", _outcome("not-needed", "already ONNX")
    yield "check", _outcome("skipped", "no native model to compare with (modelport check NATIVE MODEL.onnx)")


def _safetensors(artifact, trust: bool):
    d = artifact.details
    dtypes = d.get("dtypes", {})
    yield "load", _outcome("weights", f"weights: {d.get('tensors', 0)} tensors, {d.get('parameters', 0):,} parameters, "
                           f"{_dtypes(dtypes)}", tensors=d.get("tensors", 0), parameters=d.get("parameters", 0),
                           dtypes=dtypes)
    yield "convert", _outcome("needs-input", "weights only: needs the model's code (convert a torch state dict "
                              "with --model-class)", "needs-input")
    yield "check", _outcome("skipped", "nothing converted")


def _data(artifact, trust: bool):
    yield "load", _outcome("skipped", f"{artifact.format} file: data, not a model")
    yield from _not_reached("not a model")


def _dtypes(counts: dict) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "no tensors"


def _torch_weights(artifact, trust: bool) -> dict | None:
    """A torch.save file holding a state dict (or a checkpoint with one) and no module: what it weighs.
    None when it holds a pickled module (then the adapter loads it, with --trust)."""
    from convert import adapters

    return adapters.get("torch").weights_summary(artifact, trust)


def _native(artifact, trust: bool):
    import convert
    from convert.adapters.base import Hints

    if artifact.format in ("pickle", "joblib") and not _has_adapter(artifact):
        yield from _plain_pickle(artifact, trust)
        return
    yield from warm(artifact, "load")
    t0 = time.perf_counter()
    script = None
    try:
        weights = _torch_weights(artifact, trust) if artifact.format in ("torch-zip", "torch-legacy") else None
        if weights is not None:
            where = f" under key {weights['state_key']!r}" if weights["state_key"] else ""
            yield "load", _outcome("weights", f"state dict{where}: {weights['tensors']} tensors, "
                                   f"{weights['parameters']:,} parameters, {_dtypes(weights['dtypes'])}",
                                   seconds=time.perf_counter() - t0, **weights)
            yield "convert", _outcome("needs-input", "needs --model-class (the class that rebuilds the model from "
                                      "this state dict)", "needs-input")
            yield "check", _outcome("skipped", "nothing converted")
            return
        if artifact.format == "torchscript":  # loads on its own; converting may need what it does not record
            script = _torchscript(artifact, trust)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = convert.load(artifact, Hints(trust=trust))
    except Exception as exc:
        status, category, reason = classify(exc, artifact)
        if script is not None and status == "needs-input":
            yield "load", _outcome("ok", script, seconds=time.perf_counter() - t0)
            yield "convert", _outcome("needs-input", reason, category)
            yield "check", _outcome("skipped", "nothing converted")
            return
        yield "load", _outcome(status, reason, category, time.perf_counter() - t0)
        yield from _not_reached("not loaded")
        return
    what = loaded.facts.get("estimator") or loaded.adapter
    # what loading noticed (the release that saved it first, then what the adapter did about it)
    notes = sorted(loaded.notes, key=lambda n: "saved with" not in n)
    migration = loaded.facts.get("migrated") or []
    details = {"signature": loaded.signature.describe()}
    if migration:
        details["migration"] = migration
    proof = _evidence(loaded, artifact)
    if proof is not None:
        details["proof"] = dict(proof.to_dict(), line=proof.line())
        notes.append(proof.line())
    seconds = time.perf_counter() - t0
    if proof is not None and proof.agrees is False:
        yield "load", _outcome("failed", "; ".join([f"{what} migrated", *notes]), "version-drift", seconds, **details)
        yield from _not_reached("not converted: the loaded model computes something else than the release that "
                                "saved it")
        return
    yield "load", _outcome("migrated" if migration else "ok", "; ".join([str(what), *notes]), seconds=seconds,
                           **details)
    yield from _convert_and_check(loaded, artifact)


def _evidence(loaded, artifact):
    """For a scikit-learn model another release saved: the proof that it computes what that release did, from
    an independent evaluation of its fitted arrays (an audit builds no environments), or the plain statement
    that it was not verified. None for a model this release saved, or of another framework."""
    saved = artifact.saved_with.get("sklearn")
    if loaded.adapter != "sklearn" or (saved == installed("sklearn") and not loaded.facts.get("migrated")):
        return None
    from ..records.original import prove

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prove(loaded, original=False)


def _has_adapter(artifact) -> bool:
    from convert import adapters
    from convert.errors import UnsupportedModelError

    try:
        adapters.for_artifact(artifact)
    except UnsupportedModelError:
        return False
    return True


def _plain_pickle(artifact, trust: bool):
    """A pickle or joblib file no adapter converts (a dict of settings, a model of a library modelport does
    not know): loading it is still a fact worth having. Safe files go through the allowlisting unpickler;
    the rest only get here with trust."""
    from convert import adapters

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = adapters.get("sklearn").unpickle(artifact, trust)
    except Exception as exc:
        status, category, reason = classify(exc, artifact)
        yield "load", _outcome(status, reason, category, time.perf_counter() - t0)
        yield from _not_reached("not loaded")
        return
    what = _describe_object(obj)
    yield "load", _outcome("ok", f"loads as {what}", seconds=time.perf_counter() - t0, type=what)
    yield "convert", _outcome("unsupported", f"no modelport adapter converts {what}", "other")
    yield "check", _outcome("skipped", "nothing converted")


def _describe_object(obj) -> str:
    kind = type(obj)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        size = len(obj)
    except Exception:  # noqa: BLE001 -- any object: len() may be missing or raise
        return f"a {name}"
    return f"a {name} of {size} item{'s' if size != 1 else ''}"


def _torchscript(artifact, trust: bool) -> str:
    """Load a TorchScript archive with torch.jit.load; its one-line description."""
    from convert import adapters

    return adapters.get("torch").describe_script(artifact, trust)


def _convert_and_check(loaded, artifact):
    """The first conversion that works is the convert step; the check runs it on synthesized rows and, when
    it disagrees, goes on through the adapter's remedies (``harness.remedy_attempts``, as ``modelport
    convert`` does). Each step is reported as it ends, so a crash is pinned on the step that caused it."""
    from convert.onnxfile import opset_of

    from ..checks.harness import check, remedy_attempts

    yield from warm(artifact, "convert")
    t0 = time.perf_counter()
    checking_since = None  # set once a conversion worked: from then on, what happens is the check's
    tried: list[str] = []  # remedies that did not convert, before one did
    attempts: list[str] = []  # how each remedy fared in the check
    events = remedy_attempts(loaded, lambda converted: check(loaded, converted.model, rows=CHECK_ROWS))
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                event = next(events, None)
        except Exception as exc:
            status, category, reason = classify(exc)
            if checking_since is None:
                yield "convert", _outcome("failed" if status == "unsupported" else status, reason, category,
                                          time.perf_counter() - t0)
                yield "check", _outcome("skipped", "nothing converted")
            else:
                yield "check", _outcome("error", reason, category, time.perf_counter() - checking_since)
            return
        if event is None:
            break
        label = event.remedy or "plain"
        if event.status == "unavailable":
            if checking_since is None:
                tried.append(f"{label}: {event.error.message}")
            else:
                attempts.append(f"{event.remedy}: unavailable ({event.error.message})")
        elif event.status == "converted":
            if checking_since is None:
                how = f"remedy {event.remedy}" if event.remedy else "plain conversion"
                yield "convert", _outcome("ok", f"{how}, opset {opset_of(event.converted.model)}",
                                          seconds=time.perf_counter() - t0, remedy=event.remedy)
                yield from warm(artifact, "check")
                checking_since = time.perf_counter()
        elif event.status == "does-not-run":
            attempts.append(f"{label}: the graph does not run ({event.error.message})")
        elif event.report.passed:
            rows = event.report.inputs.get("rows")
            how = f" with remedy {event.remedy}" if event.remedy else ""
            before = f" (before: {'; '.join(attempts)})" if attempts else ""
            yield "check", _outcome("pass", f"outputs agree on {rows} synthesized rows{how}{before}",
                                    seconds=time.perf_counter() - checking_since, rows=rows, remedy=event.remedy)
            return
        else:
            bad = [o for o in event.report.outputs if not o.passed]
            attempts.append(f"{label}: " + ", ".join(f"{o.name} {o.mismatched}/{o.total} differ" for o in bad))
    if checking_since is None:
        yield "convert", _outcome("unsupported", tried[0] if tried else "no conversion available", "other",
                                  time.perf_counter() - t0)
        yield "check", _outcome("skipped", "nothing converted")
        return
    cause = disagreement(artifact)  # a known reason for the disagreement, read from the static facts
    category, why = cause if cause else ("other", "")
    yield "check", _outcome("fail", "disagrees: " + "; ".join(attempts) + (f". Cause: {why}" if why else ""), category,
                            time.perf_counter() - checking_since)


# formats the audit handles without an adapter; the rest go to their adapter (``_native``)
_HANDLERS = {"onnx": _onnx, "safetensors": _safetensors,
             **{name: _data for name, row in formats.FORMATS.items() if row.data}}
