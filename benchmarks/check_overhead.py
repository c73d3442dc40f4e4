"""`modelport check` on 1,000,000 CSV rows against a bare script doing what a user would write by hand:
read the CSV, native predict, one onnxruntime run, one numpy comparison. Targets: time ≤ 1.2×, peak memory
≤ 1.5×; and modelport's peak memory at 100k vs 1M rows (flat, because it streams)."""

from __future__ import annotations

import sys

from _measure import DATA, PY, ROOT, measure, ratio_line

MODEL = ROOT / "fixtures" / "sklearn" / "diabetes_gbr.joblib"

BASELINE = """
import sys, joblib, numpy as np, pandas as pd, onnxruntime as ort
model = joblib.load(sys.argv[1])
x = pd.read_csv(sys.argv[3]).to_numpy(dtype=np.float64)
native = model.predict(x)
sess = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
onnx = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(native.shape)
print("max abs error", float(np.abs(onnx - native).max()))
"""

GENERATE = """
import sys, numpy as np, pandas as pd
from sklearn.datasets import load_diabetes
d = load_diabetes().data
n = int(sys.argv[1]); rng = np.random.default_rng(0)
x = d[rng.integers(0, len(d), n)] + rng.normal(0, 0.01, (n, d.shape[1]))
pd.DataFrame(x, columns=[f"f{i}" for i in range(d.shape[1])]).to_csv(sys.argv[2], index=False, float_format="%.6g")
"""


def csv_with(rows: int):
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"diabetes_{rows}.csv"
    if not path.exists():
        measure([PY, "-c", GENERATE, str(rows), str(path)], repeats=1)
    return path


def main(rows: int = 1_000_000) -> list[str]:
    onnx = DATA / "diabetes_gbr.onnx"
    DATA.mkdir(parents=True, exist_ok=True)
    measure([PY, "-m", "compat.cli", "convert", str(MODEL), "-o", str(onnx)], repeats=1, cwd=ROOT)
    big, small = csv_with(rows), csv_with(rows // 10)
    base = measure([PY, "-c", BASELINE, str(MODEL), str(onnx), str(big)])
    ours = measure([PY, "-m", "compat.cli", "check", str(MODEL), str(onnx), "--inputs", str(big), "--rows", "0"],
                   cwd=ROOT)
    ours_small = measure([PY, "-m", "compat.cli", "check", str(MODEL), str(onnx), "--inputs", str(small), "--rows",
                          "0"], cwd=ROOT)
    base_small = measure([PY, "-c", BASELINE, str(MODEL), str(onnx), str(small)])
    return [
        f"### Check overhead ({rows:,} CSV rows, GradientBoostingRegressor, 10 features)", "",
        "| | modelport check | bare script | ratio |", "|---|---:|---:|---:|",
        ratio_line("wall time", ours.seconds, base.seconds, 1.2),
        ratio_line("peak memory", ours.peak_mb, base.peak_mb, 1.5, "MB"),
        "", "| rows | modelport peak memory | bare script peak memory |", "|---:|---:|---:|",
        f"| {rows // 10:,} | {ours_small.peak_mb:.0f} MB | {base_small.peak_mb:.0f} MB |",
        f"| {rows:,} | {ours.peak_mb:.0f} MB | {base.peak_mb:.0f} MB |",
        "", f"modelport's memory from {rows // 10:,} to {rows:,} rows: {ours.peak_mb / ours_small.peak_mb:.2f}× "
        f"(streams in batches); the bare script: {base.peak_mb / base_small.peak_mb:.2f}× (holds every row).",
    ]


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
