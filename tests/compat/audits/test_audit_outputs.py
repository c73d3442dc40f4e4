"""What an audit hands to people and tools: JSON, the terminal table, one HTML page, SARIF 2.1.0 and JUnit XML,
from real audits of a real folder (scikit-learn fixtures, an ONNX graph, a text file, a pickle whose payload
would run a shell command, hostile file names)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from compat.audits.render import html as html_view
from compat.audits.render import junit as junit_view
from compat.audits.render import sarif as sarif_view
from compat.audits.render import text as text_view
from compat.audits.render import write as render_write
from compat.audits.render.rows import display_path
from compat.audits import AuditReport, AuditRow, Outcome, audit
from tiny_models import tiny_onnx

ROOT = Path(__file__).resolve().parents[3]
SKLEARN = ROOT / "fixtures" / "sklearn"
SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"

HOSTILE = "sub/<script>alert(1)</script>.pkl"  # a directory "<script>alert(1)<" holding "script>.pkl"
HTML_GLOBAL = "<img src=x onerror=alert(2)>"  # the module a pickle imports: lands in a finding's text
CONTROL = "sub/red\x1b[31m\u202egnp.pkl"  # a terminal escape and a right-to-left override in a name


def reduce_payload(command: str) -> bytes:
    """Raw opcodes for ``os.system(command)`` on unpickling: GLOBAL, SHORT_BINUNICODE, TUPLE1, REDUCE."""
    arg = command.encode()
    return b"\x80\x04cos\nsystem\n\x8c" + bytes([len(arg)]) + arg + b"\x85R."


def build_tree(base: Path, canary: Path) -> Path:
    """A folder like a real model share: what each file is is known from how it was made."""
    root = base / "models"
    (root / "sub" / "<script>alert(1)<").mkdir(parents=True)
    for f in sorted(SKLEARN.glob("*.joblib")):
        shutil.copy(f, root / f.name)
    tiny_onnx(root / "tiny.onnx", "Relu", batch="batch", producer="hand", ir_version=8)
    (root / "notes.txt").write_text("a file of notes, not a model\n")
    (root / "evil.pkl").write_bytes(reduce_payload(f"touch {canary}"))
    (root / HOSTILE).write_bytes(b"\x80\x02c" + HTML_GLOBAL.encode() + b"\nThing\n)\x81.")
    (root / "sub" / "broken.pkl").write_bytes(b"\x80\x04\x95\xff\x00\x00")  # ends inside a frame header
    (root / CONTROL).write_bytes(b"\x80\x04}\x94\x8c\x01a\x94K\x01s.")  # {"a": 1}: no global at all
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit")
    canary = base / "CANARY"
    return build_tree(base, canary), canary


@pytest.fixture(scope="module")
def static_report(tree):
    return audit([tree[0]], static=True, jobs=2)


@pytest.fixture(scope="module")
def dynamic_report(tree):
    """One real run of every step, on part of the tree: two roots (the top folder's files and sub/)."""
    root = tree[0]
    return audit([root / "diabetes_gbr.joblib", root / "tiny.onnx", root / "evil.pkl", root / "sub"], jobs=2,
                 timeout=120)


def row(report: AuditReport, path: str) -> AuditRow:
    return next(r for r in report.artifacts if r.path == path)


# ------------------------------------------------------------------------------------------------ JSON


def test_json_has_a_row_per_artifact_and_the_counts(static_report):
    data = json.loads(static_report.to_json())
    assert data["schema"] == "modelport.audit/1"
    assert sorted(a["path"] for a in data["artifacts"]) == sorted(
        ["breast_cancer_logreg.joblib", "churn_columns_forest.joblib", "diabetes_gbr.joblib", "tiny.onnx",
         "evil.pkl", HOSTILE, "sub/broken.pkl", CONTROL])
    assert [s["path"] for s in data["skipped"]] == ["notes.txt"]
    s = data["summary"]
    assert s["safety"] == {"safe": 5, "suspicious": 1, "unsafe": 1, "unknown": 1}
    assert s["formats"] == {"pickle": 4, "joblib": 3, "onnx": 1}
    assert s["skipped_by_reason"] == {"not a model": 1} and s["exit_code"] == 1
    assert "load" not in s  # static: no step ran
    evil = next(a for a in data["artifacts"] if a["path"] == "evil.pkl")
    assert evil["safety"] == "unsafe" and any("system" in g for g in evil["flagged"])


def test_the_payload_is_live_and_the_audit_never_runs_it(tree, static_report, dynamic_report, tmp_path):
    root, canary = tree
    assert row(static_report, "evil.pkl").safety == "unsafe"
    assert row(dynamic_report, "evil.pkl").load.status == "refused"
    assert not canary.exists()
    # the same bytes, unpickled for real in a throwaway process, do run the command: the test can fail
    proof = tmp_path / "PROOF"
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=reduce_payload(f"touch {proof}"), check=True, timeout=60)
    assert proof.exists()


# ------------------------------------------------------------------------------------------- terminal


def _terminal(report: AuditReport, width: int) -> str:
    from rich.console import Console

    buf = io.StringIO()
    text_view.render_text(report, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


def test_table_names_every_file_and_sums_up(static_report):
    wide = _terminal(static_report, 200)
    for r in static_report.artifacts:
        assert display_path(r).split("/")[-1] in wide
    assert "imports posix.system" in wide or "imports os.system" in wide  # the reason column
    assert "8 artifact(s) · safety: 5 safe, 1 suspicious, 1 unsafe, 1 unknown" in wide
    assert "1 file(s) skipped (1 not a model)" in wide
    # fail closed: the file the scan could not read to its end fails the audit as the unsafe one does
    assert "exit 1: 1 unsafe and 1 unknown (not read to its end) artifact(s): evil.pkl, sub/broken.pkl" in wide
    narrow = _terminal(static_report, 80)  # the reasons move under the table
    assert "why" not in narrow.splitlines()[0] and "imports" in narrow


def test_control_characters_in_names_never_reach_the_terminal(static_report):
    out = _terminal(static_report, 200)
    assert "\x1b" not in out and "\u202e" not in out
    assert "red\\x1b[31m\\u202egnp.pkl" in out


def test_progress_is_silent_off_a_terminal(tree):
    calls = []
    with text_view.progress_bar(enabled=False) as bar:
        def progress(done, total, item):
            calls.append((done, total))
            bar(done, total, item)

        audit([tree[0] / "sub"], static=True, jobs=1, progress=progress)
    assert calls[-1] == (3, 3) and [d for d, _ in calls] == sorted(d for d, _ in calls)


# ----------------------------------------------------------------------------------------------- HTML


class _Page(HTMLParser):
    VOID = {"meta", "br", "input", "rect", "hr", "img", "link", "col", "wbr", "path", "circle", "line"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_script = tag == "script"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_html_is_one_self_contained_page(static_report):
    page = html_view.to_html(static_report)
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert not parsed.errors and not parsed.stack, parsed.errors[:5]
    assert "http://" not in page and "https://" not in page and "url(" not in page and "@import" not in page
    fetching = [(t, a) for t, a in parsed.tags
                if set(a) & {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}]
    assert fetching == []
    # the only script is the page's own, and the Content-Security-Policy lets exactly it run
    assert [t for t, _ in parsed.tags].count("script") == 1
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    digest = base64.b64encode(hashlib.sha256(parsed.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    # a row per artifact, each with its findings behind a <details>, and three charts
    table_rows = [a for t, a in parsed.tags if t == "tr" and "data-problem" in a]
    assert len(table_rows) == len(static_report.artifacts)
    assert [t for t, _ in parsed.tags].count("details") >= len(static_report.artifacts)
    assert [t for t, _ in parsed.tags].count("svg") == 3
    assert {a["data-type"] for t, a in parsed.tags if t == "th" and "data-type" in a} == {"text", "num"}
    # a static audit runs no file's code: nothing was confined, and the page has no confinement section
    assert static_report.confinement == {} and "Confinement (" not in page


def test_html_names_the_confinement_layers_of_a_full_run(dynamic_report):
    """Which confinement layers held for the files' processes: one line each, in force or not."""
    page = html_view.to_html(dynamic_report)
    held = sum(c["in_force"] for c in dynamic_report.confinement.values())
    assert dynamic_report.confinement
    assert f"Confinement ({held} of {len(dynamic_report.confinement)} layers in force)" in page
    assert all(f"<td>{layer}</td>" in page for layer in dynamic_report.confinement)


def test_html_escapes_what_comes_from_files(static_report):
    page = html_view.to_html(static_report)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.pkl" in page
    assert HTML_GLOBAL not in page and html_escaped(HTML_GLOBAL) in page
    assert "\x1b" not in page and "\u202e" not in page and "red\\x1b[31m\\u202egnp.pkl" in page
    parsed = _Page()
    parsed.feed(page)
    assert not [t for t, _ in parsed.tags if t == "img"]


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# ---------------------------------------------------------------------------------------------- SARIF


def _validate(doc: dict) -> None:
    import jsonschema

    validator = jsonschema.Draft4Validator(json.loads(SCHEMA.read_text()),
                                           format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]]


def test_sarif_validates_and_the_unsafe_file_is_an_error(tree, static_report):
    root = tree[0]
    doc = json.loads(sarif_view.to_sarif_json(static_report))
    _validate(doc)
    assert doc["version"] == "2.1.0" and doc["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    run, = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "modelport" and len({r["id"] for r in rules}) == len(rules)
    assert run["originalUriBaseIds"] == {"AUDITROOT": {"uri": root.resolve().as_uri() + "/"}}
    errors = [r for r in run["results"] if r["level"] == "error"]
    assert len(errors) == 1
    loc = errors[0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert (loc["uri"], loc["uriBaseId"]) == ("evil.pkl", "AUDITROOT")
    assert rules[errors[0]["ruleIndex"]]["id"] == errors[0]["ruleId"] == "MP001"
    assert "system" in errors[0]["message"]["text"]
    warned = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
              if r["level"] == "warning"}
    assert warned == {"sub/%3Cscript%3Ealert%281%29%3C/script%3E.pkl", "sub/broken.pkl"}
    # every artifact once, its URI decoding back to the file's bytes, its sha-256 that of the file
    assert len(run["artifacts"]) == len(static_report.artifacts)
    for art in run["artifacts"]:
        path = root / os.fsdecode(unquote_to_bytes(art["location"]["uri"]))
        assert path.is_file()
        assert art["hashes"]["sha-256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert art["length"] == path.stat().st_size


def test_sarif_of_a_full_run_validates(tree, dynamic_report):
    doc = sarif_view.to_sarif(dynamic_report)
    _validate(json.loads(json.dumps(doc)))
    run = doc["runs"][0]
    assert set(run["originalUriBaseIds"]) == {"AUDITROOT", "AUDITROOT2"}  # the folder, and sub/
    broken = [r for r in run["results"] if r["ruleId"] == "MP004" and r["level"] == "warning"]
    assert len(broken) == 1 and "corrupt" in broken[0]["message"]["text"]
    # a plain dict pickle is no model anything converts: a step that cannot be done is a note, not a warning
    unsupported = [r for r in run["results"] if " unsupported: " in r["message"]["text"]]
    assert unsupported and {(r["ruleId"], r["level"]) for r in unsupported} <= {("MP004", "note"), ("MP005", "note")}
    assert broken[0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "broken.pkl", "uriBaseId": "AUDITROOT2", "index": run["artifacts"].index(next(
            a for a in run["artifacts"] if a["location"]["uri"] == "broken.pkl"))}


# ---------------------------------------------------------------------------------------------- JUnit


def _cases(xml: bytes) -> dict:
    suites = ET.fromstring(xml)
    suite, = suites
    assert suite.get("name") == "modelport audit"
    out = {}
    for case in suite:
        kind = next((child.tag for child in case), "passed")
        out[(case.get("classname"), case.get("name"))] = kind
    assert int(suite.get("tests")) == len(out)
    assert int(suite.get("failures")) == sum(k == "failure" for k in out.values())
    return out


def test_junit_fails_the_unsafe_file(static_report):
    cases = _cases(junit_view.to_junit(static_report))
    assert len(cases) == len(static_report.artifacts)  # static: safety only
    assert cases[("evil.pkl", "safety")] == "failure"
    assert cases[(HOSTILE, "safety")] == "passed"  # suspicious fails only with --strict
    assert cases[("sub/broken.pkl", "safety")] == "failure"  # unknown: fail closed, as the exit code does
    assert sum(k == "failure" for k in cases.values()) == 2


def test_junit_with_strict_fails_suspicious_and_unknown(tree):
    strict = audit([tree[0]], static=True, jobs=2, strict=True)
    cases = _cases(junit_view.to_junit(strict))
    assert {k[0] for k, v in cases.items() if v == "failure"} == {"evil.pkl", HOSTILE, "sub/broken.pkl"}
    assert strict.exit_code == 1


def test_junit_of_a_full_run(dynamic_report):
    cases = _cases(junit_view.to_junit(dynamic_report))  # two roots: each path is named with its root's name
    assert [cases[("models/diabetes_gbr.joblib", s)] for s in ("safety", "load", "convert", "check")] == ["passed"] * 4
    assert cases[("models/tiny.onnx", "load")] == "passed" and cases[("models/tiny.onnx", "convert")] == "skipped"
    assert cases[("models/evil.pkl", "load")] == "skipped"  # refused: never loaded
    assert cases[("sub/broken.pkl", "load")] == "failure"


def test_crashes_and_timeouts_are_errors_everywhere():
    """Rows as the engine makes them when a worker dies or overruns (no framework is needed to build them)."""
    rows = [AuditRow("a.pt", "/m", "torch-zip", "torch", 10, "ab" * 32, safety="safe",
                     load=Outcome("crashed", "worker died (SIGSEGV)", "crash", 1.5),
                     convert=Outcome("skipped", "not loaded"), check=Outcome("skipped", "not loaded")),
            AuditRow("b.keras", "/m", "keras-v3", "keras", 10, "cd" * 32, safety="safe",
                     load=Outcome("ok", "Functional"), convert=Outcome("timeout", "over 300 s", "timeout", 300.0),
                     check=Outcome("skipped", "nothing converted")),
            AuditRow("c.joblib", "/m", "joblib", "sklearn", 10, "ef" * 32, safety="safe",
                     saved_with={"sklearn": "1.2.2"}, installed={"sklearn": "1.9.1"}, drift={"sklearn": "older"},
                     load=Outcome("ok", "SVC"), convert=Outcome("ok", "plain"),
                     check=Outcome("fail", "disagrees: label 3/1000 differ", "other"))]
    report = AuditReport(["/m"], rows, options={"static": False, "strict": True, "jobs": 1})
    cases = _cases(junit_view.to_junit(report))
    assert cases[("a.pt", "load")] == "error" and cases[("a.pt", "convert")] == "skipped"
    assert cases[("b.keras", "convert")] == "error" and cases[("c.joblib", "check")] == "failure"
    doc = sarif_view.to_sarif(report)
    _validate(doc)
    assert sorted(r["ruleId"] for r in doc["runs"][0]["results"]) == ["MP004", "MP005", "MP006", "MP007"]
    assert report.exit_code == 1
    text = _terminal(report, 200)
    assert "sklearn 1.2.2 (now 1.9.1)" in text and "load crashed: worker died (SIGSEGV)" in text


# ---------------------------------------------------------------------------------------------- files


def test_writers_are_atomic_and_complete(static_report, tmp_path):
    for kind, name in (("json", "a.json"), ("html", "a.html"), ("sarif", "a.sarif"), ("junit", "a.xml")):
        render_write(static_report, kind, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "a.json", "a.sarif", "a.xml"]  # no temp files
    assert json.loads((tmp_path / "a.json").read_text())["schema"] == "modelport.audit/1"
    assert json.loads((tmp_path / "a.sarif").read_text())["version"] == "2.1.0"
    ET.parse(tmp_path / "a.xml")
    assert (tmp_path / "a.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_compat_audit_is_the_function_whatever_was_imported_first():
    import compat
    import compat.audits  # noqa: F401 -- the engine module must not shadow the function

    assert compat.audit is audit and compat.AuditReport is AuditReport


def test_a_bucket_sized_table_lists_only_what_needs_a_look():
    """Past TABLE_LIMIT artifacts the terminal lists the rows with something to report; --all lists all."""
    from rich.console import Console

    fine = [AuditRow(f"ok/model_{i:04d}.joblib", "/b", "joblib", "sklearn", 10, "ab" * 32, safety="safe")
            for i in range(text_view.TABLE_LIMIT + 20)]
    bad = AuditRow("zz/evil.pkl", "/b", "pickle", None, 10, "cd" * 32, safety="unsafe",
                   findings=[{"what": "imports posix.system", "severity": "unsafe", "where": "stream 1"}])
    report = AuditReport(["/b"], fine + [bad], options={"static": True, "jobs": 1})
    text = _terminal(report, 160)
    assert "zz/evil.pkl" in text and "ok/model_0000.joblib" not in text
    assert f"{len(fine)} artifact(s) with nothing to report are not listed" in text
    buf = io.StringIO()
    text_view.render_text(report, Console(file=buf, width=160, color_system=None), every_row=True)
    assert "ok/model_0000.joblib" in buf.getvalue() and "not listed" not in buf.getvalue()
