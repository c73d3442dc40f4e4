"""Golden records: record then verify passes; a moved output fails naming it; a changed artifact fails;
a corrupt or newer-schema record is exit 2; records hold no pickle and have deterministic bytes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import compat
from convert.errors import BadInputError

ROOT = Path(__file__).resolve().parents[3]
SKLEARN = ROOT / "fixtures" / "sklearn"


@pytest.fixture()
def project(tmp_path):
    shutil.copy(SKLEARN / "diabetes_gbr.joblib", tmp_path / "gbr.joblib")
    shutil.copy(SKLEARN / "churn_columns_forest.joblib", tmp_path / "churn.joblib")
    return tmp_path


def rewrite_member(src: Path, dst: Path, prefix: str, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.startswith(prefix):
                data = change(info.filename, data)
            zout.writestr(info, data)


def test_record_then_verify_passes_and_holds_no_pickle(project):
    rec = compat.record(project / "churn.joblib", output=project / "churn.mprec")
    assert rec.onnx_bytes  # converted here, kept inside
    report = compat.verify(project / "churn.mprec")
    assert report.passed, report.to_dict()
    names = {c.name for c in report.comparisons}
    assert names == {"native now vs then", "onnx now vs then", "native vs onnx now", "reconverted vs native now"}
    with zipfile.ZipFile(project / "churn.mprec") as zf:
        members = zf.namelist()
        assert "manifest.json" in members and all(m.endswith((".npy", ".json", ".onnx")) for m in members)
        for m in members:
            if m.endswith(".npy"):
                np.load(io.BytesIO(zf.read(m)), allow_pickle=False)  # raises if an array needed pickle
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["schema"] == "modelport.record/1"
    assert manifest["native"]["path"] == "churn.joblib" and len(manifest["native"]["sha256"]) == 64
    assert {"scikit-learn", "skl2onnx", "onnxruntime", "numpy"} <= set(manifest["environment"])
    assert (project / "churn.mprec").stat().st_size < 200_000


def test_record_bytes_are_deterministic(project):
    compat.record(project / "gbr.joblib", output=project / "a.mprec")
    compat.record(project / "gbr.joblib", output=project / "b.mprec")
    assert (project / "a.mprec").read_bytes() == (project / "b.mprec").read_bytes()


def test_an_output_moved_beyond_tolerance_fails_naming_it(project):
    compat.record(project / "gbr.joblib", output=project / "gbr.mprec")

    def shift(name, data):
        arr = np.load(io.BytesIO(data)).copy()
        arr[7] += 1.0
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    rewrite_member(project / "gbr.mprec", project / "moved.mprec", "native/", shift)
    report = compat.verify(project / "moved.mprec")
    assert not report.passed and report.status == "outputs-moved"
    native = next(c for c in report.comparisons if c.name == "native now vs then")
    (pred,) = native.outputs
    assert pred.name == "prediction" and pred.mismatched == 1 and pred.worst["row"] == 7
    assert "prediction" in report.reason


def test_a_changed_artifact_fails(project):
    compat.record(project / "gbr.joblib", output=project / "gbr.mprec")
    shutil.copy(SKLEARN / "breast_cancer_logreg.joblib", project / "gbr.joblib")
    report = compat.verify(project / "gbr.mprec")
    assert not report.passed and report.status == "artifact-changed"
    assert "artifact changed since record" in report.reason


def test_corrupt_and_newer_records_are_bad_input(project):
    compat.record(project / "gbr.joblib", output=project / "gbr.mprec")
    (project / "junk.mprec").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(BadInputError, match="not a modelport record"):
        compat.verify(project / "junk.mprec")
    data = (project / "gbr.mprec").read_bytes()
    (project / "cut.mprec").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError):
        compat.verify(project / "cut.mprec")

    def newer(name, blob):
        manifest = json.loads(blob)
        manifest["schema"] = "modelport.record/99"
        return json.dumps(manifest).encode()

    rewrite_member(project / "gbr.mprec", project / "newer.mprec", "manifest.json", newer)
    with pytest.raises(BadInputError, match="newer modelport"):
        compat.verify(project / "newer.mprec")


def test_verify_cli_exit_codes_and_junit(project):
    compat.record(project / "gbr.joblib", output=project / "gbr.mprec")
    (project / "junk.mprec").write_text("nope")
    run = lambda *a: subprocess.run([sys.executable, "-m", "compat.cli", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, cwd=project)
    ok = run("verify", "gbr.mprec", "--junit", "v.xml", "--report", "v.json")
    assert ok.returncode == 0, ok.stderr
    import xml.etree.ElementTree as ET

    suite = ET.parse(project / "v.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 3 and suite.get("failures") == "0"
    assert json.loads((project / "v.json").read_text())["verdict"] == "pass"
    bad = run("verify", "junk.mprec")
    assert bad.returncode == 2 and "junk.mprec" in bad.stderr and "Traceback" not in bad.stderr
    shutil.copy(SKLEARN / "breast_cancer_logreg.joblib", project / "gbr.joblib")
    changed = run("verify", "gbr.mprec", "--junit", "c.xml")
    assert changed.returncode == 1 and "artifact changed since record" in changed.stdout
    assert ET.parse(project / "c.xml").getroot().find("testsuite").get("errors") == "1"


def test_record_with_a_given_onnx_file(project, tmp_path):
    result = compat.convert(project / "gbr.joblib", project / "gbr.onnx")
    assert result.passed
    rec = compat.record(project / "gbr.joblib", project / "gbr.onnx", output=project / "g.mprec", rows=50)
    assert rec.onnx_bytes is None and rec.manifest["onnx"]["path"] == "gbr.onnx"
    assert compat.verify(project / "g.mprec").passed
    (project / "gbr.onnx").write_bytes((project / "gbr.onnx").read_bytes() + b"\x00")
    assert compat.verify(project / "g.mprec").status == "artifact-changed"
