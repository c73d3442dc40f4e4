"""The ``modelport`` command: parse, call the public faces (``convert``, ``compat``), render, exit code.
One module per subcommand, registered in ``COMMANDS``; each exposes ``add_parser(subparsers, formatter)``
and sets its own ``func``.

Exit codes: 0 pass · 1 check failed or unsafe · 2 bad input or usage · 3 unsupported.
Heavy libraries are imported only inside the command that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

from .common import (
    EXIT_BAD_INPUT,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    Formatter,
    Parser,
)

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
            convert and agree (a file is loaded only when the scan is safe or with --trust, in a fresh
            process of its own: no network, no credentials, limits on everything it starts)
  migrate   an old model rescued into a format that runs no code (ONNX, skops, safetensors), proved
            against the release that saved it, with a provenance file beside it
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


# one module per subcommand, in the order ``--help`` lists them; cheap to import (no frameworks)
COMMANDS = ("inspect", "convert", "check", "record", "verify", "matrix", "bench", "audit", "migrate")


def build_parser(only: str | None = None) -> Parser:
    """The whole command line, or with ``only`` just that subcommand's parser: a run of one command need not
    build (and import the modules of) the eight others; ``modelport --help`` builds them all."""
    from ..console import version

    parser = Parser(prog="modelport", description=DESCRIPTION, epilog=EPILOG, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"modelport {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub, Formatter)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` starts with, if it starts with one (``--help``, ``--version`` or a misspelled
    command need the whole parser)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    from convert.errors import ModelportError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command(argv))
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


__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAIL", "EXIT_OK", "EXIT_UNSUPPORTED", "build_parser", "main"]
