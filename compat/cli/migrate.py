"""``modelport migrate``: an old model file rescued into a format that cannot run code, with its provenance."""

from __future__ import annotations

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("migrate", help="move a (legacy) model to a format that runs no code, with proof",
                       formatter_class=formatter, description=(
                           "Load a model file through the safety gate (a scikit-learn file written by another release "
                           "is migrated: old module paths, tree layouts and attributes brought forward, every change "
                           "listed), prove it still computes what the release that saved it computed (that release "
                           "rebuilt in a throwaway virtualenv where it installs here, else an independent "
                           "evaluation from the fitted arrays, else it says 'not verified'), and write it as ONNX "
                           "(checked as `convert` does), skops (scikit-learn: read back trusting only allowlisted "
                           "types and compared output for output) or safetensors (a torch module's weights plus its "
                           "class reference; loading a whole pickled module needs --trust). Beside the output, "
                           "OUT.provenance.json records the source's sha256 and versions, the changes, how it was "
                           "verified and the margins. The input is never overwritten; nothing is written when any "
                           "comparison disagrees."),
                       epilog="examples:\n  modelport migrate old/clf.pkl -o clf.onnx\n  modelport migrate old/clf.pkl "
                              "--to skops -o clf.skops\n  modelport migrate svc_pickle.p --state-key svc -o svc.onnx   "
                              "# one estimator of a dict\n  modelport migrate net.pt --trust --to safetensors -o "
                              "net.safetensors\n\nexit codes: 0 written, 1 a comparison disagrees (nothing written), "
                              "2 bad input, 3 unsupported")
    p.add_argument("path", metavar="FILE", help="the model file")
    p.add_argument("-o", "--output", metavar="OUT", help="where to write (default: beside FILE, with the "
                   "format's suffix)")
    p.add_argument("--to", choices=("onnx", "skops", "safetensors"), default="onnx",
                   help="the format to write (default: onnx)")
    p.add_argument("--rows", type=int, default=256, metavar="N", help="synthesized rows for the proofs (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthesized rows (default: 0)")
    p.add_argument("--no-original", action="store_true", help="do not build the saving release's environment; use "
                   "the independent evaluation from fitted arrays where there is one")
    p.add_argument("--json", metavar="FILE.json", help="also write the provenance (written or not) to this file")
    common.add_load_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rich.markup import escape

    from ..records.rescue import rescue

    if args.rows <= 0:
        from convert.errors import BadInputError

        raise BadInputError(f"--rows must be positive, got {args.rows}")
    out = console()
    result = rescue(args.path, args.output, args.to, hints=common.hints(args), rows=args.rows, seed=args.seed,
                    original=not args.no_original)
    out.print(f"loaded {escape(args.path)}: {escape(result.model)} ({result.loaded})")
    for change in result.migration:
        count = f" ×{change['count']}" if change["count"] > 1 else ""
        out.print(f"  - {change['text']}{count}", markup=False, soft_wrap=True)
    out.print(result.proof.line(), markup=False, soft_wrap=True)
    if result.onnx_check:
        check = result.onnx_check
        out.print(f"ONNX check: {check['verdict']} on {check['rows']} rows"
                  + (f" (remedy {check['remedy']})" if check.get("remedy") else ""), markup=False)
    if result.round_trip:
        out.print(f"round trip: {'agrees' if result.round_trip['agrees'] else 'DISAGREES'} "
                  f"({result.round_trip['what']})", markup=False, soft_wrap=True)
    common.write_json(_json(result), args.json)
    if not result.passed:
        out.print(f"[red]not written[/]: {escape(result.reason)}")
        return common.EXIT_FAIL
    out.print(f"wrote {escape(str(result.output))} and {escape(str(result.provenance))}")
    return common.EXIT_OK


def _json(result) -> str:
    import json

    return json.dumps(result.to_dict(), indent=2, default=str) + "\n"
