"""How many ordinary scikit-learn models convert and agree, and why the rest are refused.

Fits every case of tests/sklearn_zoo.py (real bundled datasets, then raw unscaled off-centre features)
and saves it with joblib, runs ``compat.convert`` checked on the held-out rows (and on synthesized rows),
and prints one line per model: the remedy kept, how many values or labels agree only within the native
model's measured noise, and for a refusal its diagnosis. ``labels != predict`` counts held-out rows whose
ONNX label differs from ``model.predict`` (run with onnxruntime, not modelport's comparator).

    .venv/bin/python benchmarks/sklearn_coverage.py [--json out.json] [FILTER]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))


def holdout_file(x_te, loaded, folder: Path) -> Path:
    import numpy as np
    import pandas as pd

    spec = loaded.signature.inputs
    if hasattr(x_te, "columns"):
        path = folder / "holdout.csv"
        x_te.to_csv(path, index=False)
        return path
    if spec[0].dtype == "string":
        path = folder / "holdout.csv"
        pd.DataFrame({"text": list(x_te)}).to_csv(path, index=False)
        return path
    path = folder / "holdout.npz"
    np.savez(path, **{spec[0].name: np.asarray(x_te)})
    return path


def run_case(case, folder: Path) -> dict:
    import joblib

    import compat
    import convert
    import sklearn_zoo

    model, x_te, _ = sklearn_zoo.fit(case)
    path = folder / f"{case.name.replace('/', '_')}.joblib"
    joblib.dump(model, path)
    row = {"model": case.name}
    t0 = time.perf_counter()
    try:
        loaded = convert.load(path)
        hold = holdout_file(x_te, loaded, folder)
        result = compat.convert(loaded, folder / "out.onnx", inputs=hold)
        row["outcome"] = "agrees" if result.passed else "refused: disagrees (exit 1)"
        row["remedy"] = result.report.conversion.get("remedy") or "none"
        row["mismatched"] = sum(o.mismatched for o in result.report.outputs)
        row["within_noise"] = sum(o.noise_elements + o.excused for o in result.report.outputs)
        row["tried"] = [a.to_dict() for a in result.attempts]
        if result.passed:
            synth = compat.check(loaded, result.output)
            row["synthesized"] = synth.verdict
            row["labels_differ"] = _labels_differ(model, loaded, result.output, x_te)
        elif result.report.diagnosis is not None:
            row["reason"] = result.report.diagnosis.line()
    except convert.ModelportError as exc:
        row["outcome"] = f"refused: exit {exc.exit_code}"
        row["reason"] = exc.message
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _labels_differ(model, loaded, onnx_path, x_te) -> int | None:
    import numpy as np
    import onnxruntime as ort
    import sklearn_zoo

    if not any(o.spec.kind == "label" for o in loaded.runner.outputs):
        return None
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds, native_x = sklearn_zoo.onnx_feeds(sess, loaded, x_te)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    native = np.asarray(model.predict(native_x))
    return int((native.astype(str) != np.asarray(got["label"]).reshape(native.shape).astype(str)).sum())


def main(argv=None) -> int:
    import sklearn_zoo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("filter", nargs="?", default="")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in sklearn_zoo.cases() + sklearn_zoo.offcentre_cases():
            if args.filter.lower() not in case.name.lower():
                continue
            row = run_case(case, Path(tmp))
            rows.append(row)
            extra = row.get("reason") or (f"remedy {row.get('remedy')}, synthesized: {row.get('synthesized', '-')}"
                                          + (f", within noise: {row['within_noise']}"
                                             if row.get("within_noise") else "")
                                          + (f", labels != predict: {row['labels_differ']}"
                                             if row.get("labels_differ") is not None else ""))
            print(f"{row['model']:<42} {row['outcome']:<28} {row['seconds']:>6.2f}s  {extra}", flush=True)
    counts = Counter(r["outcome"].split(":")[0] for r in rows)
    print(f"\n{len(rows)} models: {counts.get('agrees', 0)} convert and agree, {counts.get('refused', 0)} refused")
    noisy = sum(1 for r in rows if r.get("within_noise") and r["outcome"] == "agrees")
    wrong = sum(1 for r in rows if r.get("labels_differ"))
    print(f"  {noisy} agree only within their measured noise floor; "
          f"{wrong} pass with labels != predict on held-out rows")
    for outcome, n in Counter(r["outcome"] for r in rows).most_common():
        print(f"  {n:>3}  {outcome}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
