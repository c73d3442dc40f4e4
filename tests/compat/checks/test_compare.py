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


# ---------------------------------------------------------------------------------------------
# noise floors and tie evidence (the native model's own noise, measured by the check on failing rows)

from compat.checks.compare import NOISE_FACTOR, Noise  # noqa: E402


def test_a_value_beyond_the_default_passes_only_within_its_measured_floor():
    native = np.array([100.0, 0.01, 0.02, 5.0])
    onnx = native + np.array([0.0, 4e-5, 4e-5, 0.0])  # rows 1 and 2 fail the float32 default (1e-5 + 1e-4*|x|)
    comp = OutputComparison("prediction")
    assert comp.suspects(native, onnx).tolist() == [False, True, True, False]
    change = np.array([1e-5, 1e-6])  # row 1's native value moves by 1e-5 under perturbation, row 2's by 1e-6
    comp.update(native, onnx, 0, noise=Noise(np.array([1, 2]), [native[[1, 2]] + change]))
    stats = comp.result()
    assert stats.noise_elements == 1 and stats.mismatched == 1 and stats.failed_rows == [2]
    assert stats.tolerance_source == "noise floor" and stats.noise_floor_max == pytest.approx(NOISE_FACTOR * 1e-5)
    assert stats.margin == pytest.approx(4e-5 / (NOISE_FACTOR * 1e-6))


def test_a_stated_tolerance_is_never_widened_by_a_floor():
    native, onnx = np.array([0.01]), np.array([0.01 + 4e-5])
    comp = OutputComparison("prediction", tolerance=Tolerance(1e-4, 1e-5))
    comp.update(native, onnx, 0, noise=Noise(np.array([0]), [native + 1.0]))
    stats = comp.result()
    assert stats.mismatched == 1 and stats.noise_elements == 0 and stats.tolerance_source == "--tol"


def test_a_label_is_excused_only_where_the_deciding_quantity_is_within_its_noise():
    classes = ["a", "b", "c"]
    native = np.array(["a", "a", "b"], dtype=object)
    onnx = np.array(["b", "b", "a"], dtype=object)
    decision = np.array([[5.0, 5.0 - 1e-6, 0.0],   # a/b apart by 1e-6, noise 1e-6: tied
                         [5.0, 4.0, 0.0],          # a clearly ahead: a real mismatch
                         [0.0, 2.0, 1.0]])         # b clearly ahead: a real mismatch
    moved = decision + np.array([[1e-6, 0, 0], [1e-6, 0, 0], [0, 1e-6, 0]])
    comp = OutputComparison("label", "label", classes=classes, decided_by="decision_function")
    comp.update(native, onnx, 0, noise=Noise(np.arange(3), [native], decision, [moved]))
    stats = comp.result()
    assert stats.excused == 1 and stats.mismatched == 2 and stats.failed_rows == [1, 2]


def test_a_perturbed_native_model_that_predicts_the_other_label_is_evidence_of_a_tie():
    native = np.array([0, 1])
    onnx = np.array([1, 0])
    perturbed = np.array([1, 1])  # the native model, perturbed, gives 1 on row 0 itself
    comp = OutputComparison("label", "label", classes=[0, 1])
    comp.update(native, onnx, 0, noise=Noise(np.arange(2), [perturbed]))
    stats = comp.result()
    assert stats.excused == 1 and stats.mismatched == 1


def test_without_evidence_no_label_is_excused():
    comp = OutputComparison("label", "label", classes=[0, 1])
    comp.update(np.array([0, 1]), np.array([1, 0]), 0)
    assert comp.result().excused == 0 and comp.result().mismatched == 2


def test_a_binary_margin_is_tied_only_near_zero():
    comp = OutputComparison("label", "label", classes=[0, 1])
    margin = np.array([1e-7, 0.3])
    comp.update(np.array([0, 1]), np.array([1, 0]), 0,
                noise=Noise(np.arange(2), [np.array([0, 1])], margin, [margin + 1e-7]))
    stats = comp.result()
    assert stats.excused == 1 and stats.mismatched == 1


def test_what_a_failure_looks_like_is_named():
    comp = OutputComparison("probabilities")
    comp.update(np.array([[0.5, 0.5], [0.0, 1.0]]), np.array([[0.5, 0.5], [np.nan, np.nan]]), 10)
    stats = comp.result()
    assert stats.symptoms == {"nan"} and stats.nan_mismatched == 2 and stats.failed_rows == [11]
    data = stats.to_dict()
    assert data["failed_rows"] == [11] and data["tolerance"]["source"] == "default" and data["margin"] is None
