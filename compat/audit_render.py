"""How an audit is shown: a terminal table with a summary, a progress bar while it runs, one self-contained
HTML page, SARIF 2.1.0 for code-scanning dashboards and JUnit XML for CI.

    from compat import audit_render
    audit_render.render_text(report, console)          # table + summary (rich)
    audit_render.write(report, "html", "audit.html")   # also "json", "sarif", "junit"; atomic

Every text shown here may come from an untrusted file: its name, the globals it imports, an error it
raised. The terminal gets it with control and bidirectional characters made visible (``clean``); HTML
gets it escaped, under a Content-Security-Policy that runs only the page's own script; SARIF gets URIs
percent-encoded from the file name's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import sys
from pathlib import Path
from urllib.parse import quote

from .audits import FAILED, SAFETY, STEPS, AuditReport, AuditRow
from .inspect_view import size_text as _size

SAFETY_RANK = {"unsafe": 0, "suspicious": 1, "unknown": 2, "safe": 3}  # worst first
_TONES = {"ok": "good", "pass": "good", "weights": "good", "not-needed": "good",
          "refused": "warn", "needs-input": "warn", "unsupported": "warn", "skipped": "muted"}
TONE_RANK = {"bad": 0, "warn": 1, "muted": 2, "good": 3}
_RICH = {"safe": "green", "suspicious": "yellow", "unsafe": "bold red", "unknown": "magenta",
         "good": "green", "warn": "yellow", "bad": "bold red", "muted": "dim"}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def tone(status: str | None) -> str:
    """``good`` | ``warn`` | ``bad`` | ``muted`` for a step status."""
    if status is None:
        return "muted"
    return "bad" if status in FAILED else _TONES.get(status, "muted")


def clean(text, keep_newlines: bool = False) -> str:
    """``text`` with what could deceive a reader made visible: control characters (a terminal escape in a
    file name), bidirectional overrides (a name that displays reversed) and bytes that are not UTF-8
    (kept by the file system as surrogates) become ``\\xNN`` / ``\\uNNNN``."""
    text = str(text)
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o < 0xA0 or ch in _BIDI or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _roots(report: AuditReport) -> list[str]:
    seen: list[str] = []
    for r in report.artifacts:
        if r.root not in seen:
            seen.append(r.root)
    return seen


def display_path(row: AuditRow, several_roots: bool = False) -> str:
    """The row's path relative to its root (prefixed with the root's name when the audit had several)."""
    return clean(f"{Path(row.root).name}/{row.path}" if several_roots else row.path)


def versions(row: AuditRow) -> list[tuple[str, str]]:
    """(``library version``, drift note) for what wrote the artifact; the note is empty when the installed
    release is the same (``now 1.9.1``, ``not installed``)."""
    sw = row.saved_with
    out = []
    for key in ("sklearn", "skops", "torch", "keras", "tensorflow"):
        if sw.get(key):
            out.append((f"{key} {sw[key]}", _drift_note(row, key)))
    if sw.get("producer"):
        out.append((str(sw["producer"]), ""))
    if sw.get("onnx_opset"):
        out.append((f"opset {sw['onnx_opset']}", _drift_note(row, "onnx_opset")))
    if not out and sw.get("torch_archive_version"):
        out.append((f"torch archive v{sw['torch_archive_version']}", ""))
    return [(clean(text), note) for text, note in out]


def _drift_note(row: AuditRow, key: str) -> str:
    d = row.drift.get(key)
    if d in ("older", "newer"):
        now = row.installed.get(key)
        return f"max {now} here" if key == "onnx_opset" and d == "newer" else f"now {now}"
    return "not installed" if d == "not installed" else ""


def _finding_text(f: dict) -> str:
    return clean(str(f.get("what", "")))


def headline(row: AuditRow) -> tuple[str, str]:
    """(tone or safety, text): the one thing to know about an artifact, worst first: an unsafe finding,
    a failed step, a suspicious/unknown finding, a step that could not be done, version drift; else
    how it went."""
    def first(severity: str):
        return next((f for f in row.findings if f.get("severity") == severity), None)

    if row.safety == "unsafe":
        f = first("unsafe") or (row.findings[0] if row.findings else None)
        return "unsafe", _finding_text(f) if f else "the static scan calls it unsafe"
    for step in STEPS:
        o = row.outcome(step)
        if o is not None and o.failed:
            return "bad", clean(f"{step} {o.status}: {o.reason}")
    if row.safety in ("suspicious", "unknown"):
        f = first(row.safety) or (row.findings[0] if row.findings else None)
        return row.safety, _finding_text(f) if f else f"the static scan calls it {row.safety}"
    for step in STEPS:
        o = row.outcome(step)
        if o is not None and tone(o.status) == "warn":
            return "warn", clean(f"{step} {o.status}: {o.reason}")
    if row.drifted:
        return "warn", clean("saved with " + ", ".join(row.drifted))
    check = row.outcome("check")
    if check is not None and check.status == "pass":
        return "good", clean(check.reason)
    return "good", ""


# ---------------------------------------------------------------------------------------------- terminal


def _count_text(counts: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"


def summary_lines(report: AuditReport) -> list[str]:
    """The summary as plain lines: counts by safety and step outcome, skipped files with their reasons."""
    s = report.summary
    lines = [f"{s['artifacts']} artifact(s) · safety: {_count_text(s['safety'])}"]
    steps = [f"{step}: {_count_text(s[step])}" for step in STEPS if step in s]
    lines.append(" · ".join(steps) if steps else "static scan only: nothing was loaded, converted or checked")
    tail = [f"{s['skipped']} file(s) skipped" + (f" ({_count_text(s['skipped_by_reason'])})" if s["skipped"] else "")]
    if s["drifted"]:
        tail.append(f"{s['drifted']} saved with another library release than the installed one")
    tail.append(f"{report.seconds:.1f} s with {report.options.get('jobs', '?')} job(s)")
    lines.append(" · ".join(tail))
    if report.confinement:
        lines.append(confinement_line(report.confinement))
    return lines


def confinement_line(confinement: dict) -> str:
    """One line: the confinement layers in force for every file's processes, and those that were not."""
    held = [layer for layer, c in confinement.items() if c.get("in_force")]
    lacking = [f"{layer} ({c['missing'][0]})" if c.get("missing") else layer
               for layer, c in confinement.items() if not c.get("in_force")]
    line = "confinement: " + (", ".join(held) or "none")
    return line + (f" · not in force: {'; '.join(lacking)}" if lacking else "")


def verdict(report: AuditReport) -> tuple[int, str]:
    """(exit code, one line saying why)."""
    failing = [r for r in report.artifacts if report.failing(r)]
    if not failing:
        extra = "" if report.strict else " (--strict also fails on suspicious files and failed steps)"
        return 0, f"exit 0: no unsafe or unknown artifact{extra}"
    unsafe = sum(r.safety == "unsafe" for r in failing)
    unknown = sum(r.safety == "unknown" for r in failing)
    parts = [f"{unsafe} unsafe"] if unsafe else []
    if unknown:
        parts.append(f"{unknown} unknown (not read to its end)")
    if len(failing) > unsafe + unknown:
        parts.append(f"{len(failing) - unsafe - unknown} suspicious or failed (--strict)")
    names = ", ".join(clean(r.path) for r in failing[:3]) + (", …" if len(failing) > 3 else "")
    return 1, f"exit 1: {' and '.join(parts)} artifact(s): {names}"


TABLE_LIMIT = 100  # above this many artifacts, the table lists only the ones with something to report


def render_text(report: AuditReport, console, every_row: bool = False) -> None:
    """Print the table (one row per artifact) and the summary on ``console`` (a rich Console). When the
    reasons would get less than 28 columns they move from the last column to a list under the table.
    Past TABLE_LIMIT artifacts (a bucket, not a folder) only rows with something to report are listed,
    unless ``every_row``: thousands of 'safe, ok' lines hide the few that matter."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    dynamic = not report.options.get("static")
    several = len(_roots(report)) > 1
    heads = ["path", "format", "saved with", "safety"] + (list(STEPS) if dynamic else [])
    rows, reasons = [], []
    listed = report.artifacts
    if not every_row and len(listed) > TABLE_LIMIT:
        listed = [row for row in listed if headline(row)[0] != "good"]
    for row in listed:
        saved = Text()
        for i, (text, note) in enumerate(versions(row)):
            saved.append((", " if i else "") + text)
            if note:
                saved.append(f" ({note})", style="yellow")
        cells = [Text(display_path(row, several)), Text(clean(row.format or "?")), saved,
                 Text(row.safety, style=_RICH.get(row.safety, ""))]
        if dynamic:
            for step in STEPS:
                o = row.outcome(step)
                cells.append(Text(o.status if o else "-", style=_RICH[tone(o.status if o else None)]))
        level, why = headline(row)
        reasons.append(Text(why, style="" if level == "good" else _RICH.get(level, "")))
        rows.append(cells)
    widths = [max([len(h)] + [c[i].cell_len for c in rows]) for i, h in enumerate(heads)]
    rest = console.width - sum(widths[1:]) - 2 * (len(heads) + 1)  # each column: a space of padding, a divider
    path_width = min(widths[0], max(16, rest // 2))
    why_width = rest - path_width
    inline = why_width >= 28
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    table.add_column("path", overflow="fold", width=path_width if inline else None)
    for head in heads[1:]:
        table.add_column(head, overflow="fold", no_wrap=head != "saved with")
    if inline:
        table.add_column("why", overflow="fold", width=why_width)
    for cells, why in zip(rows, reasons):
        table.add_row(*cells, *([why[:200]] if inline else []))
    if listed:
        console.print(table)
    elif not report.artifacts:
        console.print("no model files found", markup=False)
    if len(listed) < len(report.artifacts):
        console.print(f"{len(report.artifacts) - len(listed)} artifact(s) with nothing to report are not listed "
                      "(--all lists them; --json and --html list every one)", markup=False, highlight=False)
    if not inline and any(w.plain for w in reasons):
        grid = Table.grid(padding=(0, 2, 0, 0))
        grid.add_column(overflow="fold", max_width=max(16, console.width // 3), style="bold")
        grid.add_column(overflow="fold")
        for cells, why in zip(rows, reasons):
            if why.plain and why.style:
                grid.add_row(cells[0], why)
        console.print(grid)
    console.print()
    for line in summary_lines(report):
        console.print(line, markup=False, highlight=False)
    code, line = verdict(report)
    console.print(Text(line, style="bold red" if code else "bold green"))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AuditProgress:
    """``audit(progress=...)``'s callback: a progress bar on stderr when it is a terminal, silent
    otherwise (CI logs stay clean). Use it as a context manager so the bar is removed at the end."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._task = None

    def __enter__(self) -> "AuditProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from .cli import console

            self._bar = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[item]}", markup=False), console=console(stderr=True),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task("audit", total=None, item="")
        return self

    def __call__(self, done: int, total: int, item) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total,
                             item=_short(clean(getattr(item, "path", "")), 60))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_bar(enabled: bool | None = None) -> AuditProgress:
    """A progress callback for ``audit``: ``with progress_bar() as p: audit(paths, progress=p)``."""
    return AuditProgress(enabled)


# -------------------------------------------------------------------------------------------------- HTML


def _e(text) -> str:
    return html.escape(clean(text, keep_newlines=True), quote=True)




_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--head:#f6f8fa;--good:#1a7f37;--warn:#9a6700;
--bad:#cf222e;--unk:#8250df;--good-bg:#dafbe1;--warn-bg:#fff8c5;--bad-bg:#ffebe9;--unk-bg:#fbefff;--mut-bg:#eff2f5}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117;--head:#151b23;
--good:#3fb950;--warn:#d29922;--bad:#f85149;--unk:#ab7df8;--good-bg:#12261e;--warn-bg:#272115;--bad-bg:#25171c;
--unk-bg:#211a32;--mut-bg:#212830}}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
code,.path,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.meta{color:var(--muted);margin:0 0 12px}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:6px 0 16px}
.verdict.bad{background:var(--bad-bg);color:var(--bad)}.verdict.good{background:var(--good-bg);color:var(--good)}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:18px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
.card.bad b{color:var(--bad)}.card.warn b{color:var(--warn)}.card.unk b{color:var(--unk)}.card.good b{color:var(--good)}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
figcaption{font-weight:600;margin-bottom:6px}
svg text{font:12px system-ui,sans-serif;fill:var(--fg)}svg .n{fill:var(--muted)}
.f-safe,.f-good{fill:var(--good)}.f-suspicious,.f-warn{fill:var(--warn)}.f-unsafe,.f-bad{fill:var(--bad)}
.f-unknown{fill:var(--unk)}.f-muted{fill:var(--muted)}.f-plain{fill:#4c7dbf}.f-track{fill:var(--mut-bg)}
.tools{display:flex;gap:14px;align-items:center;margin:8px 0}
.tools input[type=search]{width:340px;max-width:100%;padding:6px 10px;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg);font:inherit}
#shown{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
thead th{position:sticky;top:0;background:var(--head);cursor:pointer;user-select:none;white-space:nowrap}
thead th::after{content:" \\2195";color:var(--muted);font-size:11px}
thead th[aria-sort=ascending]::after{content:" \\2191";color:var(--fg)}
thead th[aria-sort=descending]::after{content:" \\2193";color:var(--fg)}
tbody tr:hover{background:var(--head)}
td.num{text-align:right;white-space:nowrap}
.path{word-break:break-all;min-width:160px;max-width:320px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.s-safe,.t-good{background:var(--good-bg);color:var(--good)}.s-suspicious,.t-warn{background:var(--warn-bg);color:var(--warn)}
.s-unsafe,.t-bad{background:var(--bad-bg);color:var(--bad)}.s-unknown{background:var(--unk-bg);color:var(--unk)}
.t-muted,.s-info{background:var(--mut-bg);color:var(--muted)}
.drift{color:var(--warn);font-size:12px}.small{font-size:12px;color:var(--muted)}
td.details{min-width:340px;max-width:640px}
details>summary{cursor:pointer}
td.details summary{overflow-wrap:anywhere}
.more{margin:6px 0 2px 4px;font-size:13px}
.more ul{margin:4px 0;padding-left:18px}.more li{margin:2px 0;overflow-wrap:anywhere}
.more dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0}
.more dt{color:var(--muted)}.more dd{margin:0;overflow-wrap:anywhere}
.where{color:var(--muted);font-size:12px}
footer{margin-top:28px;color:var(--muted)}
footer dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}footer dd{margin:0}
"""

_JS = """
(function () {
  var table = document.getElementById("artifacts");
  if (!table) { return; }
  var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.tabIndex = 0;
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending", num = th.dataset.type === "num";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      function key(row) {
        var cell = row.cells[i], v = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
        return num ? parseFloat(v) : v.toLowerCase();
      }
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
  var box = document.getElementById("filter"), only = document.getElementById("problems"), shown = document.getElementById("shown");
  function apply() {
    var q = box.value.trim().toLowerCase(), n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var show = (!q || r.textContent.toLowerCase().indexOf(q) >= 0) && (!only.checked || r.dataset.problem === "1");
      r.hidden = !show;
      if (show) { n++; }
    });
    shown.textContent = n + " of " + body.rows.length + " shown";
  }
  box.addEventListener("input", apply);
  only.addEventListener("change", apply);
  apply();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# nothing may be fetched, and only the page's own style and script run (an injected <script> would not)
_CSP = (f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; img-src data:; "
        "base-uri 'none'; form-action 'none'")


def _bars(items: list[tuple[str, int, str]], width: int = 330) -> str:
    """Horizontal bars as inline SVG: (label, count, css class) per bar."""
    if not items:
        return '<p class="small">none</p>'
    label_w, row_h, top = 118, 22, 4
    span = width - label_w - 44
    most = max(n for _, n, _ in items) or 1
    height = top + row_h * len(items)
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, n, cls) in enumerate(items):
        y = top + i * row_h
        w = max(2.0, span * n / most) if n else 0
        shown = label if len(label) <= 17 else label[:16] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{_e(shown)}'
                   f'<title>{_e(label)}</title></text>'
                   f'<rect class="f-track" x="{label_w}" y="{y + 2}" width="{span}" height="14" rx="3"/>'
                   f'<rect class="{cls}" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="14" rx="3">'
                   f'<title>{_e(label)}: {n}</title></rect>'
                   f'<text class="n" x="{label_w + w + 6:.1f}" y="{y + 13}">{n}</text>')
    out.append("</svg>")
    return "".join(out)


def _stacked(summary: dict, width: int = 330) -> str:
    """One stacked bar per step (load, convert, check), a segment per status, with the counts below."""
    label_w, bar_h, line_h = 64, 16, 15
    span = width - label_w - 8
    per_line = max(1, (width - label_w) // 7)  # characters of legend per line at 12px
    blocks, height = [], 0
    for step in STEPS:
        counts = summary.get(step, {})
        ordered = sorted(counts.items(), key=lambda kv: (TONE_RANK[tone(kv[0])], -kv[1]))
        lines: list[str] = []
        for status, n in ordered:
            item = f"{n} {status}"
            if lines and len(lines[-1]) + len(item) + 2 <= per_line:
                lines[-1] += f", {item}"
            else:
                lines.append(item)
        blocks.append((step, counts, ordered, lines or ["none"]))
        height += bar_h + line_h * len(lines or ["none"]) + 12
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    y = 2
    for step, counts, ordered, lines in blocks:
        total = sum(counts.values()) or 1
        out.append(f'<text x="0" y="{y + 12}">{_e(step)}</text>')
        x = float(label_w)
        for status, n in ordered:
            w = span * n / total
            out.append(f'<rect class="f-{tone(status)}" x="{x:.1f}" y="{y}" width="{max(w - 1, 1):.1f}" '
                       f'height="{bar_h}" rx="2"><title>{_e(step)} {_e(status)}: {n}</title></rect>')
            x += w
        for i, line in enumerate(lines):
            out.append(f'<text class="n" x="{label_w}" y="{y + bar_h + 13 + i * line_h}">{_e(line)}</text>')
        y += bar_h + line_h * len(lines) + 12
    out.append("</svg>")
    return "".join(out)


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {cls}">{_e(text)}</span>'


def _row_html(row: AuditRow, dynamic: bool, several: bool, failing: bool) -> str:
    level, why = headline(row)
    problem = failing or row.safety != "safe" or row.failed or level in ("warn", "bad")
    path = display_path(row, several)
    cells = [f'<td class="path" data-sort="{_e(path.lower())}">{_e(path)}</td>',
             f'<td>{_e(row.format or "?")}<br><span class="small">{_e(row.framework or "")}</span></td>']
    saved = "<br>".join(_e(text) + (f' <span class="drift">({_e(note)})</span>' if note else "")
                        for text, note in versions(row))
    cells.append(f"<td>{saved or '<span class=small>-</span>'}</td>")
    cells.append(f'<td data-sort="{SAFETY_RANK.get(row.safety, 9)}">{_badge(row.safety, "s-" + row.safety)}</td>')
    if dynamic:
        for step in STEPS:
            o = row.outcome(step)
            t = tone(o.status if o else None)
            cells.append(f'<td data-sort="{TONE_RANK[t]}">{_badge(o.status if o else "-", "t-" + t)}</td>')
    cells.append(f'<td class="num" data-sort="{row.size}">{_size(row.size)}</td>')
    cells.append(f'<td class="num" data-sort="{row.seconds:.3f}">{row.seconds:.2f} s</td>')
    cells.append(f'<td class="details">{_details(row, level, why, dynamic)}</td>')
    return f'<tr data-problem="{int(problem)}">' + "".join(cells) + "</tr>"


def _details(row: AuditRow, level: str, why: str, dynamic: bool) -> str:
    cls = {"unsafe": "s-unsafe", "suspicious": "s-suspicious", "unknown": "s-unknown", "bad": "t-bad",
           "warn": "t-warn"}.get(level)
    head = (_badge(level if level in SAFETY else {"bad": "failed", "warn": "note"}[level], cls) + " " if cls else "")
    head += _e(_short(why, 150)) if why else '<span class="small">details</span>'
    parts = []
    if row.findings:
        parts.append("<ul>" + "".join(
            f'<li>{_badge(f.get("severity", "?"), "s-" + str(f.get("severity", "info")))} {_e(f.get("what", ""))}'
            + (f' <span class="where">at {_e(f["where"])}</span>' if f.get("where") else "") + "</li>"
            for f in row.findings) + "</ul>")
    facts: list[tuple[str, str]] = []
    if row.flagged:
        facts.append(("not allowlisted", ", ".join(f"<code>{_e(g)}</code>" for g in row.flagged)))
    if dynamic:
        previous = None
        for step in STEPS:
            o = row.outcome(step)
            if o is None or (o.status == "skipped" and previous is not None and o.reason == previous.reason):
                continue  # "not loaded" once is enough
            previous = o
            text = _badge(o.status, "t-" + tone(o.status)) + " " + _e(o.reason)
            if o.category:
                text += f' <span class="small">({_e(o.category)})</span>'
            if o.seconds:
                text += f' <span class="small">{o.seconds:.2f} s</span>'
            facts.append((step, text))
    for key, saved in row.saved_with.items():
        now = row.installed.get(key)
        drift = row.drift.get(key)
        note = f' <span class="drift">(installed {_e(now)}: {_e(drift)})</span>' if drift not in (None, "same") else ""
        facts.append((f"saved with {_e(key)}", _e(saved) + note))
    if row.sha256:
        facts.append(("sha256", f'<span class="mono">{_e(row.sha256)}</span>'))
    facts.append(("size", f"{row.size:,} bytes"))
    if row.peak_rss_mb is not None:
        facts.append(("peak memory", f"{row.peak_rss_mb:.0f} MB"))
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    return f'<details><summary>{head}</summary><div class="more">{"".join(parts)}</div></details>'


def to_html(report: AuditReport) -> str:
    """One self-contained page: summary cards, bar charts (inline SVG), a sortable and filterable table
    with each artifact's findings behind a <details>, skipped files, options and environment. It fetches
    nothing (no CDN, fonts or images) and its Content-Security-Policy runs only its own script."""
    s = report.summary
    dynamic = not report.options.get("static")
    several = len(_roots(report)) > 1
    code, line = verdict(report)
    roots = ", ".join(clean(r) for r in report.roots)
    mode = "static scan only" if not dynamic else "scan, load, convert and check"
    meta = [roots, mode, f"{report.seconds:.1f} s with {report.options.get('jobs', '?')} job(s)"]
    if report.options.get("trust"):
        meta.append("--trust: files the scan does not call safe were loaded too")
    if report.strict:
        meta.append("--strict")
    meta.append(f"modelport {report.environment.get('modelport', '?')}")

    failed_steps = sum(r.failed for r in report.artifacts)
    cards = [("artifacts", s["artifacts"], ""), ("unsafe", s["safety"]["unsafe"], "bad"),
             ("suspicious", s["safety"]["suspicious"], "warn"), ("unknown", s["safety"]["unknown"], "unk"),
             ("safe", s["safety"]["safe"], "good")]
    if dynamic:
        cards.append(("with a failed step", failed_steps, "bad" if failed_steps else ""))
    cards += [("version drift", s["drifted"], "warn" if s["drifted"] else ""), ("skipped files", s["skipped"], "")]

    charts = [("Formats", _bars([(k, n, "f-plain") for k, n in s["formats"].items()])),
              ("Safety", _bars([(k, s["safety"][k], f"f-{k}") for k in ("unsafe", "suspicious", "unknown", "safe")]))]
    if dynamic:
        charts.append(("Steps", _stacked(s)))
    else:
        charts.append(("Frameworks", _bars([(k, n, "f-plain") for k, n in s["frameworks"].items()])))

    heads = [("path", "text"), ("format", "text"), ("saved with", "text"), ("safety", "num")]
    if dynamic:
        heads += [(step, "num") for step in STEPS]
    heads += [("size", "num"), ("time", "num"), ("what to know", "text")]
    rows = "\n".join(_row_html(r, dynamic, several, report.failing(r)) for r in report.artifacts)

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>modelport audit: {_e(roots)}</title>", f"<style>{_CSS}</style></head><body>",
           "<header><h1>modelport audit</h1>", f'<p class="meta">{" · ".join(_e(m) for m in meta)}</p>',
           f'<p class="verdict {"bad" if code else "good"}">{_e(line)}</p></header>',
           '<section class="cards">' + "".join(
               f'<div class="card {cls}"><b>{n}</b><span>{_e(label)}</span></div>' for label, n, cls in cards)
           + "</section>",
           '<section class="charts">' + "".join(
               f"<figure><figcaption>{_e(title)}</figcaption>{svg}</figure>" for title, svg in charts) + "</section>",
           f"<h2>Artifacts ({len(report.artifacts)})</h2>",
           '<div class="tools"><input type="search" id="filter" placeholder="filter: path, format, finding, global…" '
           'aria-label="filter the table"><label><input type="checkbox" id="problems"> only rows with something to '
           'look at</label><span id="shown"></span></div>',
           '<table id="artifacts"><thead><tr>' + "".join(
               f'<th data-type="{kind}" scope="col">{_e(name)}</th>' for name, kind in heads)
           + f"</tr></thead><tbody>\n{rows}\n</tbody></table>"]
    if report.skipped:
        items = "".join(f'<tr><td class="path">{_e(sk.path)}</td><td>{_e(sk.reason)}</td></tr>'
                        for sk in report.skipped)
        out.append(f"<h2>Skipped files ({len(report.skipped)})</h2><details><summary>"
                   f"{_e(_count_text(s['skipped_by_reason']))}</summary><table><thead><tr><th>path</th><th>reason</th>"
                   f"</tr></thead><tbody>{items}</tbody></table></details>")
    if report.confinement:
        out.append(_confinement_html(report.confinement))
    env = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in
                  list(report.options.items()) + list(report.environment.items()))
    out.append(f"<footer><details><summary>Options and environment</summary><dl>{env}</dl></details>"
               f"<p>schema {_e(report.schema)}; the JSON report (--json) holds everything shown here.</p></footer>")
    out.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(out)


def _confinement_html(confinement: dict) -> str:
    """Which confinement layers held for the files' processes: each with how, or why not."""
    from .confine import LAYERS

    held = sum(bool(c.get("in_force")) for c in confinement.values())
    items = []
    for layer, c in confinement.items():
        state = "in force" if c.get("in_force") else "not in force"
        how = "; ".join(c.get("by") or []) or "; ".join(c.get("missing") or []) or "-"
        badge = _badge(state, "t-good" if c.get("in_force") else "t-bad")
        items.append(f"<tr><td>{_e(layer)}</td><td>{badge}</td><td>{_e(LAYERS.get(layer, ''))}</td>"
                     f"<td>{_e(how)}</td></tr>")
    return (f"<h2>Confinement ({held} of {len(confinement)} layers in force)</h2><details><summary>"
            f"{_e(confinement_line(confinement))}</summary><table><thead><tr><th>layer</th><th>state</th>"
            f"<th>what it stops</th><th>how</th></tr></thead><tbody>{''.join(items)}</tbody></table></details>")


# ------------------------------------------------------------------------------------------------- SARIF

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
ROOT_ID = "AUDITROOT"

# id, name, default level, short description, full description, help; ids are stable: never renumber
RULES = (
    ("MP001", "code-execution", "error", "Loading this artifact runs code",
     "The static scan found something loading would execute: a pickle global such as os.system, eval, exec or "
     "subprocess, or Python bytecode in a Keras Lambda layer. Whoever wrote the file chooses what runs.",
     "Do not load it. Ask for the model in a format that holds no code (ONNX, safetensors, skops), or "
     "re-export it from its source in a trusted environment."),
    ("MP002", "suspicious-content", "warning", "The scan cannot vouch for something in this artifact",
     "The artifact imports a global that is not on modelport's allowlist for its framework (often a class "
     "of the project that saved it), or carries a construct that could run code.",
     "Check the flagged names. If they are your own classes, load with --trust only in a process you "
     "would run that code in; otherwise treat the file as unsafe."),
    ("MP003", "unscannable", "warning", "The scan could not read this artifact to its end",
     "The file is corrupt or truncated, or uses a construct the scanner does not follow, so its safety is "
     "unknown (the verdict is fail-closed: never safe).",
     "Get an intact copy (compare its sha256 with the source) before loading it."),
    ("MP004", "load-failed", "warning", "The artifact does not load",
     "Loading it with its framework failed, crashed, ran out of time or memory in an isolated worker.",
     "Read the reason and category: version-drift means the installed release cannot read what an older or "
     "newer one wrote; missing-class means the code that defined the model is needed."),
    ("MP005", "convert-failed", "warning", "The artifact does not convert to ONNX",
     "The model loads, but the conversion to ONNX failed or no converter covers it.",
     "Run modelport convert on it for the full message and the remedies tried."),
    ("MP006", "check-failed", "warning", "The ONNX conversion computes something else",
     "The converted model disagrees with the original on synthesized inputs, or the comparison could not run.",
     "Run modelport check on it with your own rows (--inputs) to see which outputs differ and by how much."),
    ("MP007", "version-drift", "note", "Saved with another release than the one installed",
     "The artifact records a library version that differs from the installed one; it may load differently or "
     "not at all.",
     "Pin the release it was saved with, or re-save it with the installed one and record a golden record."),
    ("MP008", "scan-note", "note", "Something the scan noticed",
     "An informational finding of the static scan (for instance weights missing from a SavedModel).",
     "Nothing to do unless it is unexpected."),
)
_RULE_INDEX = {r[0]: i for i, r in enumerate(RULES)}
_BY_SEVERITY = {"unsafe": "MP001", "suspicious": "MP002", "unknown": "MP003", "info": "MP008"}
_BY_STEP = {"load": "MP004", "convert": "MP005", "check": "MP006"}
_SECURITY = {"MP001": "9.0", "MP002": "5.0", "MP003": "4.0"}  # GitHub code scanning's severity scale


def _uri(path: str) -> str:
    """A relative URI reference for a relative path, percent-encoded from its bytes."""
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")


def _root_uri(root: str) -> str:
    uri = Path(root).resolve().as_uri()
    return uri if uri.endswith("/") else uri + "/"


def to_sarif(report: AuditReport) -> dict:
    """SARIF 2.1.0: one run; a result per finding (MP001-MP003, MP008), per step that failed or could not be
    done (MP004-MP006) and per version drift (MP007). Locations are relative to ``AUDITROOT`` (the audited
    folder, as a file URI in ``originalUriBaseIds``); a second root is ``AUDITROOT2`` and so on."""
    from .cli import _version

    version = report.environment.get("modelport") or _version()
    base_ids = {root: ROOT_ID if i == 0 else f"{ROOT_ID}{i + 1}" for i, root in enumerate(_roots(report))}
    rules = [{"id": rid, "name": name, "shortDescription": {"text": short}, "fullDescription": {"text": full},
              "help": {"text": help_text}, "defaultConfiguration": {"level": level},
              "properties": {"tags": ["security", "ml-model"] if rid in _SECURITY else ["ml-model"],
                             **({"security-severity": _SECURITY[rid]} if rid in _SECURITY else {})}}
             for rid, name, level, short, full, help_text in RULES]
    artifacts, results = [], []
    for index, row in enumerate(report.artifacts):
        location = {"uri": _uri(row.path), "uriBaseId": base_ids[row.root]}
        artifact = {"location": location, "length": row.size, "roles": ["analysisTarget"],
                    "properties": {"format": row.format, "framework": row.framework, "safety": row.safety}}
        if row.sha256:
            artifact["hashes"] = {"sha-256": row.sha256}
        artifacts.append(artifact)

        def result(rule: str, level: str, text: str, where: str = "", props: dict | None = None) -> None:
            loc: dict = {"physicalLocation": {"artifactLocation": dict(location, index=index)}}
            if where:
                loc["logicalLocations"] = [{"name": clean(where), "kind": "element"}]
            message = clean(text + (f" (at {where})" if where else ""))
            key = hashlib.sha256(f"{rule}\0{row.root}\0{row.path}\0{text}\0{where}".encode("utf-8", "surrogateescape"))
            item = {"ruleId": rule, "ruleIndex": _RULE_INDEX[rule], "level": level, "message": {"text": message},
                    "locations": [loc], "partialFingerprints": {"modelportResult/v1": key.hexdigest()[:32]}}
            if props:
                item["properties"] = props
            results.append(item)

        for f in row.findings:
            severity = f.get("severity", "unknown")
            rule = _BY_SEVERITY.get(severity, "MP003")
            level = {"unsafe": "error", "info": "note"}.get(severity, "warning")
            result(rule, level, str(f.get("what", "")), str(f.get("where") or ""),
                   {"safety": row.safety, "severity": severity})
        for step in STEPS:
            o = row.outcome(step)
            if o is None or not (o.failed or o.status in ("unsupported", "needs-input")):
                continue
            props = {"status": o.status, **({"category": o.category} if o.category else {})}
            result(_BY_STEP[step], "warning" if o.failed else "note", f"{step} {o.status}: {o.reason}", props=props)
        for key, d in row.drift.items():
            if d in ("older", "newer", "not installed"):
                now = row.installed.get(key)
                text = (f"saved with {key} {row.saved_with.get(key)}, " +
                        (f"installed {now} ({d})" if now else "not installed here"))
                result("MP007", "note", text, props={"library": key, "drift": d})
    run = {
        "tool": {"driver": {"name": "modelport", "version": version, "semanticVersion": version, "rules": rules}},
        "invocations": [{"executionSuccessful": True, "exitCode": report.exit_code,
                         "properties": {"options": report.options}}],
        "originalUriBaseIds": {bid: {"uri": _root_uri(root)} for root, bid in base_ids.items()},
        "artifacts": artifacts,
        "results": results,
        "properties": {"schema": report.schema, "summary": report.summary,
                       "skipped": [{"path": clean(sk.path), "reason": clean(sk.reason)} for sk in report.skipped],
                       "environment": report.environment, "confinement": report.confinement},
    }
    if not base_ids:  # nothing found: still say where we looked
        run["originalUriBaseIds"] = {ROOT_ID: {"uri": _root_uri(report.roots[0])}} if report.roots else {}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


# ------------------------------------------------------------------------------------------ JUnit, files


def to_junit(report: AuditReport) -> bytes:
    """JUnit XML: one suite "modelport audit", a case per artifact and aspect (see ``junit.from_audit``)."""
    from .junit import from_audit, to_xml

    return to_xml(from_audit(report))


def to_sarif_json(report: AuditReport) -> str:
    return json.dumps(to_sarif(report), indent=2, default=str) + "\n"


WRITERS = {"json": lambda r: r.to_json(), "html": to_html, "sarif": to_sarif_json, "junit": to_junit}


def write(report: AuditReport, kind: str, path) -> Path:
    """Write ``report`` as ``kind`` (json | html | sarif | junit) to ``path``, atomically."""
    from convert.onnxfile import write_atomic

    return write_atomic(Path(path), WRITERS[kind](report))
