"""Known reasons a scikit-learn conversion disagrees, as data: which estimator, what the check sees (the
symptom), and why. Each row was observed on a fitted model and a converted graph; a row names a cause,
it does not excuse anything. Converter gaps that have a cheap, exact fix are fixed instead (see
``labels``, ``text`` and the calibrated-pipeline options) and have no row here.

Symptoms, as ``compat.checks`` reports them: ``nan`` (NaN in the graph where the native model gives a
number), ``labels`` (labels differ beyond the native model's noise), ``values`` (floats beyond their
tolerance and noise floor).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import domains


@dataclass(frozen=True)
class Cause:
    estimator: str  # class name, matched anywhere in the estimator's MRO
    symptom: str  # "nan" | "labels" | "values" | "*"
    why: str


KNOWN_CAUSES = (
    Cause("OneVsRestClassifier", "nan",
          "where every member's probability underflows to 0 (margins of thousands on unscaled features), "
          "scikit-learn returns 0 and skl2onnx's graph divides 0 by 0"),
    Cause("OneVsRestClassifier", "labels",
          "when its members are SVCs, the per-member scores skl2onnx writes for them do not match the members' "
          "decision_function, which scikit-learn's one-vs-rest predict compares (scikit-learn 1.9.1, skl2onnx "
          "1.20: every label can differ, with or without probability=True); keep this model in scikit-learn, or "
          "refit it as a multiclass SVC, whose own conversion agrees"),
    Cause("BaseLibSVM", "*",
          "skl2onnx writes an SVM's support vectors, coefficients and kernel parameters as float32 (the "
          "ai.onnx.ml SVM operators have no double attributes), so even the float64 graph computes the kernel "
          "from float32 parameters"),
    Cause("KBinsDiscretizer", "values",
          "skl2onnx stores the bin edges as float32: an input that sits within float32 rounding of an edge "
          "falls in the neighbouring bin, and its float64 graph does not run (onnxruntime: a float output "
          "declared where the graph computes double)"),
)


def known_causes(est, symptoms: set[str]) -> list[tuple[str, str]]:
    """(estimator class, why) for each known cause that matches a step of ``est`` and a symptom seen."""
    found = []
    for step in domains.steps_of(est):
        names = {cls.__name__ for cls in type(step).__mro__}
        for cause in KNOWN_CAUSES:
            if cause.estimator in names and (cause.symptom == "*" or cause.symptom in symptoms):
                found.append((type(step).__name__, cause.why))
    return found
