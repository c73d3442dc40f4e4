"""ONNX graphs in and out: tidy what exporters emit, check it, write it atomically."""

from __future__ import annotations

import re
from pathlib import Path

from .atomic import write_atomic
from .errors import BadInputError


def finalize(model):
    """Make an exported graph loadable by the onnxruntime we pair with: one import per opset domain
    (converters sometimes list one twice), the lowest IR version those opsets need (a newer onnx writes
    an IR version an older onnxruntime refuses), then ``onnx.checker``."""
    import onnx
    from onnx import helper

    best: dict[str, int] = {}
    for imp in model.opset_import:
        best[imp.domain] = max(best.get(imp.domain, 0), imp.version)
    del model.opset_import[:]
    for domain, version in sorted(best.items()):
        model.opset_import.append(helper.make_opsetid(domain, version))
    try:
        needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except TypeError:  # older onnx without ignore_unknown
        needed = helper.find_min_ir_version_for(list(model.opset_import))
    model.ir_version = max(needed, 7)
    if re.fullmatch(r"[0-9a-f]{32}", model.graph.name or ""):
        model.graph.name = "modelport"  # converters name graphs with a random uuid: keep outputs reproducible
    onnx.checker.check_model(model)
    return model


def opset_of(model, domain: str = "") -> int | None:
    for imp in model.opset_import:
        if imp.domain in ((domain,) if domain else ("", "ai.onnx")):
            return imp.version
    return None


# metadata_props keys modelport writes into every graph it converts: which file it came from
SOURCE_NAME, SOURCE_SHA256 = "modelport.source", "modelport.source_sha256"


def stamp_source(model, name: str, sha256: str):
    """Record in the graph which file it was converted from (its name, not its folder, and its sha256): a
    later conversion can tell its own output from another file's."""
    kept = [p for p in model.metadata_props if p.key not in (SOURCE_NAME, SOURCE_SHA256)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in ((SOURCE_NAME, name), (SOURCE_SHA256, sha256)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def source_of(path: str | Path) -> dict | None:
    """``{"name", "sha256"}`` of the file an ONNX file at ``path`` was converted from, when modelport wrote it;
    None for any other file (written by another tool, or not ONNX)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX, unreadable: not ours
        return None
    props = {p.key: p.value for p in model.metadata_props}
    if SOURCE_NAME not in props:
        return None
    return {"name": props[SOURCE_NAME], "sha256": props.get(SOURCE_SHA256)}


def save(model, path: str | Path, *, unchanged_since=None) -> Path:
    """Write ``model`` to ``path`` through a temporary file in the same directory and an atomic rename,
    so a crash never leaves half a model behind (``unchanged_since``: see ``atomic.write_atomic``)."""
    path = Path(path)
    data = model.SerializeToString()
    write_atomic(path, data, unchanged_since=unchanged_since)
    return path


def load(path: str | Path):
    """Read an ONNX file, or raise a one-line BadInputError saying why it is not one."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise BadInputError("no such file", path=path)
    if path.is_dir():
        raise BadInputError("is a directory, not an ONNX file", path=path)
    if path.stat().st_size == 0:
        raise BadInputError("empty file, not an ONNX model", path=path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise BadInputError(
            f"not a readable ONNX model ({type(exc).__name__})", path=path, hint="was it written completely?"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise BadInputError("not an ONNX model (no graph)", path=path)
    return model
