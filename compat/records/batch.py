"""Replaying many records at once: a CI job that checks thousands of golden records after an upgrade.

    reports, stats = verify_all(paths, scheduler="tcp://dask:8786", cache="~/.cache/modelport")

Each record is one task (``replay_one``): on this machine, in order, as ``modelport verify`` always did; or
on a Dask cluster (``compat.scale.cluster``), results streamed back. Records may be in a store
(``s3://...``): each is copied with the files it names (``remote.local_record``). With a cache
(``compat.scale.cache``) a record whose content, artifacts, options and judging versions are unchanged is
not replayed again: an upgrade changes the versions, so after one everything is replayed once.
"""

from __future__ import annotations

from convert.errors import BadInputError, ModelportError

from ..checks.report import TRACKED
from .remote import identity, local_record, shown
from .replay import VerifyReport, verify

KIND = "verify"
_FINAL = ("ok", "outputs-moved", "artifact-changed", "load-failed", "convert-failed")  # worth keeping


def replay_one(item: tuple, settings: dict) -> dict:
    """One record: ``{"report": VerifyReport.to_dict(), "judged_by": versions}``, or ``{"error": ...}`` for a
    record that is bad input (exit 2), as ``verify`` raises it."""
    from ..scale.cache import versions

    _, path, _ = item
    try:
        with local_record(path) as local:
            report = verify(local, trust=settings["trust"], reconvert=settings["reconvert"],
                            model_class=settings["model_class"], model_args=settings["model_args"])
    except ModelportError as exc:
        if not settings.get("collect_errors"):
            raise
        return {"error": {"class": type(exc).__name__, "message": exc.message, "path": exc.path, "hint": exc.hint,
                          "exit_code": exc.exit_code}}
    report.record = shown(path)
    return {"report": report.to_dict(), "judged_by": versions(TRACKED)}


def _lost(item: tuple, attempts: int | None) -> dict:
    times = f"{attempts} workers" if attempts else "workers"
    return {"report": VerifyReport(shown(item[1]), verdict="fail", status="worker-lost",
                                   reason=f"{times} died while replaying this record; it was not tried again").to_dict()}


def _failed(item: tuple, exc: BaseException) -> dict:
    return {"report": VerifyReport(shown(item[1]), verdict="fail", status="error",
                                   reason=f"the replay failed on its worker: {type(exc).__name__}: "
                                          f"{str(exc)[:300]}").to_dict()}


def _raise(error: dict) -> None:
    import convert.errors as errors

    kind = getattr(errors, error.get("class", ""), None)
    if not (isinstance(kind, type) and issubclass(kind, ModelportError)):
        kind = BadInputError
    exc = kind(error.get("message", "bad record"), path=error.get("path"), hint=error.get("hint"))
    exc.exit_code = int(error.get("exit_code", exc.exit_code))
    raise exc


def verify_all(paths, *, trust: bool = False, reconvert: bool = True, model_class: str | None = None,
               model_args: dict | None = None, scheduler: str | None = None,
               cache=None) -> tuple[list[VerifyReport], dict]:
    """Replay every record in ``paths``; (reports in the order given, {"cache": ..., "scheduler": ...}).
    Bad input (a corrupt record, a model class that cannot be used) raises, as ``verify`` does: on Dask
    after the other records finished, for the first such record in the order given."""
    settings = {"trust": trust, "reconvert": reconvert, "model_class": model_class, "model_args": model_args,
                "collect_errors": bool(scheduler)}
    options = {k: settings[k] for k in ("trust", "reconvert", "model_class", "model_args")}
    store = _open(cache)
    cluster = None
    try:
        if scheduler:
            from ..scale.cluster import Cluster

            cluster = Cluster(scheduler)
        from ..scale.cache import consensus, versions

        now = {}
        if store is not None:
            now = consensus(list(cluster.run_on_workers(versions, TRACKED).values())) if cluster else versions(TRACKED)
        results: dict[int, VerifyReport] = {}
        errors: dict[int, dict] = {}
        todo = []
        for index, path in enumerate(paths):
            key = None
            if store is not None:
                try:
                    key = identity(path, model_class, trust)
                except (ModelportError, OSError):
                    key = None  # the replay says what is wrong with it
            hit = store.get(KIND, key, options, now) if key else None
            if hit is not None:
                report = VerifyReport.from_dict(hit)
                report.record = shown(path)
                results[index] = report
            else:
                todo.append((index, path, key))
        if cluster is not None:
            runs = cluster.map(replay_one, todo, settings, lost=_lost, failed=_failed)
        else:
            runs = ((item, replay_one(item, settings)) for item in todo)
        for (index, _, key), out in runs:
            if "error" in out:
                errors[index] = out["error"]
                continue
            report = VerifyReport.from_dict(out["report"])
            results[index] = report
            if store is not None and key and out.get("judged_by") and report.status in _FINAL:
                store.put(KIND, key, options, out["judged_by"], out["report"])
        if errors:
            _raise(errors[min(errors)])
        stats = {"cache": store.describe() if store is not None else {},
                 "scheduler": shown(scheduler) if scheduler else None, "replayed": len(todo)}
        return [results[i] for i in range(len(paths))], stats
    finally:
        if cluster is not None:
            cluster.close()
        if store is not None:
            store.close()


def _open(folder):
    if not folder:
        return None
    from ..scale.cache import ResultCache

    try:
        return ResultCache(folder)
    except Exception as exc:  # noqa: BLE001 -- sqlite3 and filesystem errors alike
        raise BadInputError(f"cannot use the result cache: {exc}", path=str(folder),
                            hint="give another folder with --cache, or --no-cache") from None
