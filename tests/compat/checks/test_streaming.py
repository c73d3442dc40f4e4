"""Checks stream: memory does not grow with the number of rows, and the verdict and statistics are the
same whatever the batch size."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import compat
import convert

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "fixtures" / "sklearn" / "diabetes_gbr.joblib"


@pytest.fixture(scope="module")
def gbr(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gbr")
    result = compat.convert(MODEL, folder / "gbr.onnx")
    assert result.passed
    return result.loaded, folder / "gbr.onnx", folder


def peak_traced(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_rows(gbr):
    loaded, onnx, _ = gbr
    small = peak_traced(lambda: compat.check(loaded, onnx, rows=20_000, batch_size=2048))
    large = peak_traced(lambda: compat.check(loaded, onnx, rows=200_000, batch_size=2048))
    assert large < 1.5 * small, (small, large)  # ten times the rows, not ten times the memory


def test_csv_statistics_do_not_depend_on_the_batch_size(gbr):
    loaded, onnx, folder = gbr
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.05, (5000, 10))
    pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]).to_csv(folder / "rows.csv", index=False)
    reports = [compat.check(loaded, onnx, inputs=folder / "rows.csv", rows=0, batch_size=b) for b in (333, 5000)]
    a, b = (r.outputs[0] for r in reports)
    assert reports[0].inputs["rows"] == reports[1].inputs["rows"] == 5000
    assert (a.mismatched, a.total, a.max_abs_error, a.worst["row"]) == (b.mismatched, b.total, b.max_abs_error,
                                                                        b.worst["row"])
    # onnxruntime's float32 tree sums round differently with the batch size (its threads split the work
    # by rows or by trees), so the per-row errors themselves move in the last bit; exact equality of the
    # accumulated statistics for fixed outputs is tested in test_compare.py
    assert a.mean_abs_error == pytest.approx(b.mean_abs_error, rel=1e-2)


def test_empty_csv_cells_are_missing_numbers_and_text_stays_text(tmp_path):
    from compat.checks.inputs import read_inputs
    from convert.spec import Signature, TensorSpec

    (tmp_path / "rows.csv").write_text("age,city\n1.5,Oslo\n,\n3,NA\n")
    sig = Signature((TensorSpec("age", "float32", ("batch", 1), column_names=("age",)),
                     TensorSpec("city", "string", ("batch", 1), column_names=("city",))))
    feeds = next(read_inputs(tmp_path / "rows.csv", sig).batches(10))
    assert np.isnan(feeds["age"][1, 0]) and feeds["age"][2, 0] == 3.0
    assert list(feeds["city"].ravel()) == ["Oslo", "", "NA"]


def test_batches_are_sized_by_bytes_not_a_fixed_count():
    from compat.checks.inputs import BATCH_ROWS, auto_batch_size
    from convert.spec import Signature, TensorSpec

    narrow = Signature((TensorSpec("X", "float32", ("batch", 10)),))
    image = Signature((TensorSpec("x", "float32", ("batch", 3, 224, 224)),))
    assert auto_batch_size(narrow) == BATCH_ROWS[1]
    assert auto_batch_size(image) == BATCH_ROWS[0]
    assert convert  # imported for the fixture's types
