"""Proof against the original. For every corpus file saved with scikit-learn 1.1.3 or later (the oldest release
with wheels for this Python), that release is rebuilt in a throwaway virtualenv (``matrix.ensure_env``), the file
is loaded there as it reads it, and its outputs on synthesized rows are compared with the migrated model's and its
ONNX graph's here.

Slow the first time: one environment per release (1.1.3, 1.2.2, 1.3.0), about 20-45 s each with a warm pip cache;
they are cached under $MODELPORT_CACHE (default ~/.cache/modelport/envs), so a second run reuses them."""

from __future__ import annotations

import os
import pwd
import warnings
from pathlib import Path

import numpy as np
import pytest

import convert
from compat.records.original import INSTALLS_FROM, original_pins, prove
from convert import versions
from legacy_corpus import params, path_of


@pytest.fixture(scope="module")
def stable_caches():
    """tests/conftest.py points HOME at a fresh folder; the old releases' environments (and pip's downloads) are
    kept in the real home's cache instead, so they are built once per machine, not once per run."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    wanted = {"MODELPORT_CACHE": str(home / ".cache" / "modelport" / "envs"),
              "PIP_CACHE_DIR": str(home / ".cache" / "pip")}
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    yield os.environ["MODELPORT_CACHE"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_which_releases_are_rebuilt_and_with_what():
    assert original_pins("1.0.2") is None and original_pins("before 0.18") is None and original_pins(None) is None
    pins = original_pins("1.1.3")
    assert pins[0] == "scikit-learn==1.1.3" and "numpy<2" in pins  # numpy 2 came after 1.4 (STACK.md)
    assert "numpy<2" not in original_pins("1.5.2") and original_pins("1.5.2")[0] == "scikit-learn==1.5.2"


def _installs(row) -> bool:
    release = versions.parse(row["saved_with_version"])
    return release is not None and versions.cmp(release, INSTALLS_FROM) >= 0


@pytest.mark.slow
@pytest.mark.parametrize("row", params(_installs))
def test_migrated_models_agree_with_their_original_release(row, stable_caches):
    from compat.checks.harness import convert_and_check

    if row is None:
        from legacy_corpus import manifest

        manifest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = convert.load(path_of(row))
        converted = convert_and_check(loaded, rows=500, write=False)  # the graph `convert` would write
    assert converted.passed, [a.to_dict() for a in converted.attempts]
    proof = prove(loaded, converted.converted.model, rows=300, seed=5)
    assert proof.method == "original", proof.how
    assert proof.environment["scikit-learn"] == row["saved_with_version"]  # really ran under that release
    assert proof.agrees, proof.outputs
    assert proof.onnx_agrees, proof.onnx
    assert proof.rows == 300 and all(o["total"] >= 300 for o in proof.outputs)
    assert "agrees with the original" in proof.line() and "DISAGREES" not in proof.line()


def test_a_release_that_no_longer_installs_falls_back_to_the_fitted_arrays_or_says_so(tmp_path):
    """Below 1.1.3 the proof is the independent evaluation; a model without one is plainly not verified."""
    import pickle

    import sklearn.base
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    for name, model in (("lr", LogisticRegression()), ("hgb", HistGradientBoostingClassifier(max_iter=3))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        saved, sklearn.base.__version__ = sklearn.base.__version__, "1.0.2"
        try:
            (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(model))
        finally:
            sklearn.base.__version__ = saved
    lr = prove(convert.load(tmp_path / "lr.pkl"))
    assert lr.method == "independent" and lr.agrees and "coef_" in lr.how
    hgb = prove(convert.load(tmp_path / "hgb.pkl"))
    assert hgb.method == "none" and hgb.agrees is None and hgb.verdict == "not verified"
    assert hgb.line().startswith("migrated, not verified against the original")
