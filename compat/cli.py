"""The ``modelport`` command: parse, call the public faces (``convert``, ``compat``), render, exit code.

Exit codes: 0 pass · 1 check failed or unsafe · 2 bad input or usage · 3 unsupported.
Heavy libraries are imported only inside the command that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_UNSUPPORTED = 0, 1, 2, 3

DESCRIPTION = """\
Convert saved ML models to ONNX and prove the converted model computes the same thing.

commands by task:
  inspect   what is this file? format, framework, the library version that wrote it, and whether
            unpickling it would run foreign code (never runs the file's code)
  convert   native model -> validated .onnx (checked against the original by default)
  check     compare a native model with an existing .onnx on the same inputs
  record    store inputs + native and ONNX outputs + versions as a golden record (.mprec)
  verify    replay records in today's environment: did an upgrade move any output?
  matrix    replay a record in throwaway virtualenvs with other library versions
  bench     latency and throughput of the native model vs its onnxruntime session
  audit     a folder of old artifacts: what each is, who wrote it, is it safe, does it still load,
            convert and agree (files run only in sandboxed workers, and only when the scan is safe)
"""

EPILOG = """\
examples:
  modelport inspect model.joblib
  modelport convert model.joblib                      # writes model.onnx if it agrees
  modelport convert model.joblib --inputs val.csv     # check on your own rows
  modelport check model.joblib model.onnx --report check.json
  modelport record model.joblib -o model.mprec        # once, before an upgrade
  modelport verify models/*.mprec --junit verify.xml  # in CI, after it
  modelport audit models/ --html audit.html           # inventory of a folder (--static: scan only)

exit codes: 0 pass, 1 check failed or unsafe artifact, 2 bad input or usage, 3 unsupported model
"""


class _Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps indented lines (examples, lists) as written."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, _terminal_width()))

    def _fill_text(self, text, width, indent):
        import textwrap

        out = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if any(line.startswith(" ") for line in lines[1:]) or (lines and lines[0].rstrip().endswith(":")):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(line.strip() for line in lines), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _add_check_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("check")
    g.add_argument("--inputs", metavar="DATA", help="rows to compare on: .npz (arrays named like the inputs), .npy, "
                   ".csv or .parquet (columns named like the training features); default: synthesized from the model")
    g.add_argument("--rows", type=int, default=1000, metavar="N", help="synthesized rows that probe the model's "
                   "boundaries, also added after --inputs rows (default: 1000; 0: only --inputs)")
    g.add_argument("--seed", type=int, default=0, help="seed for synthesized rows (default: 0)")
    g.add_argument("--rtol", type=float, metavar="R", help="relative tolerance for float outputs "
                   "(default by dtype: float32 1e-4, float64 1e-7)")
    g.add_argument("--atol", type=float, metavar="A", help="absolute tolerance for float outputs "
                   "(default by dtype: float32 1e-5, float64 1e-9)")
    g.add_argument("--tol", action="append", default=[], metavar="OUTPUT=RTOL,ATOL",
                   help="tolerance for one output, e.g. --tol probabilities=1e-3,1e-6 (repeatable)")
    g.add_argument("--batch-size", type=int, metavar="N", help="rows per batch; memory stays flat whatever the row "
                   "count (default: about 16 MB of inputs per batch, at most 65536 rows)")
    g.add_argument("--report", metavar="FILE.json", help="also write the report as JSON (schema modelport.check/1)")
    g.add_argument("--junit", metavar="FILE.xml", help="also write JUnit XML (one test case per output)")


def _add_load_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("loading")
    g.add_argument("--trust", action="store_true", help="load even if the static scan finds code that unpickling "
                   "would run (only for files from people you trust)")
    g.add_argument("--input", dest="input_specs", action="append", default=[], metavar="SPEC",
                   help="an input the model does not describe itself: [name=]DIMS[:DTYPE], e.g. batchx3x32x32 or "
                        "tokens=batchx16:int64; a non-numeric dim is dynamic (repeatable, in input order)")
    g.add_argument("--model-class", metavar="MODULE:CLASS", help="torch state_dict: the class that rebuilds the "
                   "model, as pkg.module:Class or path/to/file.py:Class")
    g.add_argument("--model-args", metavar="JSON", default="{}", help='torch: constructor arguments as JSON, '
                   'e.g. \'{"hidden": 64}\'')
    g.add_argument("--state-key", metavar="KEY", help="torch checkpoint: the key holding the state dict "
                   "(default: found automatically)")
    g.add_argument("--exporter", choices=("dynamo", "torchscript"), help="torch: force one ONNX exporter "
                   "(default: dynamo, falling back to torchscript)")
    g.add_argument("--signature", metavar="NAME", help="TensorFlow SavedModel: the signature to convert "
                   "(default: serving_default)")


def build_parser() -> argparse.ArgumentParser:
    from convert.pickle_policy import RULE

    parser = _Parser(prog="modelport", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"modelport {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("inspect", help="what a model file is, who wrote it, whether it is safe to load",
                       formatter_class=_Formatter, description=(
                           "Read a model file's bytes and say what it is: format, framework, the versions that "
                           "wrote it, and for pickles every global that unpickling would import, with a verdict "
                           "(safe / suspicious / unsafe / unknown). Never runs the file's code."),
                       epilog="examples:\n  modelport inspect model.joblib\n  modelport inspect models/*.pkl --json\n\n"
                              f"{RULE}\n\nexit codes: 0 no unsafe file, 1 an unsafe file, 2 bad input")
    p.add_argument("paths", nargs="+", metavar="PATH", help="model file(s) or SavedModel directories")
    p.add_argument("--json", action="store_true", help="print JSON (schema modelport.inspect/1) instead of text")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="native model -> validated ONNX", formatter_class=_Formatter, description=(
        "Convert a native model to ONNX, then check the ONNX model against the original on the same inputs. "
        "If the plain conversion disagrees, precision remedies are tried (exact tree thresholds, double "
        "precision); the report says which one was used. A model that still disagrees is not written."),
        epilog="examples:\n  modelport convert model.joblib\n  modelport convert model.joblib -o deploy/model.onnx "
               "--inputs holdout.csv --report check.json\n  modelport convert model.pkl --trust   "
               "# a pickle whose scan is not safe, from someone you trust")
    p.add_argument("path", metavar="PATH", help="the native model file")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="where to write (default: beside PATH, suffix .onnx)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the newest the converter supports)")
    p.add_argument("--no-check", action="store_true", help="write without checking (not recommended)")
    p.add_argument("--keep-failed", action="store_true", help="write the model even when the check fails")
    p.add_argument("--bench", action="store_true", help="after a passing conversion, time native vs onnxruntime "
                   "(as `modelport bench`)")
    _add_load_options(p)
    _add_check_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("check", help="compare a native model with an ONNX model", formatter_class=_Formatter,
                       description="Run the native model and the ONNX model on the same inputs and compare every "
                                   "output: exact for labels, tolerances for floats.",
                       epilog="examples:\n  modelport check model.joblib model.onnx\n  modelport check model.joblib "
                              "model.onnx --inputs val.npz --tol probabilities=1e-3,1e-6")
    p.add_argument("native", metavar="NATIVE", help="the native model file")
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX model to check")
    _add_load_options(p)
    _add_check_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("record", help="capture a golden record for CI", formatter_class=_Formatter, description=(
        "Run the native model and its ONNX counterpart (given, or converted here and kept inside the record) on "
        "a few hundred rows and store the inputs, both outputs, the tolerances, the sha256 of each artifact and "
        "the versions of every library involved. A record is a zip of JSON and .npy arrays (no pickle), with "
        "deterministic bytes: commit it next to the model."),
        epilog="examples:\n  modelport record model.joblib -o model.mprec\n  modelport record model.joblib "
               "model.onnx -o model.mprec --inputs golden.csv --rows 500")
    p.add_argument("native", metavar="NATIVE", help="the native model file")
    p.add_argument("onnx", metavar="MODEL.onnx", nargs="?", help="its ONNX model (default: convert it now)")
    p.add_argument("-o", "--output", metavar="RECORD", required=True, help="where to write the record (.mprec)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset when converting here")
    _add_load_options(p)
    _add_check_options(p)
    p.set_defaults(func=cmd_record, rows=None)

    p = sub.add_parser("verify", help="replay golden records in today's environment", formatter_class=_Formatter,
                       description=(
        "Load each record's artifacts in today's environment and compare three ways: native now vs native then, "
        "ONNX now vs ONNX then, native now vs ONNX now (and, for graphs converted at record time, today's "
        "conversion). Names the library versions that differ from the record next to the outputs that moved. "
        "Exit 1 when anything moved or an artifact changed since the record; exit 2 for a corrupt record."),
        epilog="examples:\n  modelport verify model.mprec\n  modelport verify models/*.mprec --junit verify.xml "
               "--report verify.json")
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files (.mprec)")
    p.add_argument("--trust", action="store_true", help="load artifacts the static scan does not vouch for")
    p.add_argument("--no-reconvert", action="store_true", help="skip converting again with today's converter")
    p.add_argument("--report", metavar="FILE.json", help="write all results as JSON (schema modelport.verify/1)")
    p.add_argument("--junit", metavar="FILE.xml", help="write JUnit XML (a suite per record, a case per output)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("matrix", help="replay a record under other library versions", formatter_class=_Formatter,
                       description=(
        "Run `modelport verify` on a record inside throwaway virtualenvs, one per --with (installed from the "
        "package index, cached between runs under $MODELPORT_CACHE or ~/.cache/modelport/envs), and report per "
        "environment: does the model load, does it still agree natively, does ONNX, and the first version "
        "that breaks. Several pins for one environment: separate them with commas."),
        epilog="examples:\n  modelport matrix model.mprec --with scikit-learn==1.5.2 --with scikit-learn==1.7.2\n"
               "  modelport matrix model.mprec --with 'scikit-learn==1.6.1,numpy==1.26.4' --json matrix.json")
    p.add_argument("record", metavar="RECORD", help="a record (.mprec)")
    p.add_argument("--with", dest="withs", action="append", required=True, metavar="PINS",
                   help="pins for one environment, e.g. scikit-learn==1.5.2 (repeatable: one environment each)")
    p.add_argument("--trust", action="store_true", help="load artifacts the static scan does not vouch for")
    p.add_argument("--json", metavar="FILE.json", help="also write the results as JSON (schema modelport.matrix/1)")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("bench", help="native vs onnxruntime: latency and throughput", formatter_class=_Formatter,
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
    _add_load_options(p)
    p.set_defaults(func=cmd_bench)

    for module in COMMAND_MODULES:  # commands that live in their own module (cheap to import: no frameworks)
        importlib.import_module(module).add_parser(sub, _Formatter)
    return parser


# modules exposing add_parser(subparsers, formatter_class), whose parsers set_defaults(func=...) themselves
COMMAND_MODULES: tuple[str, ...] = ("compat.audit_cli",)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("modelport")
    except metadata.PackageNotFoundError:
        return "unknown"


def console(stderr: bool = False):
    """A rich Console; when output is not a terminal (CI logs, pipes) it is 110 columns, not rich's 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 110
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


# ---------------------------------------------------------------------------------------------
# commands


def cmd_inspect(args) -> int:
    import convert

    from .inspect_view import render_artifact

    artifacts = [convert.inspect(p) for p in args.paths]
    if args.json:
        payload = [dict(a.to_dict(), schema="modelport.inspect/1") for a in artifacts]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
    else:
        out = console()
        for a in artifacts:
            render_artifact(a, out)
    worst = {"unsafe": EXIT_FAIL}
    return max((worst.get(a.safety, EXIT_OK) for a in artifacts), default=EXIT_OK)


def _hints(args):
    import convert
    from convert.spec import parse_input_spec

    specs = tuple(parse_input_spec(s, i) for i, s in enumerate(args.input_specs))
    try:
        model_args = json.loads(args.model_args or "{}")
    except json.JSONDecodeError as exc:
        raise convert.BadInputError(f"--model-args is not valid JSON ({exc.msg})", hint='e.g. \'{"hidden": 64}\'') from None
    if not isinstance(model_args, dict):
        raise convert.BadInputError("--model-args must be a JSON object", hint='e.g. \'{"hidden": 64}\'')
    return convert.Hints(trust=args.trust, inputs=specs, model_class=args.model_class, model_args=model_args,
                         state_key=args.state_key, exporter=args.exporter, signature_name=args.signature)


def _tolerances(args) -> dict:
    from .compare import Tolerance

    out = {}
    for item in args.tol:
        try:
            name, values = item.split("=", 1)
            rtol, atol = (float(v) for v in values.split(","))
        except ValueError:
            raise SystemExit(_usage_error(f"--tol takes OUTPUT=RTOL,ATOL, got {item!r}")) from None
        out[name.strip()] = Tolerance(rtol, atol)
    return out


def _usage_error(message: str) -> int:
    sys.stderr.write(f"modelport: error: {message}\n")
    return EXIT_BAD_INPUT


def _write_report(report, path: str | None) -> None:
    if path:
        from convert.onnxfile import write_atomic

        write_atomic(Path(path), report.to_json())


def cmd_convert(args) -> int:
    import compat
    import convert

    from .report import render_text

    out = console()
    loaded = convert.load(args.path, _hints(args))
    from rich.markup import escape

    out.print(f"loaded {escape(args.path)}: {escape(loaded.facts.get('estimator') or loaded.adapter)} "
                  f"[dim]({escape(loaded.signature.describe())})[/]")
    result = compat.convert(loaded, args.output, opset=args.opset, inputs=args.inputs, rows=args.rows, seed=args.seed,
                            rtol=args.rtol, atol=args.atol, tolerances=_tolerances(args), check=not args.no_check,
                            keep_failed=args.keep_failed, batch_size=args.batch_size)
    if result.report is None:
        out.print(f"wrote {result.output} [yellow](not checked: --no-check)[/]")
        return EXIT_OK
    render_text(result.report, out)
    _write_report(result.report, args.report)
    from .junit import from_check

    _write_junit(from_check(result.report), args.junit)
    if result.passed:
        out.print(f"wrote {result.output}")
        if args.bench:
            from .timing import bench, render_text as render_bench

            render_bench(bench(result.loaded, str(result.output)), out)
        return EXIT_OK
    if result.output:
        out.print(f"[yellow]wrote {result.output} although it disagrees (--keep-failed)[/]")
    else:
        out.print("no ONNX file written: every conversion disagrees with the original "
                      "(--keep-failed writes the closest one anyway)")
    return EXIT_FAIL


def _write_junit(suites, path: str | None) -> None:
    if path:
        from .junit import write

        write(suites, path)


def cmd_record(args) -> int:
    from .records import DEFAULT_RECORD_ROWS, build

    out = console()
    rtol_atol = _tolerances(args)
    record = build(args.native, args.onnx, args.output, inputs=args.inputs,
                   rows=args.rows if args.rows is not None else DEFAULT_RECORD_ROWS, seed=args.seed,
                   rtol=args.rtol, atol=args.atol, tolerances=rtol_atol, hints=_hints(args), opset=args.opset)
    rows = record.manifest["inputs"][0]["shape"][0] if record.manifest["inputs"] else 0
    size = Path(args.output).stat().st_size
    kept = "ONNX graph kept inside" if record.onnx_bytes else f"ONNX: {record.manifest['onnx']['path']}"
    out.print(f"wrote {args.output}: {rows} rows, outputs {', '.join(o['name'] for o in record.manifest['outputs']['native'])}"
              f"; {kept}; {size / 1024:.1f} KiB", markup=False)
    return EXIT_OK


def cmd_verify(args) -> int:
    from .junit import from_verify
    from .replay import render_text, verify

    out = console()
    reports = [verify(path, trust=args.trust, reconvert=not args.no_reconvert) for path in args.records]
    for r in reports:
        render_text(r, out)
    if args.report:
        from convert.onnxfile import write_atomic

        payload = {"schema": "modelport.verify/1", "verdict": "pass" if all(r.passed for r in reports) else "fail",
                   "records": [r.to_dict() for r in reports]}
        write_atomic(Path(args.report), json.dumps(payload, indent=2, default=str) + "\n")
    _write_junit(from_verify(reports), args.junit)
    failed = sum(not r.passed for r in reports)
    if len(reports) > 1:
        out.print(f"{len(reports) - failed} of {len(reports)} record(s) pass")
    return EXIT_FAIL if failed else EXIT_OK


def cmd_bench(args) -> int:
    from .timing import bench, render_text

    out = console()
    report = bench(args.native, args.onnx, inputs=args.inputs, rows=args.rows, batch_rows=args.batch,
                   threads=args.threads, seconds=args.seconds, hints=_hints(args))
    render_text(report, out)
    if args.json:
        from convert.onnxfile import write_atomic

        write_atomic(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
    return EXIT_OK


def cmd_matrix(args) -> int:
    from .version_matrix import matrix, render_text

    out = console()
    withs = [[pin for pin in item.split(",") if pin.strip()] for item in args.withs]
    out.print(f"preparing {len(withs)} environment(s); the first run installs from the package index...", markup=False)
    report = matrix(args.record, withs, trust=args.trust)
    render_text(report, out)
    if args.json:
        from convert.onnxfile import write_atomic

        write_atomic(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
    return EXIT_OK if report.passed else EXIT_FAIL


def cmd_check(args) -> int:
    import compat
    import convert

    from .report import render_text

    out = console()
    loaded = convert.load(args.native, _hints(args))
    report = compat.check(loaded, args.onnx, inputs=args.inputs, rows=args.rows, seed=args.seed, rtol=args.rtol,
                          atol=args.atol, tolerances=_tolerances(args), batch_size=args.batch_size)
    render_text(report, out)
    _write_report(report, args.report)
    from .junit import from_check

    _write_junit(from_check(report), args.junit)
    return EXIT_OK if report.passed else EXIT_FAIL


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from convert.errors import ModelportError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except ModelportError as exc:
        sys.stderr.write(f"modelport: {exc.line()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("modelport: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
