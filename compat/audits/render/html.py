"""The audit as one self-contained HTML page: summary cards, inline SVG charts, a sortable and filterable
table, findings per file. It fetches nothing, and its Content-Security-Policy runs only its own script;
every text from a file is escaped."""

from __future__ import annotations

import base64
import hashlib
import html

from ...text import clean
from ...text import short as _short
from ...text import size as _size
from ..report import SAFETY, STEPS, AuditReport, AuditRow
from .rows import (
    SAFETY_RANK,
    TONE_RANK,
    confinement_line,
    count_text,
    display_path,
    headline,
    roots,
    tone,
    verdict,
    versions,
)


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
        facts.extend(_migration_facts(row.load))
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


def _migration_facts(load) -> list[tuple[str, str]]:
    """A migrated load: each change (with the release that made it) and the evidence it still computes the same."""
    details = load.details if load is not None else {}
    out = []
    changes = details.get("migration") or []
    if changes:
        out.append(("migration", "<ul>" + "".join(
            f"<li>{_e(c.get('what', ''))}" + (f' <span class="small">({_e(c["since"])})</span>' if c.get("since") else "")
            + (f' <span class="small">×{int(c["count"])}</span>' if c.get("count", 1) > 1 else "") + "</li>"
            for c in changes) + "</ul>"))
    proof = details.get("proof")
    if proof:
        tone_ = {"agrees": "good", "disagrees": "bad"}.get(proof.get("verdict"), "warn")
        out.append(("evidence", _badge(proof.get("verdict", "?"), "t-" + tone_) + " " + _e(proof.get("line", ""))))
    return out


def to_html(report: AuditReport) -> str:
    """One self-contained page: summary cards, bar charts (inline SVG), a sortable and filterable table
    with each artifact's findings behind a <details>, skipped files, options and environment. It fetches
    nothing (no CDN, fonts or images) and its Content-Security-Policy runs only its own script."""
    s = report.summary
    dynamic = not report.options.get("static")
    several = len(roots(report)) > 1
    code, line = verdict(report)
    where = ", ".join(clean(r) for r in report.roots)
    mode = "static scan only" if not dynamic else "scan, load, convert and check"
    meta = [where, mode, f"{report.seconds:.1f} s with {report.options.get('jobs', '?')} job(s)"]
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
           f"<title>modelport audit: {_e(where)}</title>", f"<style>{_CSS}</style></head><body>",
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
                   f"{_e(count_text(s['skipped_by_reason']))}</summary><table><thead><tr><th>path</th><th>reason</th>"
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
    from ..sandbox.confine import LAYERS

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
