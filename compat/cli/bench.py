"""``modelport bench``: latency and throughput, native vs onnxruntime."""

from __future__ import annotations

import json

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("bench", help="native vs onnxruntime: latency and throughput", formatter_class=formatter,
                       description=(
        "Time the native model and its onnxruntime session on the same rows: latency at batch 1 (p50 and p99 "
        "over single-row calls) and throughput at a large batch, warm-up excluded, thread counts stated."),
        epilog="examples:\n  modelport bench model.joblib model.onnx\n  modelport bench model.joblib model.onnx "
               "--inputs val.csv --threads 1 --json bench.json")
    p.add_argument("native", metavar="NATIVE", help="the native model file")
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX model")
    p.add_argument("--inputs", metavar="DATA", help="rows to time on (default: synthesized)")
    p.add_argument("--rows", type=int, default=10000, metavar="N", help="rows to use (default: 10000)")
    p.add_argument("--batch", type=int, metavar="N", help="rows per call for throughput (default: all rows)")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (default: its own)")
    p.add_argument("--seconds", type=float, default=2.0, metavar="S", help="time budget per runtime (default: 2)")
    p.add_argument("--json", metavar="FILE.json", help="also write the results as JSON (schema modelport.bench/1)")
    common.add_load_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..checks.timing import bench, render_text

    out = console()
    report = bench(args.native, args.onnx, inputs=args.inputs, rows=args.rows, batch_rows=args.batch,
                   threads=args.threads, seconds=args.seconds, hints=common.hints(args))
    render_text(report, out)
    if args.json:
        common.write_json(json.dumps(report.to_dict(), indent=2) + "\n", args.json)
    return common.EXIT_OK
