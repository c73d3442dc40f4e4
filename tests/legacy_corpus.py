"""The legacy corpus: real scikit-learn files from public repositories (0.13 to 1.3) that today's release refuses
or mis-loads, kept beside the repository (``../shared/legacy-corpus``, linked there by the CI's fresh clone), never
copied into it. Untrusted: every load goes through modelport's gate.

``MODELPORT_LEGACY_CORPUS`` points elsewhere (a checkout whose parent has no ``shared/``). A missing corpus fails
the tests that need it, loudly: they are the evidence that legacy rescue works.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    given = os.environ.get("MODELPORT_LEGACY_CORPUS")
    return Path(given) if given else ROOT.parent / "shared" / "legacy-corpus"


def manifest() -> list[dict]:
    """Every row of MANIFEST.tsv (fails the calling test when the corpus is not there)."""
    folder = corpus_dir()
    if not (folder / "MANIFEST.tsv").is_file():
        pytest.fail(f"the legacy corpus is not at {folder} (set MODELPORT_LEGACY_CORPUS, or link ../shared beside "
                    "the repository as the CI's fresh clone does)", pytrace=False)
    with open(folder / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def primaries() -> list[dict]:
    """The 31 model files (companion .npy files of old joblib dumps left out)."""
    return [r for r in manifest() if not r["saved_with_version"].startswith("n/a")]


def classes(row: dict) -> set[str]:
    return {c for c in row["expected_failure_classes"].split(",") if c}


def path_of(row: dict) -> Path:
    return corpus_dir() / row["local_file"]


def params(rows_of=None):
    """pytest params over the primaries, named by file; an empty list (and a failing test) without the corpus."""
    try:
        rows = primaries()
    except pytest.fail.Exception:
        return [pytest.param(None, id="corpus-missing")]
    rows = [r for r in rows if rows_of is None or rows_of(r)]
    return [pytest.param(r, id=r["local_file"]) for r in rows]
