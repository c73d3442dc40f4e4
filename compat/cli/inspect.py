"""``modelport inspect``: what a model file is, who wrote it, whether loading it would run code (static),
and how an Artifact is shown in a terminal."""

from __future__ import annotations

import json

from convert.artifact import Artifact, will_migrate
from convert.versions import installed

from ..console import console
from ..text import size
from . import common

_STYLE = {"safe": "green", "suspicious": "yellow", "unsafe": "bold red", "unknown": "magenta"}
MAX_GLOBALS = 12


def _dims(shape) -> list[str]:
    """A spec's dims as text: an unknown leading dim is the batch, other unknown dims are ``?``."""
    return ["batch" if d is None and i == 0 else "?" if d is None else str(d) for i, d in enumerate(shape or [])]


def _render_signatures(signatures, console) -> None:
    """A SavedModel's signatures with their input and output specs (``--signature NAME`` picks one)."""
    from rich.markup import escape

    if not isinstance(signatures, dict) or not signatures:
        return

    def specs(group: dict) -> str:
        return ", ".join(f"{name} {spec.get('dtype', '?')}[{'x'.join(_dims(spec.get('shape')))}]"
                         for name, spec in group.items()) or "none"

    console.print("  signatures (pick one with --signature NAME)")
    for name, sig in signatures.items():
        default = "  [dim](default)[/]" if name == "serving_default" else ""
        console.print(f"    [bold]{escape(name)}[/]{default}")
        console.print(f"      inputs   {escape(specs(sig.get('inputs') or {}))}")
        console.print(f"      outputs  {escape(specs(sig.get('outputs') or {}))}")


def render_artifact(a: Artifact, console) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(str(a.path))}[/]")
    fmt = a.format + (f" ({a.compression}-compressed)" if a.compression else "")
    rows = [("format", fmt), ("framework", a.framework or "unknown")]
    for key, version in a.saved_with.items():
        now = installed(key)
        drift = ""
        if now and version and now != version:
            drift = f"  [yellow](installed: {now})[/]"
        elif now:
            drift = "  [dim](installed: same)[/]"
        rows.append((f"saved with {key}", f"{escape(str(version))}{drift}"))
    rows.append(("size", f"{size(a.size)}   sha256 {a.sha256[:16]}…"))
    for line in will_migrate(a):
        rows.append(("migration", escape(line)))
    style = _STYLE.get(a.safety, "white")
    flagged = [g for g in a.globals if g.verdict != "safe"]
    summary = f"{len(a.globals)} global(s), " + (f"{len(flagged)} not allowlisted" if flagged else "all allowlisted") \
        if a.globals else "no code references"
    rows.append(("safety", f"[{style}]{a.safety}[/] — {summary}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"  {key:<{width}}  {value}")
    shown = sorted(a.globals, key=lambda g: ({"unsafe": 0, "suspicious": 1}.get(g.verdict, 2), g.qualname))
    for g in shown[:MAX_GLOBALS]:
        gs = _STYLE.get(g.verdict, "white")
        console.print(f"    [{gs}]{g.verdict:<10}[/] {escape(g.qualname)}" + (f"  [dim]{escape(g.where)}[/]" if g.where else ""))
    if len(shown) > MAX_GLOBALS:
        console.print(f"    … {len(shown) - MAX_GLOBALS} more (--json lists all)")
    for f in a.findings:
        fs = _STYLE.get(f.severity, "dim")
        console.print(f"    [{fs}]{f.severity:<10}[/] {escape(f.what)}" + (f"  [dim]{escape(f.where)}[/]" if f.where else ""))
    _render_signatures(a.details.get("signatures"), console)
    details = {k: v for k, v in a.details.items() if isinstance(v, (str, int, float)) and k != "corrupt"}
    if a.details.get("corrupt"):
        console.print(f"  [magenta]corrupt[/]  {escape(str(a.details['corrupt']))}")
    if details:
        console.print("  [dim]" + escape(", ".join(f"{k}={v}" for k, v in list(details.items())[:8])) + "[/]")


def add_parser(sub, formatter):
    from convert.scan import RULE

    p = sub.add_parser("inspect", help="what a model file is, who wrote it, whether it is safe to load",
                       formatter_class=formatter, description=(
                           "Read a model file's bytes and say what it is: format, framework, the versions that "
                           "wrote it, and for pickles every global that unpickling would import, with a verdict "
                           "(safe / suspicious / unsafe / unknown). Never runs the file's code."),
                       epilog="examples:\n  modelport inspect model.joblib\n  modelport inspect models/*.pkl --json\n\n"
                              f"{RULE}\n\nexit codes: 0 no unsafe file, 1 an unsafe file, 2 bad input (a file that cannot be read "
                              "is reported with its error, the others as usual; the highest code wins)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="model file(s) or SavedModel directories")
    p.add_argument("--json", action="store_true", help="print JSON (schema modelport.inspect/1) instead of text")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Every path is reported: one that cannot be read gets its error (an ``error`` field in JSON, a line on
    stderr) and the exit code says so, but never hides the others."""
    import sys

    import convert
    from convert.errors import ModelportError

    results: list[Artifact | ModelportError] = []
    for path in args.paths:
        try:
            results.append(convert.inspect(path))
        except ModelportError as exc:
            results.append(exc)
            sys.stderr.write(f"modelport: {exc.line()}\n")
    if args.json:
        payload = [_json_entry(path, r) for path, r in zip(args.paths, results)]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
    else:
        out = console()
        for r in results:
            if isinstance(r, Artifact):
                render_artifact(r, out)
    worst = {"unsafe": common.EXIT_FAIL}
    return max((r.exit_code if isinstance(r, ModelportError) else worst.get(r.safety, common.EXIT_OK)
                for r in results), default=common.EXIT_OK)


def _json_entry(path, result) -> dict:
    if isinstance(result, Artifact):
        return dict(result.to_dict(), schema="modelport.inspect/1")
    return {"schema": "modelport.inspect/1", "path": str(path), "error": result.message, "hint": result.hint,
            "exit_code": result.exit_code}
