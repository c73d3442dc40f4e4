"""The commands on store URLs and on Dask, run the way users run them: ``inspect``, ``convert`` (to the
store), ``check`` and ``verify`` (records in a bucket that name their artifacts by relative paths, replayed
on a LocalCluster, reused from the cache the second time), and the readable failures: a scheduler nobody
runs, a malformed scheduler address, an http(s) output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_run import modelport
from s3_server import environment, s3_server, s3fs, upload

ROOT = Path(__file__).resolve().parents[2]
SKLEARN = ROOT / "fixtures" / "sklearn"


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env, environment(env):
        yield env


@pytest.fixture(scope="module")
def bucket(s3, tmp_path_factory):
    """models/logreg.joblib, and records/logreg.mprec naming it as ../models/logreg.joblib."""
    folder = tmp_path_factory.mktemp("ci")
    (folder / "models").mkdir()
    (folder / "records").mkdir()
    shutil.copy(SKLEARN / "breast_cancer_logreg.joblib", folder / "models/logreg.joblib")
    made = modelport("record", folder / "models/logreg.joblib", "-o", folder / "records/logreg.mprec", "--rows", "64")
    assert made.returncode == 0, made.stdout + made.stderr
    upload(folder, "s3://ci-bucket")
    return folder


def test_inspect_reads_a_store_object_in_place(bucket):
    result = modelport("inspect", "s3://ci-bucket/models/logreg.joblib", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    local = json.loads(modelport("inspect", bucket / "models/logreg.joblib", "--json").stdout)
    assert data["path"] == "s3://ci-bucket/models/logreg.joblib"
    for key in ("format", "framework", "safety", "saved_with", "globals"):
        assert data[key] == local[key], key
    assert data["details"]["object"]["bytes_read"] == local["size"]  # one small object: one read, whole
    missing = modelport("inspect", "s3://ci-bucket/models/nothing.joblib")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("modelport: s3://ci-bucket/models/nothing.joblib: no such object or prefix "
                                      "(check the URL)")


@pytest.mark.slow
def test_convert_writes_beside_the_store_object_and_check_reads_both_from_the_store(bucket):
    result = modelport("convert", "s3://ci-bucket/models/logreg.joblib", "--rows", "64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote s3://ci-bucket/models/logreg.onnx" in result.stdout
    assert "modelport-fetch" not in result.stdout  # the private copy is never what the user is shown
    assert s3fs().exists("ci-bucket/models/logreg.onnx")
    checked = modelport("check", "s3://ci-bucket/models/logreg.joblib", "s3://ci-bucket/models/logreg.onnx",
                        "--rows", "64")
    assert checked.returncode == 0 and "PASS" in checked.stdout, checked.stdout + checked.stderr
    refused = modelport("convert", "s3://ci-bucket/models/logreg.joblib", "-o", "https://example.invalid/m.onnx")
    assert refused.returncode == 2 and "cannot write to an http(s) URL" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_verify_replays_records_in_a_bucket_on_dask_and_reuses_them_from_the_cache(bucket, tmp_path):
    """A prefix of records, copied with the artifact each names by ``../models/...``, replayed on two local
    Dask workers; the second run reuses the result (same record, same artifact, same versions)."""
    cache = tmp_path / "cache"
    args = ("verify", "s3://ci-bucket/records/", "--scheduler", "local:2", "--cache", cache,
            "--report", tmp_path / "v.json")
    first = modelport(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["verdict"] == "pass" and [r["record"] for r in report["records"]] == [
        "s3://ci-bucket/records/logreg.mprec"]
    assert {c["name"] for c in report["records"][0]["comparisons"]} >= {"native now vs then", "onnx now vs then"}
    assert "result cache" not in first.stdout
    second = modelport(*args)
    assert second.returncode == 0 and "result cache: 1 reused" in second.stdout, second.stdout + second.stderr
    assert json.loads((tmp_path / "v.json").read_text())["records"] == report["records"]
    # the artifact changes in the bucket: the cached pass is not reused, and the replay says what changed
    s3fs().pipe("ci-bucket/models/logreg.joblib", (bucket / "models/logreg.joblib").read_bytes() + b"\0")
    third = modelport(*args)
    assert third.returncode == 1, third.stdout + third.stderr
    assert "artifact changed since record" in third.stdout and "result cache" not in third.stdout
    s3fs().put_file(str(bucket / "models/logreg.joblib"), "ci-bucket/models/logreg.joblib")


@pytest.mark.parametrize("scheduler, words", [
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ("yarn://cluster", "--scheduler takes tcp://HOST:PORT or local:N"),
    ("local:0", "needs at least one worker"),
])
def test_a_scheduler_that_cannot_be_used_is_one_readable_line(tmp_path, scheduler, words):
    shutil.copy(SKLEARN / "breast_cancer_logreg.joblib", tmp_path)
    result = modelport("audit", tmp_path, "--static", "--scheduler", scheduler, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
