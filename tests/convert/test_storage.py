"""Model files in an object store, read by the static side in place: a real S3-compatible server on loopback
(moto's standalone server, the S3 HTTP API; nothing in the client is mocked), real artifacts made by their
libraries, the same verdicts as the local files, ranged reads that skip what a scan does not need, and
memory that does not grow with the object."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import convert
from convert import storage
from convert.errors import BadInputError
from s3_server import environment, s3_server, s3fs, upload

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env, environment(env):
        yield env


def _facts(a) -> tuple:
    return (a.format, a.framework, a.safety, dict(a.saved_with), sorted((f.severity, f.what) for f in a.findings),
            sorted((g.qualname, g.verdict) for g in a.globals))


@pytest.fixture(scope="module")
def bucket(s3, tmp_path_factory):
    """Every kind of file the static side reads, and payloads: uploaded as they are on disk."""
    folder = tmp_path_factory.mktemp("bucket")
    for rel in ("sklearn/diabetes_gbr.joblib", "sklearn/topics_tfidf_svm.pkl", "torch/mlp_state.pt",
                "torch/cnn_legacy.pt", "torch/cnn_script.pt", "torch/transformer.pt2", "tensorflow/two_inputs.keras",
                "tensorflow/two_inputs.h5", "legacy/sklearn-1.2.2/logreg_protocol0_crlf.pkl",
                "legacy/sklearn-1.2.2/scaler_logreg_truncated.joblib", "legacy/sklearn-1.2.2/main_class_pipeline.joblib"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / rel, folder / rel)
    shutil.copytree(FIXTURES / "tensorflow/scorer_module", folder / "tensorflow/scorer_module")
    (folder / "bad").mkdir()
    (folder / "bad/system.pkl").write_bytes(pickle.dumps(Call(os.system, "touch /tmp/never"), 2))
    (folder / "bad/eval.pkl").write_bytes(pickle.dumps(Call(eval, "1+1"), 4))
    (folder / "bad/cut.pkl").write_bytes(pickle.dumps({"w": list(range(50))}, 4)[:-7])
    import torch

    torch.save({"fc.weight": torch.ones(3, 2), "hook": Call(os.getcwd)}, folder / "bad/state_with_call.pt")
    upload(folder, "s3://static/files")
    return folder


def _artifacts(folder: Path) -> list[str]:
    out = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
           and "scorer_module" not in p.parts]
    return sorted(out) + ["tensorflow/scorer_module"]


def test_a_store_object_scans_like_the_local_file(bucket):
    """Format, framework, versions, verdict, findings and globals: the same whether the bytes come from disk or
    from the store through ranged reads; benign, payload, truncated and CRLF-damaged files alike."""
    compared = 0
    for rel in _artifacts(bucket):
        local = convert.inspect(bucket / rel)
        remote = convert.inspect(f"s3://static/files/{rel}")
        assert _facts(remote) == _facts(local), rel
        assert str(remote.path) == f"s3://static/files/{rel}"
        assert remote.details["object"]["etag"]
        compared += 1
    assert compared == 16
    verdicts = {rel: convert.inspect(f"s3://static/files/{rel}").safety for rel in
                ("bad/system.pkl", "bad/eval.pkl", "bad/cut.pkl", "sklearn/diabetes_gbr.joblib")}
    assert verdicts == {"bad/system.pkl": "unsafe", "bad/eval.pkl": "unsafe", "bad/cut.pkl": "unknown",
                        "sklearn/diabetes_gbr.joblib": "safe"}


@pytest.mark.slow
def test_ranged_reads_skip_tensor_data_and_memory_stays_flat(s3, tmp_path):
    """A 64 MB torch state dict, a 64 MB pickle holding an array and a 64 MB safetensors file: the scan reads
    what a loader would unpickle and seeks over the tensor bytes, so a few hundred KB cross the network, and
    the memory the scan allocates stays far below the object's size."""
    import torch
    from safetensors.numpy import save_file

    torch.save({f"layer{i}.weight": torch.ones(1024, 2048) for i in range(8)}, tmp_path / "big.pt")
    (tmp_path / "big.pkl").write_bytes(pickle.dumps({"weights": np.ones((8, 1024, 1024)), "labels": [0, 1]}, 4))
    save_file({f"w{i}": np.ones((1024, 2048), np.float32) for i in range(8)}, tmp_path / "big.safetensors")
    fs = s3fs()
    fs.mkdir("large")
    for name in ("big.pt", "big.pkl", "big.safetensors"):
        fs.put_file(str(tmp_path / name), f"large/{name}")
        size = (tmp_path / name).stat().st_size
        assert size > 60 << 20
        tracemalloc.start()
        try:
            remote = convert.inspect(f"s3://large/{name}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert _facts(remote) == _facts(convert.inspect(tmp_path / name)), name
        assert remote.safety == "safe"
        read = remote.details["object"]["bytes_read"]
        assert 0 < read < size // 20, (name, read, size)
        assert peak < 24 << 20, (name, peak)


def test_reads_are_ranged_and_shared_between_opens(s3, tmp_path):
    """Bytes past the ones a reader asked for are not fetched; a small object is fetched once however often
    detection and the scans open it."""
    fs = s3fs()
    fs.mkdir("ranges")
    data = bytes(range(256)) * (64 << 10)  # 16 MB
    fs.pipe("ranges/blob.bin", data)
    path = storage.RemotePath("s3://ranges/blob.bin")
    with path.open("rb") as fh:
        fh.seek(10 << 20)
        assert fh.read(100) == data[10 << 20:(10 << 20) + 100]
        fh.seek(-5, os.SEEK_END)
        assert fh.read() == data[-5:]
    assert path.fetched <= 2 * storage.MIN_BLOCK and path.requests == 2
    with path.open("rb") as fh:  # a sequential read to the end: every byte, blocks growing to MAX_BLOCK
        assert fh.read() == data
    assert path.requests < 2 + 14
    fs.pipe("ranges/small.pkl", pickle.dumps({"a": 1}))
    small = storage.RemotePath("s3://ranges/small.pkl")
    for _ in range(3):
        with small.open("rb") as fh:
            assert pickle.loads(fh.read()) == {"a": 1}  # the test's own bytes
    assert small.requests == 1


def test_local_copies_are_private_and_removed(bucket):
    with storage.local_copy("s3://static/files/sklearn/diabetes_gbr.joblib") as local:
        assert local.read_bytes() == (bucket / "sklearn/diabetes_gbr.joblib").read_bytes()
        assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700
        folder = local.parent
    assert not folder.exists()
    with storage.local_copy("s3://static/files/tensorflow/scorer_module") as local:
        assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == sorted(
            p.relative_to(bucket / "tensorflow/scorer_module").as_posix()
            for p in (bucket / "tensorflow/scorer_module").rglob("*") if p.is_file())
    with storage.local_copy(bucket / "sklearn/diabetes_gbr.joblib") as local:
        assert local == bucket / "sklearn/diabetes_gbr.joblib"  # a local path is used in place


def test_loading_needs_a_local_copy(bucket):
    with pytest.raises(BadInputError, match="loaded from a local copy"):
        convert.load("s3://static/files/sklearn/diabetes_gbr.joblib")


@pytest.mark.parametrize("url, words", [
    ("s3://static/files/no/such.pkl", "no such object or prefix"),
    ("s3://no-such-bucket-here/model.pkl", "no such object or prefix"),
    ("nosuchscheme://bucket/model.pkl", "cannot use this URL"),
])
def test_a_missing_object_or_unknown_scheme_is_one_readable_line(s3, url, words):
    with pytest.raises(BadInputError) as caught:
        convert.inspect(url)
    assert words in caught.value.line() and caught.value.exit_code == 2
    assert "\n" not in caught.value.line()


def test_redact_hides_credentials_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sEcReT-from-the-env")
    text = ("https://alice:hunter2-pass@host/m.pkl?X-Amz-Signature=abc123&sig=zzz&x=1 failed with "
            "sEcReT-from-the-env; bucket alice:hunter2-pass@b")
    out = storage.redact(text, "https://alice:hunter2-pass@host/m.pkl")
    for secret in ("hunter2-pass", "abc123", "zzz", "sEcReT-from-the-env"):
        assert secret not in out
    assert "https://***@host/m.pkl" in out and "x=1" in out


def test_urls_and_local_paths(tmp_path):
    assert storage.is_remote("s3://b/k") and storage.is_remote("gs://b/k") and storage.is_remote("az://c/k")
    assert not storage.is_remote("file:///tmp/x") and not storage.is_remote("models/x.pkl")
    assert storage.as_path(f"file://{tmp_path}/a b.pkl") == tmp_path / "a b.pkl"
    assert storage.with_suffix("s3://b/dir/model.joblib", ".onnx") == "s3://b/dir/model.onnx"
    assert storage.with_suffix(tmp_path / "m.pkl", ".onnx") == tmp_path / "m.onnx"
