"""The static safety scan: what loading a file would run, read from its bytes without running any of it.

Rooms: ``policy`` (the verdict rule over the allowlist and history data), ``source`` (bytes, regions,
decompression), ``vm`` (the opcode machine), ``containers`` (pickle, joblib, torch legacy, npy, zip and 7-Zip
archives read as their loaders read them, with ``rawzip``, ``sevenzip``, ``pt2``), ``torchscript`` (code in
TorchScript archives), ``keras`` and ``savedmodel`` (code and ops in Keras files and SavedModels).

The verdict is fail-closed: what cannot be read to its end is ``unknown``, never ``safe``.
"""

from __future__ import annotations

from .containers import probe, risky_member_names, scan_bytes, scan_crlf_restored, scan_file, scan_stream
from .keras import scan_keras, scan_keras_config
from .policy import RULE, classify_global, is_allowed
from .rawzip import ZIP_ERRORS
from .savedmodel import scan_savedmodel

__all__ = ["RULE", "ZIP_ERRORS", "classify_global", "is_allowed", "probe", "risky_member_names", "scan_bytes",
           "scan_crlf_restored", "scan_file", "scan_keras", "scan_keras_config", "scan_savedmodel", "scan_stream"]
