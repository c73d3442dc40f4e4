"""What every subcommand shares: exit codes, the help formatter, option groups, and turning options into
``convert.Hints`` and tolerances."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_UNSUPPORTED = 0, 1, 2, 3


class Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps indented lines (examples, lists) as written."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, terminal_width()))

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


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 100 (what shutil.get_terminal_size does, without importing
    shutil and its compressors: argparse builds a formatter for every option it is given)."""
    import os

    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 100
    except (AttributeError, ValueError, OSError):
        return 100


class Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def add_check_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("check")
    g.add_argument("--inputs", metavar="DATA", help="rows to compare on: .npz (arrays named like the inputs), .npy, "
                   ".csv or .parquet (columns named like the training features); default: synthesized from the model")
    g.add_argument("--rows", type=int, default=1000, metavar="N", help="synthesized rows that probe the model's "
                   "boundaries, also added after --inputs rows (default: 1000; 0: only --inputs)")
    add_tolerance_options(g)
    g.add_argument("--batch-size", type=int, metavar="N", help="rows per batch; memory stays flat whatever the row "
                   "count (default: about 16 MB of inputs per batch, at most 65536 rows)")
    g.add_argument("--report", metavar="FILE.json", help="also write the report as JSON (schema modelport.check/1)")
    g.add_argument("--junit", metavar="FILE.xml", help="also write JUnit XML (one test case per output)")


def add_tolerance_options(g) -> None:
    g.add_argument("--seed", type=int, default=0, help="seed for synthesized rows (default: 0)")
    g.add_argument("--rtol", type=float, metavar="R", help="relative tolerance for float outputs "
                   "(default by dtype: float32 1e-4, float64 1e-7)")
    g.add_argument("--atol", type=float, metavar="A", help="absolute tolerance for float outputs "
                   "(default by dtype: float32 1e-5, float64 1e-9)")
    g.add_argument("--tol", action="append", default=[], metavar="OUTPUT=RTOL,ATOL",
                   help="tolerance for one output, e.g. --tol probabilities=1e-3,1e-6 (repeatable)")


def add_record_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rows and tolerances")
    g.add_argument("--inputs", metavar="DATA", help="rows to record: .npz (arrays named like the inputs), .npy, "
                   ".csv or .parquet (columns named like the training features); the first --rows of them are "
                   "stored, the rest only take part in the check; default: rows synthesized from the model")
    g.add_argument("--rows", type=int, metavar="N", help="rows stored in the record: the first N rows of --inputs "
                   "(the output says how many were left out), or N synthesized rows without --inputs; no synthesized "
                   "rows are added to --inputs (default: 256; 0: every row of --inputs)")
    add_tolerance_options(g)


def add_replay_class_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model class (torch state dicts)")
    g.add_argument("--model-class", metavar="MODULE:CLASS", help="the class that rebuilds the model, as "
                   "pkg.module:Class or path/to/file.py:Class (relative to the current folder). A record names "
                   "its class too, but modelport imports code a record names only with --trust")
    g.add_argument("--model-args", metavar="JSON", help="constructor arguments as a JSON object (default: the ones "
                   "in the record: data, used only with a class you name or trust)")


def add_load_options(p: argparse.ArgumentParser) -> None:
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
                   "(default: found automatically); scikit-learn: the key (or index) of the estimator to take from a "
                   "dict or tuple of several")
    g.add_argument("--exporter", choices=("dynamo", "torchscript"), help="torch: force one ONNX exporter "
                   "(default: torchscript, then dynamo when its graph fails; a .pt2 takes dynamo only)")
    g.add_argument("--signature", metavar="NAME", help="TensorFlow SavedModel: the signature to convert "
                   "(default: serving_default)")


def hints(args):
    import convert
    from convert.spec import parse_input_spec

    specs = tuple(parse_input_spec(s, i) for i, s in enumerate(args.input_specs))
    return convert.Hints(trust=args.trust, inputs=specs, model_class=args.model_class,
                         model_args=model_args(args.model_args) or {}, state_key=args.state_key,
                         exporter=args.exporter, signature_name=args.signature)


def model_args(text: str | None) -> dict | None:
    """``--model-args`` as a dict (None when not given)."""
    from convert.errors import BadInputError

    if text is None:
        return None
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"--model-args is not valid JSON ({exc.msg})", hint='e.g. \'{"hidden": 64}\'') from None
    if not isinstance(value, dict):
        raise BadInputError("--model-args must be a JSON object", hint='e.g. \'{"hidden": 64}\'')
    return value


def tolerances(args) -> dict:
    from ..checks.compare import Tolerance

    out = {}
    for item in args.tol:
        try:
            name, values = item.split("=", 1)
            rtol, atol = (float(v) for v in values.split(","))
        except ValueError:
            raise SystemExit(usage_error(f"--tol takes OUTPUT=RTOL,ATOL, got {item!r}")) from None
        out[name.strip()] = Tolerance(rtol, atol)
    return out


def usage_error(message: str) -> int:
    sys.stderr.write(f"modelport: error: {message}\n")
    return EXIT_BAD_INPUT


def check_outputs(*paths: str | None) -> None:
    """Every output named on the command line can be written: checked before any work is done."""
    from convert.atomic import check_writable

    for path in paths:
        if path:
            check_writable(path)


def cache_dir(args):
    """The result cache's folder (``--cache``, else the default one in the user's cache folder); None with
    ``--no-cache``."""
    if args.no_cache:
        return None
    if args.cache:
        return args.cache
    from ..scale.cache import default_dir

    return default_dir()


class Staged:
    """An output as a command writes it (``local``, a path or None for the default) and where it ends up
    (``final``): ``publish(written)`` uploads a file written for a store URL and says where it went."""

    def __init__(self, local, final):
        self.local, self.final = local, final

    def publish(self, written):
        from convert.storage import is_remote, put

        if self.final is not None and is_remote(self.final):
            return put(Path(written), str(self.final))
        return written


def staged_output(url: str):
    """A private local file to write an output meant for a store URL, uploaded by ``Staged.publish``."""
    import shutil
    from contextlib import contextmanager

    from convert.storage import private_folder

    @contextmanager
    def stage():
        folder = private_folder("modelport-out-")
        try:
            yield Staged(folder / url.rstrip("/").rsplit("/", 1)[-1], url)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return stage()


def write_json(text: str, path: str | None) -> None:
    """Write a JSON report to ``path`` (when given), atomically."""
    if path:
        from convert.atomic import write_atomic

        write_atomic(Path(path), text)


def write_junit(suites, path: str | None) -> None:
    """Write JUnit suites to ``path`` (when given), atomically."""
    if path:
        from ..junit import write

        write(suites, path)


def reporting(args, run, native: str, onnx: str | None = None) -> int:
    """Run ``run()`` (a subcommand body) so that ``--report`` is written whatever the exit code: a run that
    stops on an error (bad input, an unsupported model, an unsafe file, a usage error found while running)
    leaves a report with verdict ``error``, the exit code and the message, instead of no file at all."""
    from convert.errors import ModelportError

    try:
        return run()
    except ModelportError as exc:
        write_error_report(args.report, native, onnx, exc.exit_code, exc.message, exc.hint, type(exc).__name__)
        raise
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        if code != EXIT_OK:
            write_error_report(args.report, native, onnx, code, "usage error (see the message printed)", None,
                               "usage")
        raise


def write_error_report(path: str | None, native: str, onnx: str | None, exit_code: int, message: str,
                       hint: str | None, kind: str) -> None:
    """A check report (same schema) for a run that ended before any output was compared."""
    if not path:
        return
    import json

    from ..checks.report import Report

    data = Report(verdict="error", native=str(native), onnx=onnx).to_dict()
    data["exit_code"] = exit_code
    data["error"] = {"kind": kind, "message": message, "hint": hint}
    write_json(json.dumps(data, indent=2, default=str) + "\n", path)


def write_unchecked_report(path: str | None, native: str, onnx: str, attempts) -> None:
    """The report of ``convert --no-check``: what was written, and that nothing was compared."""
    if not path:
        return
    import json

    from ..checks.report import Report

    data = Report(verdict="unchecked", native=str(native), onnx=onnx, remedies=list(attempts)).to_dict()
    data["exit_code"] = EXIT_OK
    write_json(json.dumps(data, indent=2, default=str) + "\n", path)


def migrated_mark(loaded) -> str:
    """`` [yellow]migrated (N changes)[/]`` for a model loading brought forward from an older release, else ""."""
    changes = loaded.facts.get("migrated") or []
    return f" [yellow]migrated ({len(changes)} change{'s' if len(changes) != 1 else ''}; see the notes)[/]" \
        if changes else ""
