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
    p.add_argument("native", metavar="NATIVE", help="the native model file (or a URL: s3://, gs://, az://, "
                   "http(s)://; copied to a private temporary folder to load it)")
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX model to check (or a URL)")
    common.add_load_options(p)
    common.add_check_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    return common.reporting(args, lambda: _run(args), args.native, args.onnx)


def _run(args) -> int:
    import compat
    import convert
    from convert.storage import is_remote, local_copy, redact

    from ..checks.report import junit_suites, render_text

    common.check_outputs(args.report, args.junit)
    out = console()
    with local_copy(args.native) as native, local_copy(args.onnx) as onnx_path:
        loaded = convert.load(native, common.hints(args))
        if loaded.facts.get("migrated"):
            from rich.markup import escape

            out.print(f"loaded {escape(redact(args.native))}:{common.migrated_mark(loaded)}")
        report = compat.check(loaded, str(onnx_path), inputs=args.inputs, rows=args.rows, seed=args.seed,
                              rtol=args.rtol, atol=args.atol, tolerances=common.tolerances(args),
                              batch_size=args.batch_size)
    if is_remote(args.native) or is_remote(args.onnx):  # name what the user gave, not the private copies
        report.native, report.onnx = redact(args.native), redact(args.onnx)
    render_text(report, out)
    common.write_json(report.to_json(), args.report)
    common.write_junit(junit_suites(report), args.junit)
    return common.EXIT_OK if report.passed else common.EXIT_FAIL
