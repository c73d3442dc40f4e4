"""``modelport audit``: every model file under one or more folders, in one pass: what it is, who wrote it,
whether loading it would run foreign code, and (unless ``--static``) whether it still loads, converts to
ONNX and computes the same. Importing this module is cheap: the audit and its renderers are imported by
the handler."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import common

DESCRIPTION = """\
Walk files and folders, find every model file (by its bytes, not its name) and report on each: format,
framework, the library versions that saved it and whether they differ from the installed ones, and a
safety verdict from a static scan that never runs the file's code. Unless --static, each file the scan
calls safe is then loaded, converted to ONNX and checked against the original, each file in a fresh
confined process of its own, with a timeout and a memory cap on all the processes it starts, so a crash or
a hang costs one row, not the audit, and nothing one file does can change another's row. --static runs no
file's code: it reads the bytes in modelport's own process (in processes forked from it when there are many
files and CPUs), each file under the same timeout, and a file that stalls or crashes the scan still costs
one row.

safety verdicts (from the static scan):
  safe        everything loading it would import is on modelport's allowlist for its framework
  suspicious  it imports something not on the allowlist (often a class of the project that saved it);
              loading it could run that code
  unsafe      loading it runs code that can do anything: os.system, eval, exec, subprocess, ...
  unknown     the scan could not read it to its end (corrupt, truncated, or a construct it does not
              follow); never called safe

steps (unless --static; only for files the scan calls safe, or every file with --trust):
  load      open it with its framework (ok; migrated: written by another scikit-learn release and brought
            forward, each change listed, checked against an evaluation from its fitted arrays; weights: a
            state dict that needs its model's code; refused; failed; crashed; timeout; out-of-memory)
  convert   convert the loaded model to ONNX in memory (nothing is written)
  check     run both on synthesized rows and compare every output

where the files are and where the work runs:
  PATH may be a URL fsspec reaches (s3://bucket/prefix, gs://, az://, http(s)://, file://): the static
  scan reads store objects in place with ranged reads (nothing is downloaded that the scan does not
  read); a file to load is first copied to a private temporary folder. Credentials come from where the
  store's library looks (its environment variables, config files, the machine's role); modelport never
  prints or stores them. --scheduler sends one task per file to a Dask cluster (tcp://HOST:PORT) or to N
  local Dask workers (local:N); each worker runs files in its own confined processes, as below. Results
  are cached (--cache): a re-run, or a run resumed after a crash, redoes only what changed.

confinement (each layer is tried; every report says which were in force on this machine):
  a fresh process per file, forked from a worker that never reads a file; a minimal environment (no
  credentials, tokens or agent sockets of yours); no network (a network namespace, seccomp, Landlock);
  every process a file starts counted and killed with it (a cgroup, a pid namespace); caps on its memory,
  processes and file sizes; writes only in its own temporary folder (Landlock); no new privileges and no
  capabilities. It limits what a file loaded with --trust can reach; it does not make an untrusted file
  safe to load.
"""

EPILOG = """\
exit codes:
  0  nothing unsafe or unknown (with --strict: also nothing suspicious, and no failed load/convert/check)
  1  an unsafe artifact, or an unknown one (the scan could not read it to its end: fail closed); with
     --strict also a suspicious one, or a failed load/convert/check
  2  bad input or usage: a path that does not exist, an output folder that does not exist, a bad option;
     with --strict also an audit that found no model file (a mistyped folder must not pass in CI)

examples:
  modelport audit models/                                  # table on stdout
  modelport audit models/ --static --sarif audit.sarif     # scan only, for a code-scanning dashboard
  modelport audit models/ more/model.pkl --jobs 4 --html audit.html --json audit.json
  modelport audit models/ --strict --junit audit.xml       # CI: fail on anything not proven fine
  modelport audit s3://models/prod --static --json audit.json          # a bucket, scanned in place
  modelport audit s3://models/prod --scheduler tcp://dask:8786 --json audit.json   # on a Dask cluster
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_parser(subparsers, formatter_class) -> argparse.ArgumentParser:
    p = subparsers.add_parser("audit", help="every model under a folder: safe? loads? converts? agrees?",
                              formatter_class=formatter_class, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or store URLs such as s3://bucket/prefix "
                   "(searched recursively; symlinks are not followed)")
    out = p.add_argument_group("reports (written atomically; the table goes to stdout in any case)")
    out.add_argument("--json", metavar="FILE", help="everything, as JSON (schema modelport.audit/1); while the "
                     "audit runs, each finished row is also appended to FILE's .jsonl sibling (audit.json -> "
                     "audit.jsonl), so an audit that is killed leaves its finished rows on disk")
    out.add_argument("--html", metavar="FILE", help="one self-contained page: charts, a sortable table, findings "
                     "per file (fetches nothing)")
    out.add_argument("--sarif", metavar="FILE", help="SARIF 2.1.0 for code-scanning dashboards (a result per "
                     "finding and per failed step)")
    out.add_argument("--junit", metavar="FILE", help="JUnit XML: a test case per file and aspect (safety, load, "
                     "convert, check)")
    how = p.add_argument_group("how")
    how.add_argument("--static", action="store_true", help="only the static scan: nothing is loaded, converted or "
                     "checked")
    how.add_argument("--trust", action="store_true", help="also load files the scan does not call safe: their code "
                     "runs, in the confined process of each file (only for files from people you trust)")
    how.add_argument("--jobs", type=_positive_int, metavar="N", help="worker processes (default: one per CPU)")
    how.add_argument("--timeout", type=_positive_float, metavar="S", help="seconds per file, all its steps "
                     "included (default: 300)")
    how.add_argument("--memory", type=_positive_int, metavar="MB", help="memory cap per file in MB, for all the "
                     "processes it starts together; also the largest file they may write (default: a share of the "
                     "available memory, between 1 and 8 GB)")
    how.add_argument("--scheduler", metavar="ADDRESS", help="run on Dask: tcp://HOST:PORT for a running cluster, "
                     "local:N to start N local workers (default: this machine's pool of --jobs processes)")
    how.add_argument("--cache", metavar="DIR", help="keep each result, keyed by the file's content hash (a store "
                     "object's ETag, size and date) and the versions that judged it, and reuse what is still valid "
                     "(default: modelport/ in the user's cache folder, e.g. ~/.cache/modelport)")
    how.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    how.add_argument("--strict", action="store_true", help="exit 1 also for suspicious files and for any failed "
                     "load, convert or check")
    how.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table: the summary lines only")
    how.add_argument("--all", action="store_true", dest="every_row",
                     help="list every artifact in the table (past 100, only those with something to report are)")
    p.set_defaults(func=run)
    return p


def _check_outputs(args) -> list[tuple[str, str]]:
    """(kind, path) for every report asked for; a missing folder is bad input before any work is done."""
    wanted = [(kind, getattr(args, kind)) for kind in ("json", "html", "sarif", "junit") if getattr(args, kind)]
    if not wanted:
        return wanted
    from convert.atomic import check_writable
    from convert.errors import BadInputError
    from convert.storage import is_url

    for kind, path in wanted:
        if is_url(path):
            raise BadInputError(f"--{kind} is written on this machine (rows are appended as they finish)",
                                path=path, hint="give a local path; copy the report to the store afterwards")
        target = Path(path)
        if target.is_dir():
            raise BadInputError(f"--{kind} names a directory, not a file", path=target)
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            raise BadInputError(f"the folder for --{kind} does not exist", path=folder, hint="create it first")
        check_writable(journal_path(path) if kind == "json" else target)
    return wanted


def _print_quiet(report) -> None:
    """The summary and the verdict line. Plain text where nobody watches (CI logs, pipes: the common case for
    --quiet, and rich costs a scan of one file more than the scan); the verdict in colour on a terminal."""
    from ..audits.render.rows import summary_lines, verdict

    code, last = verdict(report)
    sys.stdout.write("".join(f"{line}\n" for line in summary_lines(report)))
    if sys.stdout.isatty():
        from rich.text import Text

        from ..console import console

        console().print(Text(last, style="bold red" if code else "bold green"))
    else:
        sys.stdout.write(f"{last}\n")


def journal_path(json_path) -> Path:
    """Where the rows go as they finish: ``audit.json`` -> ``audit.jsonl``, ``report`` -> ``report.jsonl``."""
    p = Path(json_path)
    return p.with_suffix(".jsonl") if p.suffix == ".json" else p.with_name(p.name + ".jsonl")


def run(args) -> int:
    from ..audits import DEFAULT_TIMEOUT, audit
    from ..audits.render import write
    from ..audits.render.text import progress_bar

    wanted = _check_outputs(args)
    if args.scheduler:
        from ..scale.cluster import parse

        parse(args.scheduler)  # a malformed address is bad input before any work
    with progress_bar(enabled=False if args.quiet else None) as progress:
        report = audit(args.paths, static=args.static, trust=args.trust, jobs=args.jobs,
                       timeout=args.timeout or DEFAULT_TIMEOUT,
                       memory=args.memory << 20 if args.memory else None, strict=args.strict, progress=progress,
                       journal=journal_path(args.json) if args.json else None, scheduler=args.scheduler,
                       cache=common.cache_dir(args))
    if args.quiet:
        _print_quiet(report)
    else:
        from ..audits.render.text import render_text
        from ..console import console

        render_text(report, console(), every_row=args.every_row)
    for kind, path in wanted:
        written = write(report, kind, path)
        if not args.quiet:
            sys.stdout.write(f"wrote {written}\n")
    sys.stdout.flush()
    if report.found_nothing:
        sys.stderr.write(f"modelport: no model files under {', '.join(map(str, args.paths))} (check the path; "
                         "--strict fails an audit that finds no model file)\n")
    return report.exit_code
