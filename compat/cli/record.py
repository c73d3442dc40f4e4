"""``modelport record``: a golden record (inputs, both outputs, versions) for CI."""

from __future__ import annotations

from pathlib import Path

from ..console import console
from . import common


def add_parser(sub, formatter):
    p = sub.add_parser("record", help="capture a golden record for CI", formatter_class=formatter, description=(
        "Check the model as `check` does (its ONNX counterpart given, or converted here and kept inside the record; "
        "on --inputs plus 1000 synthesized rows): nothing is recorded if they disagree. Then run both on the rows "
        "to record (--rows) and store those inputs, both outputs, the tolerances, the sha256 of each artifact and "
        "of a --model-class file (stored relative to the record, so the record can move with its project) and "
        "the versions of every library involved. A record is a zip of JSON and .npy arrays (no pickle), with "
        "deterministic bytes: commit it next to the model."),
        epilog="examples:\n  modelport record model.joblib -o model.mprec\n  modelport record model.joblib "
               "model.onnx -o model.mprec --inputs golden.csv --rows 500\n  modelport record net.pt -o ci/net.mprec "
               "--model-class nets.py:Net --input batchx20")
    p.add_argument("native", metavar="NATIVE", help="the native model file")
    p.add_argument("onnx", metavar="MODEL.onnx", nargs="?", help="its ONNX model (default: convert it now)")
    p.add_argument("-o", "--output", metavar="RECORD", required=True, help="where to write the record (.mprec)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset when converting here")
    common.add_load_options(p)
    common.add_record_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..records.record import DEFAULT_RECORD_ROWS, build

    common.check_outputs(args.output)
    out = console()
    rows = DEFAULT_RECORD_ROWS if args.rows is None else args.rows
    record = build(args.native, args.onnx, args.output, inputs=args.inputs, rows=rows, seed=args.seed,
                   rtol=args.rtol, atol=args.atol, tolerances=common.tolerances(args), hints=common.hints(args), opset=args.opset)
    rows = record.manifest["inputs"][0]["shape"][0] if record.manifest["inputs"] else 0
    size = Path(args.output).stat().st_size
    kept = "ONNX graph kept inside" if record.onnx_bytes else f"ONNX: {record.manifest['onnx']['path']}"
    for note in record.notes:
        out.print(note, markup=False, soft_wrap=True)  # one line, whole, for CI logs
    out.print(f"wrote {args.output}: {rows} rows, outputs {', '.join(o['name'] for o in record.manifest['outputs']['native'])}"
              f"; {kept}; {size / 1024:.1f} KiB", markup=False)
    return common.EXIT_OK
