"""TensorFlow SavedModel folders: completeness, the static-scan gate (graph ops, outside symlinks), the
signature to convert."""

from __future__ import annotations

from pathlib import Path

from .. import memory
from ...artifact import Artifact, Finding
from ...errors import BadInputError, OutOfMemoryError, UnsafeArtifactError, UnsupportedModelError
from ... import formats
from ...scan import scan_savedmodel
from ...spec import OutputSpec, TensorSpec
from . import env
from .to_onnx import Serving
from .graph import apply_input_hints, dtype_name, symbolic_shape

DEFAULT_SIGNATURE = "serving_default"
TRUST_HINT = "inspect it with `modelport inspect`; pass --trust only if you trust whoever wrote it"
LINK_HINT = ("--trust does not lift this; if the links are yours (a model cache), copy the folder with its files "
             "(cp -rL) and convert the copy")


def check_files(artifact: Artifact) -> None:
    """A SavedModel is saved_model.pb (and the variables ``check_variables`` asks for)."""
    path = Path(artifact.path)
    if not (path / "saved_model.pb").is_file():
        what = "saved_model.pbtxt (a text SavedModel, not supported)" if (path / "saved_model.pbtxt").is_file() \
            else "no saved_model.pb"
        raise BadInputError(f"incomplete SavedModel folder: {what}", path=path,
                            hint="copy the whole folder the model was saved to")


def check_variables(artifact: Artifact, facts: dict) -> None:
    """A graph with a saver restores variables/variables.index (TensorFlow 2 writes both, even for a model
    without variables): a folder missing it was copied incompletely. A TF1 graph without variables has no
    saver and no checkpoint."""
    path = Path(artifact.path)
    if not facts.get("saver"):
        return
    if not (path / "variables").is_dir():
        raise BadInputError("incomplete SavedModel folder: no variables/ folder", path=path,
                            hint="copy the whole folder the model was saved to, variables/ included")
    v1_checkpoint = (path / "variables" / "variables").is_file()  # a TF1 saver writing the V1 format
    if not (path / "variables" / "variables.index").is_file() and not v1_checkpoint:
        raise BadInputError("incomplete SavedModel folder: variables/variables.index is missing", path=path,
                            hint="copy the whole folder the model was saved to, variables/ included")


def scan_gate(artifact: Artifact, trust: bool, notes: list[str]) -> tuple[list[Finding], dict]:
    """The static scan, enforced. Symlinks leading out of the folder are refused whatever the trust (the loader
    would read files the folder does not hold); ops that write files, reach the network or call Python where
    a signature or the loader reaches them (unsafe), and ops that read files or are not on the allowlist
    (suspicious), are refused without ``trust`` (exit 1); with it they are loaded with a note."""
    verdict, findings, facts = scan_savedmodel(artifact.path)
    links = facts.get("outside_links") or []
    if links:
        shown = ", ".join(links[:3]) + (f" (+{len(links) - 3} more)" if len(links) > 3 else "")
        raise UnsafeArtifactError(f"symlinks point outside the SavedModel folder: {shown}", path=artifact.path,
                                  findings=findings, hint=LINK_HINT)
    if facts.get("error"):
        raise BadInputError(facts["error"], path=artifact.path, hint="copy the whole folder again")
    formats.gate(artifact, trust)  # file, network or Python ops, ops off the allowlist: refused without trust
    flagged = [f for f in findings if f.severity in ("unsafe", "suspicious")]
    for f in flagged:
        notes.append(f"loaded with --trust: {f.what} (in {f.where})")
    return findings, facts


def load(artifact: Artifact):
    tf = env.tensorflow()
    with env.quiet():
        try:
            return tf.saved_model.load(str(artifact.path))
        except Exception as exc:
            if memory.is_allocation_failure(exc):
                raise OutOfMemoryError(f"ran out of memory while loading it: {type(exc).__name__}: "
                                       f"{env.first_line(exc)}", path=artifact.path,
                                       hint="nothing was converted; run it where more memory is free") from None
            raise BadInputError(f"TensorFlow {tf.__version__} cannot load this SavedModel: {type(exc).__name__}: "
                                f"{env.first_line(exc)}", path=artifact.path,
                                hint="is the folder complete? nothing was written") from None


def pick_signature(obj, requested: str | None, path, notes: list[str]) -> tuple[str, object]:
    """``--signature NAME``, else ``serving_default``, else the only signature there is."""
    signatures = {k: v for k, v in dict(getattr(obj, "signatures", {}) or {}).items() if not k.startswith("__")}
    listed = ", ".join(sorted(signatures)) or "none"
    if requested:
        if requested not in signatures:
            raise BadInputError(f"no signature {requested!r}; it has: {listed}", path=path,
                                hint="pick one with --signature")
        return requested, signatures[requested]
    if DEFAULT_SIGNATURE in signatures:
        return DEFAULT_SIGNATURE, signatures[DEFAULT_SIGNATURE]
    if len(signatures) == 1:
        name = next(iter(signatures))
        notes.append(f"no {DEFAULT_SIGNATURE} signature: converted the only one, {name!r}")
        return name, signatures[name]
    if not signatures:
        raise UnsupportedModelError("the SavedModel has no signatures to convert", path=path,
                                    hint="save it with tf.saved_model.save(obj, path, signatures=...) or "
                                         "keras model.export(path)")
    raise BadInputError(f"no {DEFAULT_SIGNATURE} signature and several others ({listed})", path=path,
                        hint="pick one with --signature")


def serving(obj, name: str, fn, hints, path) -> tuple[Serving, list[TensorSpec]]:
    """The signature function as it is (its traced shapes are what the file holds): inputs in the order
    TensorFlow flattens them (sorted keys), outputs named by the signature's keys."""
    tf = env.tensorflow()
    args, kwargs = fn.structured_input_signature
    flat = [s for s in tf.nest.flatten((args, kwargs)) if isinstance(s, tf.TensorSpec)]
    if len(flat) != len(tf.nest.flatten((args, kwargs))):
        raise UnsupportedModelError(f"signature {name!r} takes composite (sparse/ragged) inputs", path=path)
    keys = sorted(kwargs) if kwargs and not args else [s.name for s in flat]
    specs = [TensorSpec(key, dtype_name(spec.dtype.name, f"input {key}", path), symbolic_shape(key, spec.shape))
             for key, spec in zip(keys, flat)]
    specs = apply_input_hints(specs, hints.inputs, path)
    structured = fn.structured_outputs
    if not isinstance(structured, dict):
        raise UnsupportedModelError(f"signature {name!r} does not return a dict of named outputs", path=path)
    for key, value in structured.items():
        dtype_name(value.dtype.name, f"output {key}", path)
    return Serving(fn, obj, tuple(keys), tuple(sorted(structured))), specs


def outputs(serving_: Serving) -> tuple[OutputSpec, ...]:
    return tuple(OutputSpec(n, "value") for n in serving_.output_names)
