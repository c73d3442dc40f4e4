"""One artifact, wherever its bytes are and wherever the audit runs: the per-artifact unit that the local
runner and every Dask worker call alike.

    result = run_artifact(task, confined)   # confined(task) -> result: a PoolService's ``run``

- A local path goes to ``confined``: a fresh confined process of the pool reads it (``pool``, ``worker``).
- A store object (``s3://``, ``gs://``, ...) with ``static``: scanned right here through ranged reads
  (``convert.storage``); the static pass never runs the file's code, and the process doing it holds the
  store's credentials, which a confined process never gets (no network, minimal environment).
- A store object to load: streamed first into a private temporary folder, then handed to ``confined`` like
  a local file; the copy is removed when its process is done. What is loaded is what was scanned: the
  static facts come from the same copy.

Every result says what the cache keys it by (``identity``: the store's ETag, size and modification time,
read when the object was opened) and who judged it (``judged_by``: the versions of modelport and of the
libraries its steps used, here where it ran).

``audit_task`` is the Dask task: each worker process keeps one ``PoolService`` per (timeout, memory), as many
slots as the worker has threads, so the Dask worker itself never runs an artifact's code: a payload that
crashes or hangs kills or outlives only its confined process, and costs its own row.
"""

from __future__ import annotations

import _thread
import os
import time

from convert import formats
from convert.storage import RemotePath, fetch, is_remote, private_folder, redact

# distributions that can change a row, by what judged it: the static pass (modelport's own scanners plus
# the parsers it calls), and for the dynamic steps the framework whose adapter loads, converts and checks
STATIC_JUDGES = ("h5py", "onnx", "py7zr", "protobuf")
FRAMEWORK_JUDGES = {
    "sklearn": ("scikit-learn", "skl2onnx", "joblib", "scipy", "numpy", "pandas", "onnx", "onnxruntime"),
    "torch": ("torch", "onnxscript", "numpy", "onnx", "onnxruntime"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "h5py", "numpy", "onnx", "onnxruntime"),
    "onnx": ("onnx", "onnxruntime", "numpy"),
    None: ("numpy", "safetensors"),
}
ALL_JUDGES = tuple(sorted({n for names in FRAMEWORK_JUDGES.values() for n in names} | set(STATIC_JUDGES)))


def judges(result: dict, static: bool) -> tuple[str, ...]:
    """The distributions whose versions decide whether ``result`` is still valid."""
    if static or result.get("skip"):
        return STATIC_JUDGES
    fmt = result.get("format")
    row = formats.get(fmt) if fmt in formats.FORMATS else None
    framework = row.warms if row is not None else None
    if framework is None and fmt in ("pickle", "joblib"):
        framework = "sklearn"  # loaded through the sklearn adapter's restricted unpickler
    return STATIC_JUDGES + FRAMEWORK_JUDGES.get(framework, FRAMEWORK_JUDGES[None])


def run_artifact(task: dict, confined) -> dict:
    """The result of one task (as ``pool.Pool.run`` gives it), plus ``identity`` for store objects and
    ``judged_by``."""
    from ..scale.cache import versions

    path = task["path"]
    if not is_remote(path):
        if not os.path.lexists(path):
            result = unreachable(task, "this worker cannot see the path: Dask workers need the files on a shared "
                                       "filesystem, or the artifacts in a store (s3://, gs://, ...)")
        else:
            result = confined(task)
    elif task.get("static"):
        result = _scan_here(task)
    else:
        result = _fetched(task, confined)
    result["judged_by"] = versions(judges(result, bool(task.get("static"))))
    return result


def _scan_here(task: dict) -> dict:
    """The static pass of a store object in this process: ``steps.run_task``'s messages, merged as the pool
    merges a child's."""
    from .steps import run_task

    remote = RemotePath(task["path"]).fresh()
    t0 = time.perf_counter()
    try:
        info = remote.object_info()
    except Exception as exc:  # noqa: BLE001 -- the store's error: one row, fail closed
        return unreachable(task, redact(str(exc), task["path"]))
    messages: list[dict] = []
    run_task(dict(task, path=remote.url, static=True), messages.append)
    result: dict = {}
    for message in messages:
        if message.get("stage") == "static" and not result:
            result = {k: v for k, v in message.items() if k != "stage"}
    result["seconds"] = time.perf_counter() - t0
    result["identity"] = info.identity
    result["in_process"] = True
    return result


def _fetched(task: dict, confined) -> dict:
    """Load a store object from a private copy, in a confined process like any local file."""
    remote = RemotePath(task["path"]).fresh()
    folder = private_folder()
    try:
        try:
            info = remote.object_info()
            t0 = time.perf_counter()
            local = fetch(remote, folder)
            fetched = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 -- the store's error: one row, fail closed
            return unreachable(task, redact(getattr(exc, "message", None) or str(exc), task["path"]))
        result = confined({k: v for k, v in task.items() if k in ("static", "trust")} | {"path": str(local)})
        result["identity"] = info.identity
        result["fetch_seconds"] = fetched
        return result
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def unreachable(task: dict, why: str) -> dict:
    """A row for an artifact that could not be read at all: unknown (fail closed), nothing loaded."""
    result = {"format": None, "framework": None, "size": 0, "sha256": "", "saved_with": {}, "safety": "unknown",
              "findings": [{"what": f"not read: {why}", "severity": "unknown", "where": ""}], "flagged": [],
              "lost": "unreachable"}
    if not task.get("static"):
        result["load"] = {"status": "failed", "reason": f"not read: {why}", "category": "other"}
        for step in ("convert", "check"):
            result[step] = {"status": "skipped", "reason": "not reached"}
    return result


def lost(task: dict, attempts: int | None) -> dict:
    """The row of an artifact whose task started on Dask workers that died each time: it is reported, and
    not run again (``compat.scale.cluster.MAX_ATTEMPTS``)."""
    times = f"{attempts} audit workers" if attempts else "audit workers"
    why = f"{times} died while this artifact was audited; it was not tried again"
    result = unreachable(task, why)
    result["lost"] = "crashed"
    if not task.get("static"):
        result["load"] = {"status": "crashed", "reason": why, "category": "crash"}
    return result


def failed(task: dict, exc: BaseException) -> dict:
    """The row of an artifact whose task raised on its worker (a bug, or a worker without modelport)."""
    result = unreachable(task, f"the audit task failed on its worker: {type(exc).__name__}: "
                               f"{redact(str(exc), task['path'])[:300]}")
    result["lost"] = "crashed"
    return result


# --------------------------------------------------------------------------------- on a Dask worker

_services: dict = {}
_lock = _thread.allocate_lock()  # threading's Lock, without importing threading on the static path


def _service(timeout: float, memory: int | None):
    from distributed import get_worker

    from .sandbox.limits import default_memory
    from .sandbox.service import PoolService

    with _lock:
        service = _services.get((timeout, memory))
        if service is None or not service.alive():
            jobs = max(1, get_worker().state.nthreads)
            service = PoolService(jobs, timeout, memory or default_memory(jobs))
            _services[(timeout, memory)] = service
    return service


def audit_task(task: dict, settings: dict) -> dict:
    """The Dask task for one artifact (``settings``: timeout, memory)."""
    if is_remote(task["path"]) and task.get("static"):
        return run_artifact(task, None)
    service = _service(settings["timeout"], settings.get("memory"))
    return run_artifact(task, service.run)


def worker_report() -> dict:
    """What this worker's pools did: processes forked, lost, slots started, and the confinement mechanisms
    their processes reported."""
    stats = {"processes": 0, "lost": 0, "slots": 0}
    mechanisms: list[dict] = []
    with _lock:
        services = list(_services.values())
    for service in services:
        for key, value in service.stats().items():
            stats[key] = stats.get(key, 0) + value
        mechanisms += service.mechanisms()
    return {"stats": stats, "mechanisms": mechanisms}
