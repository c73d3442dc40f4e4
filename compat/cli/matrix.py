"""``modelport matrix``: replay a record in throwaway virtualenvs with other library versions."""

from __future__ import annotations

import json

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("matrix", help="replay a record under other library versions", formatter_class=formatter,
                       description=(
        "Run `modelport verify` on a record inside throwaway virtualenvs, one per --with (installed from the "
        "package index, cached between runs under $MODELPORT_CACHE or ~/.cache/modelport/envs), and report per "
        "environment: does the model load, does it still agree natively, does ONNX, and the first version "
        "that breaks. Several pins for one environment: separate them with commas. --model-class and --trust "
        "mean what they mean for verify, and are checked before any environment is built."),
        epilog="examples:\n  modelport matrix model.mprec --with scikit-learn==1.5.2 --with scikit-learn==1.7.2\n"
               "  modelport matrix model.mprec --with 'scikit-learn==1.6.1,numpy==1.26.4' --json matrix.json")
    p.add_argument("record", metavar="RECORD", help="a record (.mprec)")
    p.add_argument("--with", dest="withs", action="append", required=True, metavar="PINS",
                   help="pins for one environment, e.g. scikit-learn==1.5.2 (repeatable: one environment each)")
    p.add_argument("--trust", action="store_true", help="load artifacts the static scan does not vouch for, and "
                   "import the model class the record names")
    p.add_argument("--json", metavar="FILE.json", help="also write the results as JSON (schema modelport.matrix/1)")
    common.add_replay_class_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..records.matrix import matrix, render_text

    out = console()
    withs = [[pin for pin in item.split(",") if pin.strip()] for item in args.withs]
    out.print(f"preparing {len(withs)} environment(s); the first run installs from the package index...", markup=False)
    report = matrix(args.record, withs, trust=args.trust, model_class=args.model_class,
                    model_args=common.model_args(args.model_args))
    render_text(report, out)
    if args.json:
        common.write_json(json.dumps(report.to_dict(), indent=2) + "\n", args.json)
    return common.EXIT_OK if report.passed else common.EXIT_FAIL
