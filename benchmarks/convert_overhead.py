"""`modelport convert` (check included) against calling the converter and one onnxruntime run directly,
both as fresh processes, on the bundled scikit-learn fixtures. Target: ≤ 1.2× for scikit-learn models."""

from __future__ import annotations

import tempfile
from pathlib import Path

from _measure import PY, ROOT, measure, ratio_line

SKLEARN = ROOT / "fixtures" / "sklearn"

# what a user writes by hand: load, skl2onnx with the right input types, write, one onnxruntime run
BASELINE = """
import sys, pickle, joblib, numpy as np, onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
path, out, kind = sys.argv[1:4]
model = joblib.load(path)
if kind == "numeric":
    n = model.n_features_in_
    types = [("X", FloatTensorType([None, n]))]
    feeds = {"X": np.random.default_rng(0).normal(size=(1000, n)).astype(np.float32)}
elif kind == "text":
    types = [("text", StringTensorType([None, 1]))]
    feeds = {"text": np.array([["le café est bon"]] * 1000, dtype=object)}
else:
    cols = list(model.feature_names_in_)
    strings = {"city", "plan"}
    types = [(c, StringTensorType([None, 1]) if c in strings else FloatTensorType([None, 1])) for c in cols]
    feeds = {c.replace(" ", "_"): (np.array([["Oslo"]] * 1000, dtype=object) if c in strings
                                   else np.ones((1000, 1), np.float32)) for c in cols}
final = model.steps[-1][1] if hasattr(model, "steps") else model
# a user who read skl2onnx's issues: no ZipMap where it exists; an empty entry where it does not (LinearSVC)
options = {id(final): {"zipmap": False} if hasattr(final, "predict_proba") else {}}
onx = convert_sklearn(model, initial_types=types, options=options, target_opset={"": 21, "ai.onnx.ml": 3})
open(out, "wb").write(onx.SerializeToString())
opts = ort.SessionOptions()
opts.log_severity_level = 4
try:
    sess = ort.InferenceSession(out, opts, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
except Exception as exc:  # the locale trap on text pipelines: the bare route does not even run
    print("onnxruntime failed:", str(exc)[:120])
"""

CASES = [("breast_cancer_logreg.joblib", "numeric"), ("diabetes_gbr.joblib", "numeric"),
         ("churn_columns_forest.joblib", "columns"), ("topics_tfidf_svm.pkl", "text")]


def main() -> list[str]:
    lines = ["### Convert overhead (scikit-learn fixtures; fresh process each, median of 3)", "",
             "| fixture | modelport convert | skl2onnx + one onnxruntime run | ratio |", "|---|---:|---:|---:|"]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind in CASES:
            base = measure([PY, "-c", BASELINE, str(SKLEARN / name), str(Path(tmp) / "b.onnx"), kind])
            ours = measure([PY, "-m", "compat.cli", "convert", str(SKLEARN / name), "-o", str(Path(tmp) / "m.onnx")],
                           cwd=ROOT)
            remedy = "double" if "remedy double" in ours.output else "exact-trees" if "remedy exact-trees" in ours.output else None
            lines.append(ratio_line(name + (f" (remedy: {remedy})" if remedy else ""), ours.seconds, base.seconds, 1.2))
            if "onnxruntime failed" in base.output:
                notes.append(f"{name}: the bare route's model does not even run here ({base.output.strip()[:90]}).")
    return lines + [""] + notes


if __name__ == "__main__":
    print("\n".join(main()))
