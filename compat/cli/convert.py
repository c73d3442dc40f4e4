"""``modelport convert``: native model -> ONNX, checked against the original, remedies tried."""

from __future__ import annotations

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("convert", help="native model -> validated ONNX", formatter_class=formatter, description=(
        "Convert a native model to ONNX, then check the ONNX model against the original on the same inputs. "
        "If the plain conversion disagrees, precision remedies are tried (exact tree thresholds, double "
        "precision); the report says which one was used. A model that still disagrees is not written."),
        epilog="examples:\n  modelport convert model.joblib\n  modelport convert model.joblib -o deploy/model.onnx "
               "--inputs holdout.csv --report check.json\n  modelport convert model.pkl --trust   "
               "# a pickle whose scan is not safe, from someone you trust")
    p.add_argument("path", metavar="PATH", help="the native model file (or a URL: s3://, gs://, az://, http(s)://; "
                   "copied to a private temporary folder to load it)")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="where to write (default: beside PATH, suffix .onnx; "
                   "the default never replaces an ONNX file converted from another file, or not by modelport); a store "
                   "URL is written in one upload once the model passed")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the newest the converter supports)")
    p.add_argument("--no-check", action="store_true", help="write without checking (not recommended)")
    p.add_argument("--keep-failed", action="store_true", help="write the model even when the check fails")
    p.add_argument("--bench", action="store_true", help="after a passing conversion, time native vs onnxruntime "
                   "(as `modelport bench`)")
    common.add_load_options(p)
    common.add_check_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    return common.reporting(args, lambda: _staged(args), args.path, args.output)


def _staged(args) -> int:
    """Load from a private copy of a store object; an output meant for a store is written locally, then uploaded."""
    from convert.storage import check_writable, is_remote, local_copy, with_suffix

    target = args.output or (with_suffix(args.path, ".onnx") if is_remote(args.path) else None)
    if target is not None and is_remote(target):
        check_writable(str(target))
        with local_copy(args.path) as local, common.staged_output(target) as staged:
            return _run(args, local, staged)
    with local_copy(args.path) as local:
        return _run(args, local, common.Staged(target, target))


def _run(args, local, target: "common.Staged") -> int:
    import compat
    import convert
    from convert.storage import is_remote, redact

    from ..checks.report import junit_suites, render_text

    common.check_outputs(None if is_remote(target.final) else args.output, args.report, args.junit)
    out = console()
    loaded = convert.load(local, common.hints(args))
    from rich.markup import escape

    out.print(f"loaded {escape(redact(args.path))}: {escape(loaded.facts.get('estimator') or loaded.adapter)} "
                  f"[dim]({escape(loaded.signature.describe())})[/]" + common.migrated_mark(loaded))
    result = compat.convert(loaded, target.local, opset=args.opset, inputs=args.inputs, rows=args.rows,
                            seed=args.seed, rtol=args.rtol, atol=args.atol, tolerances=common.tolerances(args),
                            check=not args.no_check, keep_failed=args.keep_failed, batch_size=args.batch_size)
    if result.report is not None:  # name what the user gave, not the private copies
        if is_remote(args.path):
            result.report.native = redact(args.path)
        if target.final is not None and is_remote(target.final):
            result.report.onnx = redact(str(target.final))
    if result.output:
        result.output = target.publish(result.output)
    if result.report is None:
        out.print(f"wrote {result.output} [yellow](not checked: --no-check)[/]")
        common.write_unchecked_report(args.report, redact(args.path), str(result.output), result.attempts)
        return common.EXIT_OK
    render_text(result.report, out)
    common.write_json(result.report.to_json(), args.report)
    common.write_junit(junit_suites(result.report), args.junit)
    if result.passed:
        out.print(f"wrote {result.output}")
        if args.bench:
            from ..checks.timing import bench
            from ..checks.timing import render_text as render_bench

            render_bench(bench(result.loaded, str(result.output)), out)
        return common.EXIT_OK
    if result.output:
        out.print(f"[yellow]wrote {result.output} although it disagrees (--keep-failed)[/]")
    else:
        out.print("no ONNX file written: every conversion disagrees with the original "
                      "(--keep-failed writes the closest one anyway)")
    return common.EXIT_FAIL
