"""Which members of a ``torch.export`` (.pt2) archive ``torch.export.load`` reads, and how.

Read from torch's own loader (torch/export/pt2_archive/_package.py, torch/export/__init__.py, 2.13):

- ``data/sample_inputs/<model>.pt``: ``torch.load`` (retried with ``weights_only=False``), always;
- ``data/weights/<model>.pt`` and ``data/constants/<model>.pt`` (the legacy layout): ``torch.load``;
- every entry of ``data/weights/<model>_weights_config.json`` with ``use_pickle``: ``torch.load(weights_only=False)``
  of ``data/weights/<path_name>``; the others are raw tensor bytes;
- entries of ``data/constants/<model>_constants_config.json``, by file-name prefix: ``tensor_*`` like weights,
  ``custom_obj_*`` through torch's TorchScript unpickler and ``opaque_obj_*`` through ``pickle.loads`` *whatever
  the entry's* ``use_pickle`` *says*; any other prefix stops the load;
- with ``load_weights_from_disk=True``, every member under ``data/weights/``: ``torch.load``;
- members under ``data/aotinductor/``: compiled native code that ``load_pt2`` loads (``AOTIModelPackageLoader``);
- the 2.7 layout (``serialized_state_dict.pt``, ``serialized_constants.pt``, ``serialized_example_inputs.pt``):
  ``torch.load``.

Member names are relative to the archive's root folder (torch's reader strips it).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field

CONFIG_MAX = 64 << 20  # bytes of a payload config parsed
_TORCH_LOADED_27 = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")


@dataclass
class Plan:
    """``roles``: archive member name -> ``pickle`` (unpickled, whatever its bytes look like), ``raw`` (read as
    tensor bytes, never unpickled) or ``native`` (code the loader runs). ``problems``: (where, why) for config
    entries the plan cannot account for; each makes the scan ``unknown``."""

    roles: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def plan(zf: zipfile.ZipFile, read=None) -> Plan:
    """The plan for one archive. ``read(info) -> bytes`` reads a member (by default through ``zf``)."""
    read = read or (lambda info: zf.open(info).read(CONFIG_MAX + 1))
    out = Plan()
    infos = [i for i in zf.infolist() if not i.is_dir()]
    by_rel = {}
    for info in infos:
        by_rel.setdefault(_relative(info.filename), []).append(info)
    for rel, entries in by_rel.items():
        parts = rel.split("/")
        for info in entries:
            if rel.startswith("data/aotinductor/"):
                out.roles[info.filename] = "native"
            elif (rel.startswith("data/sample_inputs/") or rel in _TORCH_LOADED_27
                  or (len(parts) == 3 and parts[:2] in (["data", "weights"], ["data", "constants"])
                      and parts[2].endswith(".pt"))):
                out.roles[info.filename] = "pickle"
    for rel, entries in by_rel.items():
        folder, _, base = rel.rpartition("/")
        if folder not in ("data/weights", "data/constants") or not base.endswith("_config.json"):
            continue
        for info in entries:
            _read_config(out, info, read, folder, by_rel)
    return out


def _relative(name: str) -> str:
    """The name torch's reader uses: without the archive's root folder."""
    return name.split("/", 1)[1] if "/" in name else name


def _read_config(out: Plan, info: zipfile.ZipInfo, read, folder: str, by_rel: dict) -> None:
    where = info.filename
    try:
        raw = read(info)
        if len(raw) > CONFIG_MAX:
            raise ValueError(f"more than {CONFIG_MAX} bytes")
        doc = json.loads(raw)
    except Exception as exc:  # damaged member, not JSON, refused by zipfile: torch would read it differently
        out.problems.append((where, f"payload config not readable ({exc}); the members it lists were not identified"))
        return
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        out.problems.append((where, "payload config without a 'config' mapping"))
        return
    constants = folder == "data/constants"
    for fqn, entry in config.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
            out.problems.append((where, f"config entry {fqn!r} names no member"))
            continue
        path_name = entry["path_name"]
        members = by_rel.get(f"{folder}/{path_name}")
        role = _role(path_name, bool(entry.get("use_pickle")), constants)
        if role is None:
            out.problems.append((where, f"config entry {fqn!r} names {path_name!r}, a kind of constant the scan does "
                                 "not know how torch reads"))
            continue
        if not members:
            out.problems.append((where, f"config entry {fqn!r} names member {path_name!r}, which is not in the "
                                 "archive"))
            continue
        for member in members:
            if out.roles.get(member.filename) != "pickle":  # pickled by any entry: scanned
                out.roles[member.filename] = role


def _role(path_name: str, use_pickle: bool, constants: bool) -> str | None:
    if not constants:
        return "pickle" if use_pickle else "raw"
    if path_name.startswith(("custom_obj_", "opaque_obj_")):
        return "pickle"  # read through an unpickler whatever use_pickle says
    if path_name.startswith("tensor_"):
        return "pickle" if use_pickle else "raw"
    return None
