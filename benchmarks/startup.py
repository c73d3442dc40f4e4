"""CLI start-up: `modelport --help` against `python -c pass`, and which heavy frameworks it imports (none)."""

from __future__ import annotations

import subprocess

from _measure import PY, ROOT, measure, ratio_line


def main() -> list[str]:
    base = measure([PY, "-c", "pass"], repeats=5)
    ours = measure([PY, "-m", "compat.cli", "--help"], repeats=5, cwd=ROOT)
    probe = subprocess.run([PY, "-c", "import sys\nfrom compat import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n"
                            "    pass\nprint(sorted(m for m in ('torch','tensorflow','keras','sklearn','skl2onnx','onnx',"
                            "'onnxruntime') if m in sys.modules))"], capture_output=True, text=True, cwd=ROOT)
    heavy = probe.stdout.strip().splitlines()[-1]
    return ["### CLI start-up", "", "| | modelport | baseline | ratio |", "|---|---:|---:|---:|",
            ratio_line("`modelport --help` vs `python -c pass`", ours.seconds, base.seconds, None),
            "", f"Heavy modules imported by `--help`: {heavy} (a difference of {ours.seconds - base.seconds:.2f} s "
            "is the CLI's own parsing and the small libraries it needs)."]


if __name__ == "__main__":
    print("\n".join(main()))
