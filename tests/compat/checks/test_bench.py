"""`modelport bench`: both runtimes timed on the same rows, threads stated. No wall time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import compat

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "fixtures" / "sklearn" / "breast_cancer_logreg.joblib"


def test_bench_reports_latency_and_throughput_for_both(tmp_path):
    assert compat.convert(MODEL, tmp_path / "m.onnx").passed
    report = compat.bench(MODEL, tmp_path / "m.onnx", rows=500, seconds=0.4)
    native, ort = report.timings
    assert (native.name, ort.name) == ("native", "onnxruntime")
    for t in (native, ort):
        assert 0 < t.p50_ms <= t.p99_ms and t.throughput > 0 and t.batch_rows == 500 and t.calls >= 50
    data = report.to_dict()
    assert data["schema"] == "modelport.bench/1" and data["threads"]["cpus"] >= 1
    assert set(data["onnxruntime_speedup"]) == {"latency_p50", "throughput"}


def test_bench_and_convert_bench_cli(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "compat.cli", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, cwd=tmp_path)
    done = run("convert", MODEL, "-o", "m.onnx", "--bench")
    assert done.returncode == 0 and "onnxruntime speed-up" in done.stdout and "threads:" in done.stdout
    done = run("bench", MODEL, "m.onnx", "--rows", "300", "--seconds", "0.4", "--threads", "1", "--json", "b.json")
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["threads"]["onnxruntime_intra_op"] == 1 and data["inputs"]["rows"] == 300
