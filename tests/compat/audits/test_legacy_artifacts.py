"""Files written by old scikit-learn releases (fixtures/legacy/, made by fixtures/make_legacy.py): the static
facts (format, the release that saved it, safety) and the audit's verdicts (load status and category,
drift, convert, check) must be what fixtures/legacy/MANIFEST.json expects, from the releases' documented
behaviour. A field the manifest lists under ``gaps`` is a known engine shortcoming: that one check is
xfail (strict), so fixing the engine makes it XPASS and fail until the gap is removed from the manifest
(and from make_legacy.py, which writes it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import convert
from convert import versions
from compat.audits import diagnose as audit_diagnose
from compat.audits import audit

ROOT = Path(__file__).resolve().parents[3]
LEGACY = ROOT / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "MANIFEST.json").read_text())
ARTIFACTS: dict = MANIFEST["artifacts"]
NOT_MODELS = {"MANIFEST.json", ".gitattributes"}

STATIC_FIELDS = ("format", "saved_with", "safety", "flagged")
STEP_FIELDS = tuple(f"{step}.{what}" for step in ("load", "convert", "check")
                    for what in ("status", "category", "reason_has"))


def _cases(fields):
    """(rel, field) for every field an artifact's expectations state, xfail where the manifest names a gap."""
    out = []
    for rel, entry in sorted(ARTIFACTS.items()):
        expect = entry["expect"]
        gaps = {g["field"]: g for g in entry.get("gaps", ())}
        for field in fields:
            step, _, what = field.partition(".")
            stated = what in expect.get(step, {}) if what else field in expect
            if not stated:
                continue
            marks = ()
            if field in gaps:
                g = gaps[field]
                marks = pytest.mark.xfail(strict=True, reason=f"engine gap ({g['where']}): says {g['now']!r}; "
                                                             f"{g['what']}")
            out.append(pytest.param(rel, field, id=f"{rel}::{field}", marks=marks))
    return out


@pytest.fixture(scope="module")
def report():
    return audit([str(LEGACY)], jobs=2)


@pytest.fixture(scope="module")
def rows(report):
    return {r.path: r for r in report.artifacts}


# ------------------------------------------------------------------------------------------- the files


def test_manifest_describes_every_file_byte_for_byte():
    on_disk = {p.relative_to(LEGACY).as_posix() for p in LEGACY.rglob("*") if p.is_file()} - NOT_MODELS
    assert on_disk == set(ARTIFACTS)
    for rel, entry in ARTIFACTS.items():
        data = (LEGACY / rel).read_bytes()
        assert len(data) == entry["size"], rel
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{rel} changed: regenerate with make_legacy.py"
        assert entry["written_by"]["sklearn"] == rel.split("/")[0].removeprefix("sklearn-")
    total = sum(p.stat().st_size for p in LEGACY.rglob("*") if p.is_file())
    assert total < 300_000, f"fixtures/legacy weighs {total:,} bytes"


def test_crlf_copies_are_still_damaged():
    """A checkout that converts line endings would silently repair (or further damage) the fixtures."""
    assert (LEGACY / ".gitattributes").read_text().split("\n")[1].strip() == "* -text"
    for rel in ARTIFACTS:
        data = (LEGACY / rel).read_bytes()
        if rel.endswith("_crlf.pkl"):
            assert data.count(b"\n") == data.count(b"\r\n") > 0, rel


# ------------------------------------------------------------------------------------------ static pass


@pytest.mark.parametrize("rel, field", _cases(STATIC_FIELDS))
def test_static_facts(rel, field):
    artifact = convert.inspect(LEGACY / rel)
    expect = ARTIFACTS[rel]["expect"][field]
    if field == "format":
        assert artifact.format == expect
    elif field == "saved_with":
        assert artifact.saved_with.get("sklearn") == expect, artifact.saved_with
    elif field == "safety":
        assert artifact.safety == expect, [f.what for f in artifact.findings]
    elif field == "flagged":
        assert [g.qualname for g in artifact.globals if g.verdict != "safe"] == expect


def test_benign_files_import_only_allowlisted_globals():
    """Every file that is neither damaged nor carrying a script's own class scans safe: the allowlist holds
    what 1.2.2 and 1.3.2 pickle (regenerated there by fixtures/make_allowlist.py)."""
    for rel, entry in ARTIFACTS.items():
        if entry["expect"]["safety"] == "safe":
            artifact = convert.inspect(LEGACY / rel)
            assert artifact.safety == "safe", (rel, [g.qualname for g in artifact.globals if g.verdict != "safe"])


# --------------------------------------------------------------------------------------------- audit


@pytest.mark.slow
def test_audit_sees_every_artifact(report, rows):
    assert set(rows) == set(ARTIFACTS)
    assert {s.path for s in report.skipped} == NOT_MODELS


@pytest.mark.slow
@pytest.mark.parametrize("rel, field", _cases(("drift",)))
def test_audit_drift(rows, rel, field):
    row, expect = rows[rel], ARTIFACTS[rel]["expect"]
    assert row.drift.get("sklearn") == expect["drift"], (row.saved_with, row.drift)
    if expect["drift"] is not None:
        assert row.installed.get("sklearn"), row.installed


def _check_step(outcome, field, expect):
    step, _, what = field.partition(".")
    want = expect[step][what]
    assert outcome is not None, f"no {step} outcome"
    if what == "status":
        assert outcome.status == want, (outcome.status, outcome.reason)
    elif what == "category":
        assert outcome.category == want, (outcome.category, outcome.reason)
    else:
        for words in want:
            assert words in outcome.reason, (words, outcome.reason)


@pytest.mark.slow
@pytest.mark.parametrize("rel, field", _cases(STEP_FIELDS))
def test_audit_steps(rows, rel, field):
    row = rows[rel]
    _check_step(row.outcome(field.split(".")[0]), field, ARTIFACTS[rel]["expect"])


@pytest.mark.slow
def test_failed_loads_have_a_category_and_an_actionable_reason(rows):
    for rel, row in rows.items():
        if row.load.status in ("failed", "refused"):
            assert row.load.category in ("version-drift", "missing-class", "corrupt", "unsafe"), (rel, row.load)
            assert "\n" not in row.load.reason and len(row.load.reason) < 400, (rel, row.load.reason)
        if row.load.category == "version-drift":
            saved = row.saved_with["sklearn"]
            assert f"pip install scikit-learn=={saved}" in row.load.reason, row.load.reason
            assert f"re-fit it with {row.installed['sklearn']}" in row.load.reason, row.load.reason


TRUSTED = sorted(rel for rel, entry in ARTIFACTS.items() if entry.get("expect_trusted"))


@pytest.mark.slow
@pytest.mark.parametrize("rel", TRUSTED)
def test_trusted_load_names_the_missing_class(tmp_path, rel):
    """With --trust the file is unpickled: the error names the class, and the category stays missing-class."""
    (tmp_path / "model.joblib").write_bytes((LEGACY / rel).read_bytes())
    row = audit([str(tmp_path)], jobs=1, trust=True).artifacts[0]
    for field in ("load.status", "load.category", "load.reason_has"):
        _check_step(row.load, field, ARTIFACTS[rel]["expect_trusted"])


# ----------------------------------------------------------------------------- the classifier itself


def _error(observed: str) -> BaseException:
    """An exception of the observed type (name: message) as the classifier would see it."""
    name, _, message = observed.partition(": ")
    cls = {"ValueError": ValueError, "AttributeError": AttributeError,
           "ModuleNotFoundError": ModuleNotFoundError}.get(name) or type(name, (Exception,), {})
    return cls(message)


FAILING_PLAIN_LOADS = sorted(rel for rel, e in ARTIFACTS.items() if not e["observed"]["load"].startswith("ok"))


@pytest.mark.parametrize("rel", FAILING_PLAIN_LOADS)
def test_classify_the_plain_load_error(rel):
    """The error a plain joblib.load raised (recorded in the manifest) falls in the expected category, with
    or without the static facts. Damaged files: the audit stops at the scan, the classifier must agree."""
    entry = ARTIFACTS[rel]
    want = (entry.get("expect_plain") or entry.get("expect_trusted") or entry["expect"])["load"]["category"]
    artifact = convert.inspect(LEGACY / rel)
    for facts in (artifact, None):
        status, category, reason = audit_diagnose.classify(_error(entry["observed"]["load"]), facts)
        assert (status, category) == ("failed", want), reason
    if want == "version-drift":
        assert f"saved with {entry['expect']['saved_with']}" in audit_diagnose.classify(
            _error(entry["observed"]["load"]), artifact)[2]


def test_direction_and_advice():
    d = versions.direction
    assert (d("1.2.2", "1.9.1"), d("1.10.0", "1.9.1"), d("1.9.1", "1.9.1")) == ("older", "newer", None)
    assert (d("before 0.18", "1.9.1"), d("<2", "2.4.6"), d(">=2", "1.26.4"), d(">=2", "2.4.6")) == \
        ("older", "older", "newer", None)
    assert "pip install scikit-learn==1.2.2" in audit_diagnose.advice("sklearn", "1.2.2", "1.9.1")
    assert audit_diagnose.advice("sklearn", "1.10.0", "1.9.1").startswith("upgrade scikit-learn to 1.10.0")


# ----------------------------------------------------------------- trees saved before scikit-learn 1.4


REFERENCE = sorted(rel for rel, e in ARTIFACTS.items() if e["expect"].get("onnx_matches_reference"))


@pytest.mark.parametrize("rel", REFERENCE)
def test_onnx_computes_what_the_old_release_computed(rel):
    """scikit-learn >= 1.4 computes wrong probabilities for a forest saved before 1.4 (its trees hold class
    counts); modelport's load normalizes them, so both its native model and the ONNX graph reproduce the
    probabilities the saving release computed."""
    import onnxruntime as ort

    from convert.adapters.base import Hints

    entry = ARTIFACTS[rel]
    rows = np.array(MANIFEST["reference_rows"], dtype=np.float32)
    want = np.array(entry["reference_outputs"]["probabilities"])
    loaded = convert.load(convert.inspect(LEGACY / rel), Hints())
    session = ort.InferenceSession(convert.to_onnx(loaded).model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: rows})
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    np.testing.assert_allclose(probabilities, want, atol=1e-5)
    np.testing.assert_allclose(loaded.model.predict_proba(rows.astype(np.float64)), want, atol=1e-6)
    assert any("normalized in memory" in note for note in loaded.notes), loaded.notes
    import joblib

    raw = joblib.load(LEGACY / rel).predict_proba(rows.astype(np.float64))  # scanned safe above
    assert not np.allclose(raw.sum(axis=1), 1.0), "scikit-learn normalizes old trees now: drop the repair"


@pytest.mark.parametrize("rel", sorted(ARTIFACTS))
def test_disagreement_names_the_old_tree_values(rel):
    """audit_diagnose.disagreement (the cause of a failed check, from the static facts) blames the tree
    values exactly for the artifacts whose check is expected to fail as version drift."""
    found = audit_diagnose.disagreement(convert.inspect(LEGACY / rel))
    check = ARTIFACTS[rel]["expect"].get("check", {})
    if rel in REFERENCE or check.get("status") == "fail" and check.get("category") == "version-drift":
        assert found is not None and found[0] == "version-drift"
        assert "1.3.2" in found[1] and "tree_.value" in found[1]
    elif ARTIFACTS[rel]["expect"].get("load", {}).get("status") == "ok":
        assert found is None, found
