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
               "--report verify.json\n  modelport verify ci/net.mprec --model-class nets.py:Net\n"
               "  modelport verify s3://ci/records/ --scheduler tcp://dask:8786 --junit verify.xml   # thousands, on Dask")
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files (.mprec), local or in a store "
                   "(s3://bucket/record.mprec, or a prefix: every .mprec under it); a record in a store is copied "
                   "with the files it names")
    p.add_argument("--trust", action="store_true", help="load artifacts the static scan does not vouch for, and "
                   "import the model class the record names (only for records from people you trust)")
    p.add_argument("--no-reconvert", action="store_true", help="skip converting again with today's converter")
    p.add_argument("--report", metavar="FILE.json", help="write all results as JSON (schema modelport.verify/1)")
    p.add_argument("--junit", metavar="FILE.xml", help="write JUnit XML (a suite per record, a case per output)")
    scale = p.add_argument_group("many records")
    scale.add_argument("--scheduler", metavar="ADDRESS", help="replay on Dask: tcp://HOST:PORT for a running "
                       "cluster, local:N to start N local workers (default: one after the other, here)")
    scale.add_argument("--cache", metavar="DIR", help="reuse the result of a record whose content, artifacts and "
                       "options are unchanged and whose judging library versions are the installed ones "
                       "(default: modelport/ in the user's cache folder, e.g. ~/.cache/modelport)")
    scale.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    common.add_replay_class_options(p)
    p.set_defaults(func=run)
    return p


def records(given: list[str]) -> list[str]:
    """The records named: a store prefix (a URL not ending in .mprec) stands for every .mprec under it."""
    from convert.storage import is_remote

    out = []
    for path in given:
        if is_remote(path) and not path.endswith(".mprec"):
            from ..audits.engine import walk_store

            out += [str(e.path) for e in walk_store(path) if str(e.path).endswith(".mprec")]
        else:
            out.append(path)
    return out


def run(args) -> int:
    from ..records.batch import verify_all
    from ..records.replay import junit_suites, render_text

    out = console()
    model_args = common.model_args(args.model_args)
    if args.scheduler:
        from ..scale.cluster import parse

        parse(args.scheduler)  # a malformed address is bad input before any work
    reports, stats = verify_all(records(args.records), trust=args.trust, reconvert=not args.no_reconvert,
                                model_class=args.model_class, model_args=model_args, scheduler=args.scheduler,
                                cache=common.cache_dir(args))
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
    if stats["cache"].get("hits"):
        out.print(f"result cache: {stats['cache']['hits']} reused ({stats['cache']['dir']})", markup=False,
                  highlight=False)
    return common.EXIT_FAIL if failed else common.EXIT_OK
