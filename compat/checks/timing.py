"""Speed of the native model against its onnxruntime session, on the same inputs.

Latency at batch 1 (p50, p99 over single-row calls) and throughput at a large batch (rows/s), with
warm-up excluded and the thread counts stated, because a ratio without them means little.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

import convert

from .harness import prepare
from .report import environment

BENCH_SCHEMA = "modelport.bench/1"


@dataclass
class Timing:
    name: str  # "native" | "onnxruntime"
    p50_ms: float
    p99_ms: float
    throughput: float  # rows per second at ``batch_rows``
    batch_rows: int
    calls: int

    def to_dict(self) -> dict:
        return {"name": self.name, "latency_batch1_ms": {"p50": round(self.p50_ms, 4), "p99": round(self.p99_ms, 4)},
                "throughput_rows_per_s": round(self.throughput, 1), "batch_rows": self.batch_rows,
                "latency_calls": self.calls}


@dataclass
class BenchReport:
    native: str
    onnx: str | None
    model: str
    timings: list[Timing]
    threads: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    environment: dict = field(default_factory=environment)
    schema: str = BENCH_SCHEMA

    def ratio(self) -> dict:
        """How many times faster onnxruntime is (>1: faster) at batch 1 (p50) and at the large batch."""
        native, ort = self.timings
        return {"latency_p50": native.p50_ms / ort.p50_ms if ort.p50_ms else None,
                "throughput": ort.throughput / native.throughput if native.throughput else None}

    def to_dict(self) -> dict:
        return {"schema": self.schema, "native": self.native, "onnx": self.onnx, "model": self.model,
                "inputs": self.inputs, "threads": self.threads,
                "results": [t.to_dict() for t in self.timings],
                "onnxruntime_speedup": {k: (round(v, 3) if v else None) for k, v in self.ratio().items()},
                "environment": self.environment}


def _thread_info(ort_threads: int | None) -> dict:
    info = {"cpus": os.cpu_count(), "onnxruntime_intra_op": ort_threads or f"default ({os.cpu_count()})"}
    try:
        from threadpoolctl import threadpool_info

        pools = {f"{p['internal_api']}": p["num_threads"] for p in threadpool_info()}
        if pools:
            info["native_threadpools"] = pools
    except ImportError:
        pass
    return info


def _latency(fn, rows: list[dict], seconds: float, min_calls: int = 50, warmup: int = 10):
    for i in range(warmup):
        fn(rows[i % len(rows)])
    times = []
    deadline = time.perf_counter() + seconds
    i = 0
    while i < min_calls or time.perf_counter() < deadline:
        row = rows[i % len(rows)]
        t = time.perf_counter()
        fn(row)
        times.append(time.perf_counter() - t)
        i += 1
        if i >= 20000:
            break
    ms = np.asarray(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(ms)


def _throughput(fn, batch: dict, seconds: float, warmup: int = 2) -> float:
    n = len(next(iter(batch.values())))
    for _ in range(warmup):
        fn(batch)
    runs, t0 = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - t0 < seconds:
        fn(batch)
        runs += 1
    return n * runs / (time.perf_counter() - t0)


def bench(native, onnx_model, *, inputs=None, rows: int = 10000, batch_rows: int | None = None,
          threads: int | None = None, seconds: float = 2.0, seed: int = 0,
          hints: convert.Hints | None = None) -> BenchReport:
    """Time the native model and the ONNX model on the same rows (a file, or synthesized)."""
    prepared = prepare(native, onnx_model, inputs=inputs, rows=rows if inputs is None else 0, seed=seed, hints=hints,
                       threads=threads)
    loaded, runner, input_map, source = prepared.loaded, prepared.runner, prepared.input_map, prepared.source
    data: dict[str, list] = {}
    total = 0
    for chunk in source.batches(rows):
        for k, v in chunk.items():
            data.setdefault(k, []).append(np.asarray(v))
        total += len(next(iter(chunk.values())))
        if total >= rows:
            break
    feeds = {k: np.concatenate(v)[:rows] for k, v in data.items()}
    n = len(next(iter(feeds.values())))
    big = {k: v[: batch_rows or n] for k, v in feeds.items()}
    singles = [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(min(n, 256))]
    onnx_fn = lambda f: runner({input_map[k]: v for k, v in f.items() if k in input_map})  # noqa: E731
    timings = []
    for name, fn in (("native", loaded.run), ("onnxruntime", onnx_fn)):
        p50, p99, calls = _latency(fn, singles, seconds / 2)
        tput = _throughput(fn, big, seconds / 2)
        timings.append(Timing(name, p50, p99, tput, len(next(iter(big.values()))), calls))
    onnx_label = str(onnx_model) if isinstance(onnx_model, (str, os.PathLike)) else None
    return BenchReport(str(loaded.artifact.path), onnx_label, loaded.facts.get("estimator") or loaded.adapter,
                       timings, _thread_info(threads), {"source": source.description, "rows": n})


def render_text(report: BenchReport, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{report.native} vs {report.onnx or 'ONNX'}"), title_justify="left",
                  header_style="bold")
    for col in ("runtime", "batch 1 p50", "batch 1 p99", "throughput", "at batch"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    for t in report.timings:
        table.add_row(t.name, f"{t.p50_ms:.3f} ms", f"{t.p99_ms:.3f} ms", f"{t.throughput:,.0f} rows/s",
                      f"{t.batch_rows:,}")
    ratio = report.ratio()
    table.add_row("[bold]onnxruntime speed-up[/]", f"{ratio['latency_p50']:.2f}x" if ratio["latency_p50"] else "-", "",
                  f"{ratio['throughput']:.2f}x" if ratio["throughput"] else "-", "")
    console.print(table)
    threads = report.threads
    pools = ", ".join(f"{k} {v}" for k, v in threads.get("native_threadpools", {}).items())
    console.print(f"threads: onnxruntime intra-op {threads['onnxruntime_intra_op']}; native "
                  f"{pools or 'not reported'}; {threads['cpus']} CPUs. Warm-up excluded; "
                  f"{report.inputs['rows']} rows from {report.inputs['source']}.", markup=False)
