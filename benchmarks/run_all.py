"""`make bench`: every benchmark, printed as Markdown and written to benchmarks/RESULTS.md.

Each figure is a ratio against a baseline measured in the same run on the same machine; no test asserts
a wall time. `--only NAME` runs one (startup, convert, torch, check, audit, scale)."""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

BENCHMARKS = {"startup": "startup", "convert": "convert_overhead", "torch": "torch_convert_overhead",
              "check": "check_overhead", "audit": "audit_static", "scale": "audit_scale"}


def main(argv=None) -> int:
    from _measure import machine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md as it is")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    lines = ["# Benchmark results", "",
             f"Measured {datetime.date.today().isoformat()} on {machine()}; `make bench` regenerates this file.", ""]
    for name in names:
        module_name = BENCHMARKS[name]
        if not (HERE / f"{module_name}.py").exists():
            continue
        print(f"running {name}...", file=sys.stderr, flush=True)
        section = importlib.import_module(module_name).main()
        print("\n".join(section), flush=True)
        lines += section + [""]
    if not args.no_write and not args.only:
        (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
        print(f"\nwritten to {HERE / 'RESULTS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
