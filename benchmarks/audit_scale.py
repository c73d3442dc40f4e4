"""Audits at scale, measured in one run on this machine: a registry in an S3-compatible store (moto's server
on loopback, the real S3 HTTP API) against the same files on disk; one Dask worker against two; a cold run
against the same run answered from the result cache. The closing note estimates, from the measured
per-artifact cost of a full audit (load, convert, check), the cluster a 100,000-artifact registry needs
to be audited in one hour.

Run alone: ``python benchmarks/audit_scale.py`` (prints Markdown); ``make bench`` includes it."""

from __future__ import annotations

import math
import statistics
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _measure import DATA  # noqa: E402

STATIC_N = 400  # artifacts in the static corpus
FULL_N = 48  # scikit-learn models in the full-audit corpus (a third of them in team0: the smaller run)
REPEATS = 3  # full-audit runs of each size and worker count; the median counts
TARGET = (100_000, 3600.0)  # artifacts, seconds

GENERATE = r"""
import pickle, sys, numpy as np, joblib
from pathlib import Path
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import torch
from safetensors.numpy import save_file

static, full, n_static, n_full = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x, y = load_wine(return_X_y=True)
for i in range(n_full):  # distinct fitted models: every file its own content hash
    model = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=200, C=1.0 + i)) if i % 2 else
             DecisionTreeClassifier(max_depth=3 + i % 4, random_state=i))
    (full / f"team{i % 3}").mkdir(parents=True, exist_ok=True)
    joblib.dump(model.fit(x, y), full / f"team{i % 3}" / f"model_{i}.joblib")
for i in range(n_static):
    sub = static / f"team{i % 5}"
    sub.mkdir(parents=True, exist_ok=True)
    kind = i % 4
    if kind == 0:
        joblib.dump(DecisionTreeClassifier(max_depth=2 + i % 5, random_state=i).fit(x, y), sub / f"m_{i}.joblib")
    elif kind == 1:
        pickle.dump({"threshold": i / n_static, "classes": list(range(i % 9))}, open(sub / f"meta_{i}.pkl", "wb"))
    elif kind == 2:
        torch.save({"w": torch.full((32, 13), float(i)), "b": torch.zeros(32)}, sub / f"state_{i}.pt")
    else:
        save_file({"w": np.full((64, 13), i, np.float32)}, str(sub / f"weights_{i}.safetensors"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{env['AWS_ENDPOINT_URL']}/moto-api/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        proc.kill()
        proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _upload(folder: Path, bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(bucket)
    fs.put(str(folder) + "/", f"{bucket}/", recursive=True)


def _timed(**kw) -> tuple[float, object]:
    from compat.audits import audit

    t0 = time.perf_counter()
    report = audit(**kw)
    return time.perf_counter() - t0, report


def _startup(workers: int) -> float:
    from compat.scale.cluster import Cluster

    t0 = time.perf_counter()
    with Cluster(f"local:{workers}"):
        up = time.perf_counter() - t0
    return up


def main() -> list[str]:
    load = _load()
    root = DATA / "audit_scale"
    static_dir, full_dir = root / "static", root / "full"
    if not (static_dir.is_dir() and full_dir.is_dir()) or len(list(full_dir.rglob("*.joblib"))) != FULL_N:
        shutil.rmtree(root, ignore_errors=True)
        static_dir.mkdir(parents=True)
        full_dir.mkdir(parents=True)
        subprocess.run([sys.executable, "-c", GENERATE, str(static_dir), str(full_dir), str(STATIC_N), str(FULL_N)],
                       check=True)
    static_mb = sum(p.stat().st_size for p in static_dir.rglob("*") if p.is_file()) / 1e6
    rows = []
    mix_dir = root / "mix"
    if not mix_dir.is_dir():  # the repository's fixtures: scikit-learn, torch, Keras and SavedModel artifacts
        for sub in ("sklearn", "torch", "tensorflow"):
            shutil.copytree(HERE.parent / "fixtures" / sub, mix_dir / sub)
    with s3_server():
        _upload(static_dir, "static")
        _upload(full_dir, "full")
        _upload(mix_dir, "mix")
        cache = Path(tempfile.mkdtemp(prefix="modelport-bench-cache-"))
        try:
            t_local_static, r = _timed(paths=[static_dir], static=True, jobs=2, cache=None)
            n_static = len(r.artifacts) + len(r.skipped)
            t_s3_static, r_s3 = _timed(paths=["s3://static"], static=True, jobs=2, cache=None)
            same_static = _verdicts(r) == _verdicts(r_s3)
            t_cold_static, _ = _timed(paths=["s3://static"], static=True, jobs=2, cache=cache / "s")
            t_warm_static, r_warm = _timed(paths=["s3://static"], static=True, jobs=2, cache=cache / "s")
            startup = {n: _startup(n) for n in (1, 2)}
            full = {}
            small = len(list((full_dir / "team0").glob("*.joblib")))
            for workers in (1, 2):  # a third and all: the difference is the cost of the rest, without fixed costs
                for n, where in ((small, "s3://full/team0"), (FULL_N, "s3://full")):
                    runs = [_timed(paths=[where], scheduler=f"local:{workers}", cache=None, timeout=120)
                            for _ in range(REPEATS)]
                    full[workers, n] = statistics.median(t for t, _ in runs)
                    report = runs[-1][1]
            _timed(paths=["s3://full"], scheduler="local:2", cache=cache / "f", timeout=120)  # fills the cache
            t_full_local2, _ = _timed(paths=[full_dir], scheduler="local:2", cache=None, timeout=120)
            t_full_cached, fc = _timed(paths=["s3://full"], scheduler="local:2", cache=cache / "f", timeout=120)
            t_mix, mix = _timed(paths=["s3://mix"], scheduler="local:2", cache=None, timeout=300)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    passed = sum(1 for a in report.artifacts if a.check and a.check.status == "pass")
    inside = sorted(a.seconds for a in report.artifacts)
    rows.append(f"### Audit at scale: store vs disk, Dask workers, result cache (full audits: median of {REPEATS})")
    rows.append("")
    rows.append(f"Static corpus: {n_static} artifacts ({static_mb:.1f} MB: scikit-learn joblib, pickles, torch state "
                f"dicts, safetensors). Full corpus: {FULL_N} fitted scikit-learn models, each loaded, converted and "
                f"checked on 1,000 rows ({passed} of {len(report.artifacts)} pass). Store: moto's S3 server on "
                f"loopback. Load average when the run started: {load}.")
    rows.append("")
    rows.append("| run | where the files are | workers | time | artifacts/s |")
    rows.append("|---|---|---|---:|---:|")

    def line(name, where, workers, seconds, n):
        rows.append(f"| {name} | {where} | {workers} | {seconds:.2f} s | {n / seconds:,.1f} |")

    line("static, cold", "local folder", "local pool, 2 jobs", t_local_static, n_static)
    line("static, cold", "S3 (ranged reads, in process)", "local, 2 jobs", t_s3_static, n_static)
    line("static, cached", "S3 (listing only)", "local, 2 jobs", t_warm_static, n_static)
    for workers in (1, 2):
        for n in (small, FULL_N):
            line("full audit, cold", "S3 (private copies)", f"Dask local:{workers}", full[workers, n], n)
    line("full audit, cold", "local folder", "Dask local:2", t_full_local2, FULL_N)
    line("full audit, cached", "S3", "Dask local:2", t_full_cached, FULL_N)
    line("full audit, fixtures mix", "S3 (private copies)", "Dask local:2", t_mix, len(mix.artifacts))
    rows.append("")
    more = FULL_N - small
    per = {w: (full[w, FULL_N] - full[w, small]) / more for w in (1, 2)}  # seconds per artifact, fixed costs out
    speedup = per[1] / per[2] if per[2] > 0 else float("nan")
    efficiency = min(1.0, speedup / 2)
    need_rate = TARGET[0] / TARGET[1]
    workers = math.ceil(TARGET[0] * per[1] / (TARGET[1] * efficiency))
    median_inside = inside[len(inside) // 2]
    overhead = per[1] - median_inside  # fetch, fork, schedule, report: per artifact (noise can make it negative)
    overhead_text = (f"plus the {overhead:.2f} s per artifact of fetching, forking and scheduling measured above"
                     if overhead > 0 else "with nothing added for fetching, forking and scheduling: the marginal "
                     f"cost measured above ({per[1]:.2f} s) is within noise of the in-process median "
                     f"({median_inside:.2f} s)")
    overhead = max(0.0, overhead)
    by_framework: dict = {}
    for a in mix.artifacts:
        by_framework.setdefault(a.framework or a.format, []).append(a.seconds)
    mix_cost = sum(a.seconds for a in mix.artifacts) / max(1, len(mix.artifacts)) + overhead
    workers_mix = math.ceil(TARGET[0] * mix_cost / (TARGET[1] * efficiency))
    mix_text = ", ".join(f"{k} {sum(v) / len(v):.2f} s ×{len(v)}" for k, v in sorted(by_framework.items()))
    rows.append(f"S3 static vs local static: {t_s3_static / t_local_static:.2f}× the time "
                f"({'same verdicts' if same_static else 'VERDICTS DIFFER'}); cached static re-run: "
                f"{t_cold_static / t_warm_static:.0f}× faster than its cold run ({r_warm.cache.get('hits', 0)} of "
                f"{n_static} rows reused). Full audit, marginal cost of {more} more artifacts: {per[1]:.3f} s each on "
                f"one worker, {per[2]:.3f} s on two ({speedup:.2f}× the throughput; LocalCluster start-up "
                f"{startup[1]:.1f} s / {startup[2]:.1f} s, and each worker's one-time framework import, cancel out). "
                f"S3 vs local files, {FULL_N} artifacts on 2 workers: {full[2, FULL_N] / t_full_local2:.2f}× "
                f"the time; cached full re-run: {full[2, FULL_N] / t_full_cached:.0f}× faster "
                f"({fc.cache.get('hits', 0)} of {FULL_N} reused). Inside its confined process an artifact took {median_inside:.2f} s (median; "
                f"load, convert, check), the rest is fetching, forking, scheduling and reporting.")
    rows.append("")
    rows.append(f"**Cluster size for a one-hour full audit of {TARGET[0]:,} artifacts.** One hour for {TARGET[0]:,} "
                f"artifacts is {need_rate:.1f} artifacts/s. Measured here, one more artifact costs {per[1]:.3f} s of a "
                f"single-threaded Dask worker (fetch from S3, static scan, load, convert, check, in a fresh confined "
                f"process), and two workers gave {speedup:.2f}× one worker's throughput ({efficiency:.0%} "
                f"efficiency, on a 2-core machine shared with the scheduler, the S3 server and the client). So: "
                f"{TARGET[0]:,} × {per[1]:.3f} s / (3,600 s × {efficiency:.2f}) = **{workers} single-threaded "
                f"workers** (cores) for a registry of small scikit-learn models like these. A registry mixed like "
                f"the repository's fixtures ({len(mix.artifacts)} artifacts; time inside the confined process by "
                f"framework: {mix_text}; mean {mix_cost - overhead:.2f} s, {overhead_text}) needs {TARGET[0]:,} × {mix_cost:.2f} s / "
                f"(3,600 s × {efficiency:.2f}) = **{workers_mix} workers**, e.g. {_machines(workers_mix)}, plus each worker's one-time framework imports (seconds for TensorFlow). "
                f"A static-only audit of 100,000 artifacts from S3 at the rate above takes "
                f"{TARGET[0] / (n_static / t_s3_static) / 60:.0f} min on this one machine, and a re-run with nothing "
                f"changed is answered from the cache.")
    return rows


def _machines(workers: int) -> str:
    n = math.ceil(workers / 16)
    return f"{n} machine{'s' if n > 1 else ''} of 16 cores"


def _load() -> str:
    try:
        return ", ".join(Path("/proc/loadavg").read_text().split()[:3]) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"


def _verdicts(report) -> dict:
    out = {r.path: r.safety for r in report.artifacts}
    out.update({s.path: "skipped" for s in report.skipped})
    return out


if __name__ == "__main__":
    print("\n".join(main()))
