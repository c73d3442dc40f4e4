"""Where an audit's per-artifact tasks run: the scheduling abstraction the engine drives.

    with runner(scheduler, jobs=4, timeout=300, memory=None) as r:
        now = r.versions(names)            # library versions where the work runs (the cache compares them)
        for task, result in r.run(tasks):  # completion order, as they finish
            ...
        r.stats(), r.confinement()

- ``LocalRunner`` (no scheduler): this machine's confined pool (``pool``). Local files go straight to it, as
  they always did (a static pass of local files to ``static.StaticScan``: no code runs, so no pool); when store objects are among the tasks, helper threads handle them around a
  ``PoolService`` (``task.run_artifact``: static scans of store objects in the thread, loads from private
  copies in the pool).
- ``DaskRunner`` (``tcp://HOST:PORT`` or ``local:N``): the same ``task.run_artifact`` in every Dask worker
  (``task.audit_task``), each worker with its own confined pool; results streamed back
  (``compat.scale.cluster``).
"""

from __future__ import annotations

from convert.storage import is_remote, redact

from . import task as unit


def runner(scheduler: str | None, *, jobs: int, timeout: float, memory: int | None, judging: bool = True):
    """``judging``: give each local result the versions that judged it (``judged_by``), which the result cache
    keeps; without a cache nobody reads them, and computing them costs a digest of modelport's own source."""
    if scheduler:
        return DaskRunner(scheduler, timeout=timeout, memory=memory)
    from .sandbox.limits import default_memory

    return LocalRunner(jobs=jobs, timeout=timeout, memory=memory or default_memory(jobs), judging=judging)


class LocalRunner:
    kind = "local"

    def __init__(self, jobs: int, timeout: float, memory: int, judging: bool = True):
        self.jobs, self.timeout, self.memory, self.judging = jobs, timeout, memory, judging
        self._stats: dict = {"processes": 0, "lost": 0, "slots": 0}
        self._mechanisms: list = []
        self._in_process = 0

    def versions(self, names) -> dict:
        from ..scale.cache import versions

        return versions(names)

    def run(self, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        if not any(is_remote(t["path"]) for t in tasks):
            yield from self._pool(tasks, static=all(t.get("static") for t in tasks))
        else:
            yield from self._around(tasks)

    def _pool(self, tasks, static: bool = False):
        """Local files: a static pass runs no file's code, so it is scanned here or in processes forked from
        here (``static.StaticScan``); anything loaded goes to the confined pool."""
        if static:
            from .static import StaticScan

            work = StaticScan(jobs=self.jobs, timeout=self.timeout)
        else:
            from .sandbox.pool import Pool

            work = Pool(jobs=min(self.jobs, len(tasks)), timeout=self.timeout, memory=self.memory)
        with work as pool:
            try:
                for task, result in pool.run(tasks):
                    if self.judging:
                        from ..scale.cache import versions

                        result["judged_by"] = versions(unit.judges(result, bool(task.get("static"))))
                    yield task, result
            finally:
                self._add(pool.stats(), getattr(pool, "mechanisms", ()))

    def _around(self, tasks):
        """Helper threads run ``task.run_artifact``; whatever needs a confined process goes to one pool."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        from .sandbox.service import PoolService

        needs_pool = sum(not (is_remote(t["path"]) and t.get("static")) for t in tasks)
        service = PoolService(min(self.jobs, needs_pool), self.timeout, self.memory) if needs_pool else None
        confined = service.run if service is not None else None
        threads = min(32, max(4, 4 * self.jobs))
        pending = iter(tasks)
        flight: dict = {}
        try:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="modelport-audit") as helpers:
                def submit() -> bool:
                    task = next(pending, None)
                    if task is None:
                        return False
                    flight[helpers.submit(unit.run_artifact, task, confined)] = task
                    return True

                for _ in range(2 * threads):
                    if not submit():
                        break
                while flight:
                    finished, _ = wait(list(flight), return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = flight.pop(future)
                        try:
                            result = future.result()
                        except Exception as exc:  # noqa: BLE001 -- one artifact's failure, one row
                            result = unit.failed(task, exc)
                        self._in_process += bool(result.get("in_process"))
                        yield task, result
                        submit()
        finally:
            if service is not None:
                service.close()
                self._add(service.stats(), service.mechanisms())

    def _add(self, stats: dict, mechanisms) -> None:
        for key, value in stats.items():
            self._stats[key] = self._stats.get(key, 0) + value
        self._mechanisms += list(mechanisms)

    def stats(self) -> dict:
        out = dict(self._stats)
        if self._in_process:
            out["scanned_in_process"] = self._in_process
        return out

    def confinement(self) -> dict:
        if not self._mechanisms:
            return {}
        from .sandbox.confine import summarize

        return summarize(self._mechanisms)

    def describe(self) -> str:
        return "local"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class DaskRunner:
    kind = "dask"

    def __init__(self, scheduler: str, timeout: float, memory: int | None):
        from ..scale.cluster import Cluster

        self.settings = {"timeout": timeout, "memory": memory}
        self.cluster = Cluster(scheduler)
        self.scheduler = redact(scheduler)
        self._in_process = 0
        self._report: dict | None = None
        self._before = self._reports()  # a running cluster's workers may have audited before: count what is new

    def _reports(self) -> dict:
        try:
            return self.cluster.run_on_workers(unit.worker_report)
        except Exception:  # noqa: BLE001 -- workers gone: what they did is not known
            return {}

    def versions(self, names) -> dict:
        from ..scale.cache import consensus, versions

        return consensus(list(self.cluster.run_on_workers(versions, tuple(names)).values()))

    def run(self, tasks):
        for task, result in self.cluster.map(unit.audit_task, tasks, self.settings, lost=unit.lost,
                                             failed=unit.failed):
            self._in_process += bool(result.get("in_process"))
            yield task, result

    def _collect(self) -> dict:
        if self._report is None:
            stats = {"processes": 0, "lost": 0, "slots": 0}
            mechanisms: list = []
            for address, r in self._reports().items():
                before = self._before.get(address, {}).get("stats", {})
                for key, value in r["stats"].items():
                    stats[key] = stats.get(key, 0) + max(0, value - before.get(key, 0))
                mechanisms += r["mechanisms"]
            stats["dask_workers"] = self.cluster.workers()
            self._report = {"stats": stats, "mechanisms": mechanisms}
        return self._report

    def stats(self) -> dict:
        out = dict(self._collect()["stats"])
        if self._in_process:
            out["scanned_in_process"] = self._in_process
        return out

    def confinement(self) -> dict:
        from .sandbox.confine import summarize

        mechanisms = self._collect()["mechanisms"]
        return summarize(mechanisms) if mechanisms else {}

    def describe(self) -> str:
        return self.scheduler

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cluster.close()
