"""``modelport verify``: replay golden records in today's environment."""

from __future__ import annotations

import json

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("verify", help="replay golden records in today's environment", formatter_class=formatter,
                       description=(
        "Load each record's artifacts in today's environment and compare three ways: native now vs native then, "
        "ONNX now vs ONNX then, native now vs ONNX now (and, for graphs converted at record time, today's "
        "conversion, which must also need the same precision remedy). Names the library versions that differ "
        "from the record next to the outputs that moved. A record is data: the model class it names (torch "
        "state dicts) is imported only with --trust; otherwise give it with --model-class. "
        "Exit 1 when anything moved or an artifact or model source changed since the record; exit 2 for a "
        "corrupt record or a model class that is missing, not given, or not a model class."),
        epilog="examples:\n  modelport verify model.mprec\n  modelport verify models/*.mprec --junit verify.xml "
               "--report verify.json\n  modelport verify ci/net.mprec --model-class nets.py:Net")
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files (.mprec)")
    p.add_argument("--trust", action="store_true", help="load artifacts the static scan does not vouch for, and "
                   "import the model class the record names (only for records from people you trust)")
    p.add_argument("--no-reconvert", action="store_true", help="skip converting again with today's converter")
    p.add_argument("--report", metavar="FILE.json", help="write all results as JSON (schema modelport.verify/1)")
    p.add_argument("--junit", metavar="FILE.xml", help="write JUnit XML (a suite per record, a case per output)")
    common.add_replay_class_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..records.replay import junit_suites, render_text, verify

    out = console()
    model_args = common.model_args(args.model_args)
    reports = [verify(path, trust=args.trust, reconvert=not args.no_reconvert, model_class=args.model_class,
                      model_args=model_args) for path in args.records]
    for r in reports:
        render_text(r, out)
    if args.report:
        payload = {"schema": "modelport.verify/1", "verdict": "pass" if all(r.passed for r in reports) else "fail",
                   "records": [r.to_dict() for r in reports]}
        common.write_json(json.dumps(payload, indent=2, default=str) + "\n", args.report)
    common.write_junit(junit_suites(reports), args.junit)
    failed = sum(not r.passed for r in reports)
    if len(reports) > 1:
        out.print(f"{len(reports) - failed} of {len(reports)} record(s) pass")
    return common.EXIT_FAIL if failed else common.EXIT_OK
