"""Issue 16's "done when", for real: a loopback S3 server (moto's standalone server: the S3 HTTP API), real
Dask schedulers and workers (a LocalCluster, and ``dask scheduler`` + ``dask worker`` in subprocesses), a
bucket of artifacts made by their libraries: benign, malicious, corrupt, one that hangs and one that
crashes its process. Each audit gives the verdicts the local audit of the same files gives, one row each;
a client killed mid-run and run again finishes every artifact exactly once, most from the cache; workers
killed under a task cost a retry, and an artifact whose task two workers died under is reported, not retried
forever; the store's secret key never appears in anything modelport writes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from compat.audits import audit
from process_watch import marked
from s3_server import SECRET, environment, free_port, s3_server, s3fs, upload

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures"
TIMEOUT = 6.0  # the hanging artifact's allowance
MEMORY = 640 << 20


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def make_mixed(folder: Path, canary: Path) -> Path:
    """Benign models, a payload, a corrupt file, a hang, a crash and a text file: made by the libraries."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "sklearn/breast_cancer_logreg.joblib", folder / "benign.joblib")
    (folder / "config.pkl").write_bytes(pickle.dumps({"threshold": 0.5, "labels": ["no", "yes"]}, 4))
    save_file({"dense.weight": np.ones((4, 3), np.float32)}, folder / "weights.safetensors")
    (folder / "evil.pkl").write_bytes(pickle.dumps(Call(os.system, f"touch {canary}"), 2))
    (folder / "corrupt.pkl").write_bytes(pickle.dumps({"w": list(range(100))}, 4)[:-9])
    (folder / "hang.pkl").write_bytes(pickle.dumps(Call(time.sleep, 1000), 4))
    (folder / "crash.pkl").write_bytes(pickle.dumps(Call(os.abort), 4))
    (folder / "notes.txt").write_text("models for the scoring service\n")
    return folder


def verdicts(report, root: str | None = None) -> dict:
    """rel -> what the audit concluded (safety, format, each step's status), or the skip reason."""
    out = {}
    for row in report.artifacts:
        if root is None or row.root == root:
            out[row.path] = (row.safety, row.format, *(row.outcome(s).status if row.outcome(s) else None
                                                       for s in ("load", "convert", "check")))
    for s in report.skipped:
        if root is None or s.root == root:
            out[s.path] = ("skipped", s.reason)
    return out


def one_row_each(report) -> bool:
    keys = [(r.root, r.path) for r in report.artifacts] + [(s.root, s.path) for s in report.skipped]
    return len(keys) == len(set(keys))


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env, environment(env):
        yield env


@pytest.fixture(scope="module")
def mixed(s3, tmp_path_factory):
    """(local folder, its copy in the bucket, the canary the payload would create, the local audit)."""
    base = tmp_path_factory.mktemp("mixed")
    canary = base / "CANARY"
    folder = make_mixed(base / "models", canary)
    upload(folder, "s3://registry/mixed")
    local = audit([folder], trust=True, jobs=2, timeout=TIMEOUT, memory=MEMORY)
    expected = verdicts(local)
    # the local audit is the reference: check it says what each file is
    assert expected["benign.joblib"] == ("safe", "joblib", "ok", "ok", "pass")
    assert expected["evil.pkl"][0] == "unsafe" and expected["corrupt.pkl"][0] == "unknown"
    assert expected["hang.pkl"][2] == "timeout" and expected["crash.pkl"][2] == "crashed"
    assert expected["notes.txt"][0] == "skipped" and len(expected) == 8
    return folder, "s3://registry/mixed", canary, expected


def test_a_bucket_audited_on_the_local_pool_gives_the_local_verdicts(mixed):
    folder, url, _, expected = mixed
    report = audit([url], trust=True, jobs=2, timeout=TIMEOUT, memory=MEMORY)
    assert verdicts(report) == expected
    assert one_row_each(report) and {r.root for r in report.artifacts} == {url}
    assert report.workers["lost"] == 2  # the hang and the crash: their processes, not the audit's
    assert report.confinement["network"]["in_force"]  # the loads ran confined, as local files do


@pytest.mark.slow
def test_a_local_dask_cluster_audits_bucket_and_folder_like_the_local_pool(mixed):
    folder, url, _, expected = mixed
    report = audit([url, folder], trust=True, timeout=TIMEOUT, memory=MEMORY, scheduler="local:2")
    assert verdicts(report, url) == expected
    assert verdicts(report, str(folder)) == expected
    assert one_row_each(report) and len(report.artifacts) + len(report.skipped) == 16
    assert report.workers["dask_workers"] == 2
    assert report.workers["lost"] == 4  # a hang and a crash per root: each its own process, in a worker's pool
    assert report.confinement["network"]["in_force"] and report.confinement["fresh-process"]["in_force"]
    assert report.options["scheduler"] == "local:2"


class DaskProcesses:
    """``dask scheduler`` and one ``dask worker`` process running ``n`` nanny-supervised workers, each in a
    session of its own; ``stop()`` kills every process of theirs."""

    def __init__(self, n: int, env: dict, tmp: Path):
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        environ = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp), **env)  # what killed workers leave
        self.procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                        "--port", str(port), "--no-dashboard"], env=environ, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                                            "--nworkers", str(n), "--nthreads", "1", "--no-dashboard",
                                            "--memory-limit", "0"], env=environ, start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        self.client = Client(self.address, timeout=60, set_as_default=False)
        self.client.wait_for_workers(n, timeout=120)

    def stop(self) -> None:
        self.client.close()
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def dask_processes(s3, tmp_path_factory):
    cluster = DaskProcesses(2, s3, tmp_path_factory.mktemp("dask-tmp"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_tcp_scheduler_in_a_subprocess_audits_the_bucket_like_the_local_pool(mixed, dask_processes):
    _, url, _, expected = mixed
    report = audit([url], trust=True, timeout=TIMEOUT, memory=MEMORY, scheduler=dask_processes.address)
    assert verdicts(report) == expected and one_row_each(report)
    assert report.workers["dask_workers"] == 2 and report.workers["lost"] == 2
    workers = dask_processes.client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()  # the work ran in the cluster's processes


def test_without_trust_nothing_from_the_bucket_runs(mixed):
    """Static, then every step without trust: the payloads are refused by the static verdict before any
    unpickling, so the canary never appears; the hang and the crash are refused, not run."""
    _, url, canary, expected = mixed
    static = audit([url], static=True, jobs=2, timeout=TIMEOUT, memory=MEMORY)
    assert {k: v[0] for k, v in verdicts(static).items()} == {k: v[0] for k, v in expected.items()}
    assert static.workers.get("scanned_in_process") == 8  # every object streamed here, no confined process
    full = audit([url], jobs=2, timeout=TIMEOUT, memory=MEMORY)
    rows = verdicts(full)
    for rel in ("evil.pkl", "hang.pkl", "crash.pkl"):
        assert rows[rel][0] == "unsafe" and rows[rel][2] == "refused", rel
    assert rows["benign.joblib"] == ("safe", "joblib", "ok", "ok", "pass")
    assert not canary.exists()


def _run_cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "compat.cli", *map(str, args)],
                            env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120", **env), **kw)


@pytest.mark.slow
def test_a_killed_client_runs_again_with_every_artifact_once_most_from_the_cache(mixed, tmp_path):
    """SIGKILL ``modelport audit --scheduler local:2`` once most rows are in its journal; no Dask worker of
    it is left; the same command again finishes with every artifact exactly once, the finished ones reused
    from the cache, and agrees with the local audit."""
    _, url, _, expected = mixed
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    marker = f"mpwatch-kill-{os.getpid()}-{time.monotonic_ns()}"
    args = ["audit", url, "--trust", "--timeout", TIMEOUT, "--memory", MEMORY >> 20, "--scheduler", "local:2",
            "--cache", cache, "--json", out / "audit.json", "--quiet"]
    journal = out / "audit.jsonl"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _run_cli(args, {"MODELPORT_TEST_MARKER": marker, "TMPDIR": str(tmp)}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        finished = []
        while time.monotonic() < deadline and proc.poll() is None:
            lines = journal.read_text().splitlines() if journal.exists() else []
            finished = [json.loads(line) for line in lines[1:] if line.endswith("}")]
            keepable = {(f.get("artifact") or f.get("skipped") or {}).get("path") for f in finished} - {"crash.pkl", None}
            if len(keepable) >= len(expected) // 2 + 1:  # most rows done, not counting one the cache never keeps
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert len(keepable) >= len(expected) // 2 + 1 and marked(marker)  # the client and its Dask workers, running
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and marked(marker):
        time.sleep(0.2)
    assert marked(marker) == []  # the killed client's workers went with it
    assert not (out / "audit.json").exists() and not any("summary" in f for f in finished)
    done_before = {(f.get("artifact") or f.get("skipped"))["path"] for f in finished}
    again = _run_cli(args, {"TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = again.communicate(timeout=300)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("modelport-fetch-")] == []  # the run swept the
    # copies the killed one left, and removed its own
    assert again.returncode == 1, stdout + stderr  # unsafe and unknown artifacts
    data = json.loads((out / "audit.json").read_text())
    paths = [a["path"] for a in data["artifacts"]] + [s["path"] for s in data["skipped"]]
    assert sorted(paths) == sorted(expected)  # every artifact, exactly once
    cached = done_before - {"crash.pkl"}  # a crashed process is never kept: it may not crash again
    assert data["cache"]["hits"] >= len(cached) and data["cache"]["hits"] >= len(expected) // 2 + 1
    assert data["workers"]["cached"] == data["cache"]["hits"]
    rows = {a["path"]: (a["safety"], a["format"], *(a.get(s, {}).get("status") for s in ("load", "convert", "check")))
            for a in data["artifacts"]}
    rows.update({s["path"]: ("skipped", s["reason"]) for s in data["skipped"]})
    assert rows == expected
    assert "result cache:" in stdout


def _attempts(client, index: int) -> int:
    """How often the audit's task for item ``index`` has started its artifact (the count each task keeps on
    the scheduler before it runs anything)."""
    runs = client.get_metadata(["modelport"], default=None) or {}
    return max((int(r.get(str(index)) or 0) for r in runs.values() if isinstance(r, dict)), default=0)


def _executing(client) -> dict:
    """{worker address: keys of the tasks it is running now}."""
    return client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing], on_error="ignore")


@pytest.mark.slow
def test_lost_workers_cost_a_retry_and_an_artifact_two_workers_died_under_is_reported(s3, tmp_path, dask_processes):
    """Kill the Dask worker (SIGKILL: the node gone) running a slow artifact once: its task runs again on
    another worker and ends as it would have. Kill the workers running a hanging one twice: the third start
    reports it (unknown, load crashed: two workers died) instead of running it again."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(FIXTURES / "sklearn/breast_cancer_logreg.joblib", folder / "a_benign.joblib")
    (folder / "b_slow.pkl").write_bytes(pickle.dumps(Call(time.sleep, 8), 4))
    (folder / "c_hang.pkl").write_bytes(pickle.dumps(Call(time.sleep, 1000), 4))
    (folder / "d_config.pkl").write_bytes(pickle.dumps({"k": 1}, 4))
    upload(folder, "s3://registry/lost")
    client = dask_processes.client
    kills = {"b_slow.pkl": 0, "c_hang.pkl": 0}
    wanted = {"b_slow.pkl": 1, "c_hang.pkl": 2}
    index = {name: i for i, name in enumerate(sorted(p.name for p in folder.iterdir()))}  # tasks go in walk order
    outcome: dict = {}

    def run():
        outcome["report"] = audit(["s3://registry/lost"], trust=True, timeout=120, memory=MEMORY,
                                  scheduler=dask_processes.address)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline and kills != wanted:
        for address, keys in _executing(client).items():
            if not isinstance(keys, list):
                continue
            for name, i in index.items():
                if (name in kills and kills[name] < wanted[name] and any(k.endswith(f"-{i}") for k in keys)
                        and _attempts(client, i) == kills[name] + 1):  # this start is counted: the artifact runs
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    kills[name] += 1
                    gone = time.monotonic() + 60
                    while address in client.scheduler_info()["workers"] and time.monotonic() < gone:
                        time.sleep(0.1)
        time.sleep(0.2)
    thread.join(timeout=300)
    assert kills == wanted and not thread.is_alive()
    rows = {row.path: row for row in outcome["report"].artifacts}
    assert set(rows) == set(index)
    slow = rows["b_slow.pkl"]
    assert (slow.safety, slow.load.status) == ("unsafe", "ok"), slow.load  # retried elsewhere, and finished
    hang = rows["c_hang.pkl"]
    assert (hang.safety, hang.load.status, hang.load.category) == ("unknown", "crashed", "crash")
    assert "2 audit workers died" in hang.load.reason and "not tried again" in hang.load.reason
    assert rows["a_benign.joblib"].check.status == "pass" and rows["d_config.pkl"].load.status == "ok"


def test_a_result_is_reused_only_for_the_same_bytes_options_and_versions(s3, tmp_path):
    fs = s3fs()
    fs.mkdir("cached")
    fs.pipe("cached/a.pkl", pickle.dumps({"a": 1}))
    fs.pipe("cached/b.pkl", pickle.dumps(Call(eval, "2+2")))
    cache = tmp_path / "cache"
    first = audit(["s3://cached"], static=True, jobs=1, cache=cache)
    assert first.cache["stored"] == 2 and first.cache["hits"] == 0
    again = audit(["s3://cached"], static=True, jobs=1, cache=cache)
    assert again.cache["hits"] == 2 and verdicts(again) == verdicts(first)
    fs.pipe("cached/b.pkl", pickle.dumps({"b": 2}))  # rewritten: another ETag
    changed = audit(["s3://cached"], static=True, jobs=1, cache=cache)
    assert changed.cache["hits"] == 1 and verdicts(changed)["b.pkl"][0] == "safe"
    assert audit(["s3://cached"], static=True, trust=True, jobs=1, cache=cache).cache["hits"] == 0  # other options
    from compat.scale.cache import ResultCache

    db = sqlite3.connect(cache / "results.sqlite3")
    judged = [json.loads(j) for (j,) in db.execute("SELECT judged_by FROM results")]
    assert all("modelport" in j and "h5py" in j for j in judged)
    db.execute("UPDATE results SET judged_by = json_set(judged_by, '$.h5py', '0.0.1')")  # judged by another h5py
    db.commit()
    db.close()
    stale = audit(["s3://cached"], static=True, jobs=1, cache=cache)
    assert stale.cache["stale"] >= 2 and stale.cache["hits"] == 0
    with ResultCache(cache) as rc:
        assert rc.get("audit", "nothing", {}, {}) is None


@pytest.mark.slow
def test_the_stores_secret_key_never_appears_in_anything_modelport_writes(mixed, tmp_path):
    """The server's secret key is a canary: audit (static and full, every report format, a verbose failure
    on a bucket that does not exist), inspect --json, convert to the store: it appears in no output, no
    report, no journal and not in the cache."""
    _, url, _, _ = mixed
    out = tmp_path / "out"
    out.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    runs = [
        ["audit", url, "--static", "--json", out / "s.json", "--html", out / "s.html", "--sarif", out / "s.sarif",
         "--junit", out / "s.xml"],
        ["audit", url, "--timeout", TIMEOUT, "--json", out / "f.json", "--html", out / "f.html", "--all"],
        ["audit", "s3://no-such-bucket-anywhere/models", "--json", out / "n.json"],
        ["inspect", f"{url}/evil.pkl", f"{url}/benign.joblib", "--json"],
        ["inspect", "s3://registry/mixed/missing.pkl"],
        ["convert", f"{url}/benign.joblib", "-o", "s3://registry/converted/benign.onnx", "--rows", "50",
         "--report", out / "c.json"],
        ["convert", f"{url}/benign.joblib", "-o", "https://user:pw-secret-2@example.invalid/x.onnx"],
    ]
    texts = []
    for args in runs:
        proc = _run_cli(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = proc.communicate(timeout=300)
        texts += [stdout, stderr]
    assert "no such object or prefix" in texts[5] and "cannot write to an http(s) URL" in texts[-1]
    assert '"safety": "unsafe"' in texts[6] and s3fs().exists("registry/converted/benign.onnx")
    files = [p for p in out.iterdir()] + [p for p in (tmp_path / "xdg").rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        texts.append(path.read_bytes().decode("utf-8", "replace"))
    for text in texts:
        assert SECRET not in text and "pw-secret-2" not in text
