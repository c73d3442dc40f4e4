"""The static safety scan: what loading a file would run, read from its bytes without running any of it.

Rooms: ``policy`` (the verdict rule over the allowlist and history data), ``source`` (bytes, regions,
decompression), ``vm`` (the opcode machine), ``containers`` (pickle, joblib, torch legacy, npy, zip and 7-Zip
archives read as their loaders read them, with ``rawzip``, ``sevenzip``, ``pt2``), ``torchscript`` (code in
TorchScript archives), ``keras`` and ``savedmodel`` (code and ops in Keras files and SavedModels).

The verdict is fail-closed: what cannot be read to its end is ``unknown``, never ``safe``.
"""

from __future__ import annotations

from .containers import probe, risky_member_names, scan_bytes, scan_crlf_restored, scan_file, scan_stream
from .policy import RULE, classify_global, is_allowed

# imported when first asked for: the scans of Keras files and SavedModels (a scan of pickles needs neither), and
# the errors a zip archive raises (rawzip imports zipfile, and with it shutil, bz2, lzma)
_LAZY = {"scan_keras": ".keras", "scan_keras_config": ".keras", "scan_savedmodel": ".savedmodel",
         "ZIP_ERRORS": ".rawzip"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'convert.scan' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value

__all__ = ["RULE", "ZIP_ERRORS", "classify_global", "is_allowed", "probe", "risky_member_names", "scan_bytes",
           "scan_crlf_restored", "scan_file", "scan_keras", "scan_keras_config", "scan_savedmodel", "scan_stream"]
