"""THE format table: every kind of file modelport knows, and what follows from it. Detection names a format;
this table says who writes it, how the static scan walks it, whether loading it unpickles, which adapter
loads it, and what the audit calls it when it is data rather than a model. Every other list of formats is
derived from here. ``gate`` is the one answer to "may this file be loaded?".

A new format is one row here (plus its sniffer in ``detect`` and, if it holds code, its scanner in ``scan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadInputError, UnsafeArtifactError

TRUST_HINT = "inspect it with `modelport inspect`; pass --trust only if you trust whoever wrote it"


@dataclass(frozen=True)
class Format:
    name: str
    framework: str | None = None  # the library that writes it, when the format alone says
    container: str | None = None  # how the pickle scan walks it ("pickle", "zip", "torch-legacy", "npy", "7z")
    code_scan: str | None = None  # the scan of code that loading runs: "keras" | "savedmodel"
    unpickles: bool = False  # loading it unpickles: the gate decides before any adapter runs
    adapter: str | None = None  # the adapter that loads and converts it
    warms: str | None = None  # what an audit imports ahead of loading it: an adapter's name, or "onnx"
    data: str | None = None  # data, not a model: how the audit names it when it carries nothing to scan
    members: Callable[[list[str], set[str]], bool] | None = None  # zip-based: the test on its member names


def _torch_root(names, marker: str) -> str | None:
    """The record folder of a torch archive: ``<root>/`` + marker."""
    for n in names:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == marker:
            return parts[0]
        if n == marker:
            return ""
    return None


def _is_torch_export(names, nameset) -> bool:
    return any(n == "archive_format" or n.endswith("/archive_format") or n.endswith("serialized_exported_program.json")
               for n in names)


def _is_torchscript(names, nameset) -> bool:
    root = _torch_root(names, "constants.pkl")
    return root is not None and any(n.startswith(f"{root}/code/" if root else "code/") for n in names)


def _is_torch_zip(names, nameset) -> bool:
    root = _torch_root(names, "data.pkl")
    if root is None:
        return False
    pre = f"{root}/" if root else ""
    return bool({f"{pre}version", f"{pre}.data/version", f"{pre}.data/serialization_id"} & nameset)


def torch_root(names) -> str:
    """The record folder of a torch zip or TorchScript archive ("" when members sit at the top)."""
    root = _torch_root(names, "data.pkl")
    return root if root is not None else (_torch_root(names, "constants.pkl") or "")


# Zip-based rows come first, in the order their member tests are tried (most specific first).
_ROWS = (
    Format("torch-export", "torch", "zip", unpickles=True, adapter="torch", warms="torch", members=_is_torch_export),
    Format("torchscript", "torch", "zip", unpickles=True, adapter="torch", warms="torch", members=_is_torchscript),
    Format("torch-zip", "torch", "zip", unpickles=True, adapter="torch", warms="torch", members=_is_torch_zip),
    Format("keras", "keras", "zip", code_scan="keras", adapter="tensorflow", warms="tensorflow",
           members=lambda names, s: {"config.json", "metadata.json", "model.weights.h5"} <= s),
    Format("skops", "sklearn", "zip", warms="sklearn", members=lambda names, s: "schema.json" in s),
    Format("npz", "numpy", "zip", data="data: numpy arrays",
           members=lambda names, s: bool(names) and all(n.endswith(".npy") for n in names)),
    # a zip holding none of the above: its members are scanned by content; torch takes one named like a torch file
    Format("zip", None, "zip", adapter="torch", data="data: a zip archive holding no model"),
    Format("pickle", None, "pickle", unpickles=True, adapter="sklearn"),
    Format("joblib", None, "pickle", unpickles=True, adapter="sklearn"),
    Format("torch-legacy", "torch", "torch-legacy", unpickles=True, adapter="torch", warms="torch"),
    Format("savedmodel", "tensorflow", code_scan="savedmodel", adapter="tensorflow", warms="tensorflow"),
    Format("keras-h5", "keras", code_scan="keras", adapter="tensorflow", warms="tensorflow"),
    # an .h5 without a Keras model config: the TensorFlow adapter says "not a Keras model" (exit 2)
    Format("hdf5", None, adapter="tensorflow", warms="tensorflow", data="data: an HDF5 file that is not a Keras model"),
    Format("onnx", "onnx", warms="onnx"),
    Format("safetensors"),
    Format("npy", "numpy", "npy", data="data: a numpy array"),
    Format("7z", None, "7z", data="data: a 7-Zip archive holding no model"),
)
FORMATS: dict[str, Format] = {row.name: row for row in _ROWS}
NAMES = tuple(FORMATS)


def get(name: str) -> Format:
    return FORMATS[name]


def zip_format(names: list[str]) -> str:
    """Which zip-based format a member list is (``zip`` when none matches)."""
    nameset = set(names)
    for row in _ROWS:
        if row.members is not None and row.members(names, nameset):
            return row.name
    return "zip"


def formats_of(adapter: str) -> tuple[str, ...]:
    """The formats an adapter is registered for."""
    return tuple(row.name for row in _ROWS if row.adapter == adapter)


# ------------------------------------------------------------------------------------------------ the gate


def restorable(artifact) -> bool:
    """A pickle whose only damage is a line-ending conversion (every LF written as CRLF by a text-mode copy):
    ``inspect`` read it to its end with the line endings restored and found it safe, and nothing the damaged bytes
    name is flagged. The scikit-learn adapter's loader reads it restored; the gate lets it through, trusted or not."""
    d = artifact.details
    return bool(d.get("corrupt") and d.get("corrupt_cause") and d.get("restored_safety") == "safe"
                and all(g.verdict == "safe" for g in artifact.globals)
                and not any(f.severity in ("unsafe", "suspicious") for f in artifact.findings))


def gate(artifact, trust: bool, vouched: Callable[[object], bool] | None = None, hint: str = TRUST_HINT) -> None:
    """Raise unless this artifact may be loaded; the one rule every command and the audit apply.

    A corrupt file is bad input (BadInputError, exit 2), unless what its broken stream imports is unsafe.
    With ``trust`` anything else loads. Without it, the static verdict must be ``safe``; the only exception is
    a global the loader's own restricted unpickler enforces (``vouched(global_ref)``, e.g. torch's
    ``weights_only`` allowlist): when every non-safe thing the scan found is such a global, the file loads."""
    corrupt = artifact.details.get("corrupt")
    if corrupt and restorable(artifact):
        return  # its loader reads the restored bytes, which the scan read to their end and found safe
    if corrupt and (trust or artifact.safety != "unsafe"):
        raise BadInputError(f"corrupt or truncated file: {corrupt}", path=artifact.path,
                            hint="restore it from the original source; nothing was loaded")
    if trust or artifact.safety == "safe":
        return
    flagged = [g for g in artifact.globals if g.verdict != "safe" and not (vouched and vouched(g))]
    vouched_for = {f"imports {g.qualname}:" for g in artifact.globals if g.verdict != "safe" and g not in flagged}
    reasons = [f for f in artifact.findings if f.severity not in ("safe", "info")
               and not any(f.what.startswith(v) for v in vouched_for)]
    if not flagged and not reasons:
        return
    order = {"unsafe": 0, "suspicious": 1, "unknown": 2}
    flagged.sort(key=lambda g: order.get(g.verdict, 3))
    reasons.sort(key=lambda f: order.get(f.severity, 3))
    if flagged and (flagged[0].verdict == "unsafe" or reasons[:1] == [] or reasons[0].severity != "unsafe"):
        listed = ", ".join(g.qualname for g in flagged[:5]) + (f" (+{len(flagged) - 5} more)" if len(flagged) > 5
                                                             else "")
        what = f"{artifact.safety}: unpickling would import {listed}"
    else:
        shown = [f.what + (f" (in {f.where})" if f.where else "") for f in reasons[:3]]
        what = f"{artifact.safety}: " + "; ".join(shown) + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")
    raise UnsafeArtifactError(what, path=artifact.path, findings=artifact.findings, hint=hint)
