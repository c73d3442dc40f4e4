"""``modelport check``: a native model against an existing ONNX file on the same inputs."""

from __future__ import annotations

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("check", help="compare a native model with an ONNX model", formatter_class=formatter,
                       description="Run the native model and the ONNX model on the same inputs and compare every "
                                   "output: exact for labels, tolerances for floats.",
                       epilog="examples:\n  modelport check model.joblib model.onnx\n  modelport check model.joblib "
                              "model.onnx --inputs val.npz --tol probabilities=1e-3,1e-6")
    p.add_argument("native", metavar="NATIVE", help="the native model file")
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX model to check")
    common.add_load_options(p)
    common.add_check_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    return common.reporting(args, lambda: _run(args), args.native, args.onnx)


def _run(args) -> int:
    import compat
    import convert

    from ..checks.report import junit_suites, render_text

    common.check_outputs(args.report, args.junit)
    out = console()
    loaded = convert.load(args.native, common.hints(args))
    if loaded.facts.get("migrated"):
        from rich.markup import escape

        out.print(f"loaded {escape(args.native)}:{common.migrated_mark(loaded)}")
    report = compat.check(loaded, args.onnx, inputs=args.inputs, rows=args.rows, seed=args.seed, rtol=args.rtol,
                          atol=args.atol, tolerances=common.tolerances(args), batch_size=args.batch_size)
    render_text(report, out)
    common.write_json(report.to_json(), args.report)
    common.write_junit(junit_suites(report), args.junit)
    return common.EXIT_OK if report.passed else common.EXIT_FAIL
