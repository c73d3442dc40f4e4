import numpy as np
import pytest

from compat.checks.compare import OutputComparison, Tolerance, default_tolerance


def compare(native, onnx, batch=None, **kw):
    comp = OutputComparison("out", **kw)
    native, onnx = np.asarray(native), np.asarray(onnx)
    step = batch or len(native)
    for start in range(0, len(native), step):
        comp.update(native[start:start + step], onnx[start:start + step], start)
    return comp.result()


def test_floats_within_tolerance_pass_and_beyond_fail_with_the_worst_row():
    native = np.linspace(0, 1, 50)
    onnx = native.astype(np.float32)
    stats = compare(native, onnx, tolerance=Tolerance(1e-6, 1e-7))
    assert stats.passed and stats.total == 50 and stats.max_abs_error < 1e-7
    bad = onnx.copy()
    bad[31] += 1e-3
    stats = compare(native, bad, tolerance=Tolerance(1e-6, 1e-7))
    assert not stats.passed and stats.mismatched == 1
    assert stats.worst["row"] == 31 and stats.max_abs_error == pytest.approx(1e-3, rel=1e-3)


def test_statistics_do_not_depend_on_the_batch_size():
    rng = np.random.default_rng(0)
    native = rng.normal(size=(101, 3))
    onnx = native + rng.normal(scale=1e-5, size=native.shape)
    results = [compare(native, onnx, batch=b, tolerance=Tolerance(1e-4, 1e-5)) for b in (1, 7, 101)]
    first = results[0]
    for other in results[1:]:
        assert other.mismatched == first.mismatched
        assert other.max_abs_error == first.max_abs_error
        assert other.mean_abs_error == pytest.approx(first.mean_abs_error, rel=1e-12)
        assert other.worst["row"] == first.worst["row"]


def test_nan_matches_nan_but_not_a_number():
    stats = compare([1.0, np.nan, 2.0], [1.0, np.nan, 2.0])
    assert stats.passed
    stats = compare([1.0, np.nan, 2.0], [1.0, 0.5, 2.0])
    assert stats.mismatched == 1


def test_default_tolerance_follows_the_less_precise_dtype():
    assert default_tolerance(np.float64, np.float32) == Tolerance(1e-4, 1e-5)
    assert default_tolerance(np.float64, np.float64) == Tolerance(1e-7, 1e-9)
    assert default_tolerance(np.int64, np.int64) == Tolerance(0.0, 0.0)


def test_labels_are_exact_and_ties_in_the_native_scores_are_excused_not_hidden():
    classes = ["a", "b", "c"]
    native = np.array(["a", "b", "c", "a"], dtype=object)
    onnx = np.array(["b", "b", "a", "a"], dtype=object)
    scores = np.array([[0.5, 0.5, 0.0],      # tied a/b: excused
                       [0.1, 0.8, 0.1],
                       [0.3, 0.3, 0.4],      # c clearly ahead of a: a real mismatch
                       [0.9, 0.05, 0.05]])
    comp = OutputComparison("label", "label", scores_tolerance=Tolerance(1e-4, 1e-5), classes=classes)
    comp.update(native, onnx, 0, native_scores=scores)
    stats = comp.result()
    assert stats.excused == 1 and stats.mismatched == 1 and not stats.passed
    assert stats.worst["row"] == 2


def test_binary_decision_scores_excuse_only_values_at_zero():
    comp = OutputComparison("label", "label", scores_tolerance=Tolerance(1e-4, 1e-5), classes=[0, 1])
    comp.update(np.array([0, 1]), np.array([1, 0]), 0, native_scores=np.array([1e-7, 0.3]))
    stats = comp.result()
    assert stats.excused == 1 and stats.mismatched == 1


def test_singleton_axes_are_reconciled_and_other_shapes_refused():
    stats = compare(np.arange(4.0), np.arange(4.0).reshape(4, 1))
    assert stats.passed and "compared as" in stats.note
    stats = compare(np.zeros((4, 2)), np.zeros((4, 3)))
    assert not stats.passed and stats.note.startswith("cannot compare")


def test_strings_and_integers_must_be_equal():
    assert compare(np.array(["x", "y"]), np.array(["x", "y"], dtype=object)).passed
    stats = compare(np.array([1, 2, 3]), np.array([1, 2, 4]))
    assert stats.mismatched == 1 and stats.atol is None
