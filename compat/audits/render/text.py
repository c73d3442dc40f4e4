"""The audit in a terminal: a table with one row per artifact, the summary, a progress bar while it runs."""

from __future__ import annotations

import sys

from ...text import clean, short
from ..report import STEPS, AuditReport
from .rows import display_path, headline, roots, summary_lines, tone, verdict, versions

_RICH = {"safe": "green", "suspicious": "yellow", "unsafe": "bold red", "unknown": "magenta",
         "good": "green", "warn": "yellow", "bad": "bold red", "muted": "dim"}


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
    several = len(roots(report)) > 1
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


class AuditProgress:
    """``audit(progress=...)``'s callback: a progress bar on stderr when it is a terminal, silent
    otherwise (CI logs stay clean). Use it as a context manager so the bar is removed at the end."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._task = None

    def __enter__(self) -> "AuditProgress":
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            from ...console import console

            self._bar = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[item]}", markup=False), console=console(stderr=True),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task("audit", total=None, item="")
        return self

    def __call__(self, done: int, total: int, item) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total,
                             item=short(clean(getattr(item, "path", "")), 60))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_bar(enabled: bool | None = None) -> AuditProgress:
    """A progress callback for ``audit``: ``with progress_bar() as p: audit(paths, progress=p)``."""
    return AuditProgress(enabled)
