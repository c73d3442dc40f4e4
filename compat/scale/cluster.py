"""The Dask back end: per-item tasks on a running cluster (``tcp://HOST:PORT``) or on a LocalCluster this
process starts (``local:N``: N worker processes, one thread each), results streamed back as they finish.

    with Cluster("local:2") as cluster:
        for item, result in cluster.map(task, items, settings, lost=..., failed=...):
            ...

At most a window of tasks is in flight (a few per worker thread), so a client with 100,000 items holds a
few dozen futures and a killed client leaves little running. A worker that dies while it runs a task
(killed, out of memory, its machine gone) costs nothing: the scheduler gives the task to another worker.
Each task counts its attempts on the scheduler (``set_metadata``): an item whose task has started
``MAX_ATTEMPTS`` times already, each time on a worker that died, is not run again anywhere; ``lost(item,
attempts)`` makes its result instead. Clusters whose own limit (``distributed.scheduler.allowed-failures``)
is lower give up first, with ``KilledWorker``: the same result.

dask and distributed are the ``scale`` extra, imported only here.
"""

from __future__ import annotations

import logging
import os
import re
import uuid

from convert.errors import BadInputError, EnvironmentProblem

MAX_ATTEMPTS = 2  # an item whose task killed this many workers is reported, never run a third time
LOST = "__modelport_lost__"  # the marker a task returns instead of running once more
ADDRESS = re.compile(r"^(tcp|tls|ws|wss)://[^\s/]+:\d+/?$")
EXTRA = "pip install 'modelport[scale]'"


def parse(scheduler: str) -> tuple[str, int | None]:
    """``("local", workers)`` for ``local`` / ``local:N``, ``("remote", None)`` for ``tcp://HOST:PORT`` (also
    tls, ws, wss); BadInputError for anything else."""
    text = scheduler.strip()
    if text == "local":
        return "local", None
    m = re.fullmatch(r"local:(\d+)", text)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise BadInputError(f"--scheduler local:N needs at least one worker, got {text}")
        return "local", n
    if ADDRESS.match(text):
        return "remote", None
    raise BadInputError(f"--scheduler takes tcp://HOST:PORT or local:N, got {text!r}",
                        hint="tcp://scheduler:8786 for a running Dask cluster, local:4 to start four local workers")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise EnvironmentProblem("--scheduler needs dask and distributed", hint=EXTRA) from None
    return distributed


class Cluster:
    """A Dask client, and the LocalCluster behind it when this process started one."""

    def __init__(self, scheduler: str, connect_timeout: float = 30.0):
        kind, workers = parse(scheduler)
        distributed = _distributed()
        self.address = scheduler
        self.local = None
        quiet = logging.ERROR
        for name in ("distributed", "distributed.client", "distributed.worker", "distributed.scheduler",
                     "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(quiet)
        if kind == "local":
            n = workers or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
            self.local = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                  dashboard_address=":0", silence_logs=quiet, scheduler_port=0)
            self.client = distributed.Client(self.local, set_as_default=False)
        else:
            unreachable = BadInputError(f"cannot reach the Dask scheduler at {scheduler}",
                                        hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                                             "or use --scheduler local:N")
            if scheduler.startswith("tcp://"):  # refused at once, rather than after the client's retries
                import socket

                host, _, port = scheduler[len("tcp://"):].rstrip("/").rpartition(":")
                try:
                    socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout).close()
                except OSError:
                    raise unreachable from None
            try:
                self.client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError):
                raise unreachable from None
            try:
                self.client.wait_for_workers(1, timeout=connect_timeout)
            except (OSError, TimeoutError):
                self.close()
                raise BadInputError(f"the Dask scheduler at {scheduler} has no workers",
                                    hint="start some with `dask worker ADDRESS`") from None
        try:
            self.client.run(_probe)
        except Exception as exc:  # noqa: BLE001 -- whatever the workers' unpickling raised
            self.close()
            raise EnvironmentProblem(f"the Dask workers cannot run modelport's tasks ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})", hint="install modelport (the same release) where the "
                                                                "workers run") from None

    def threads(self) -> int:
        return sum(self.client.nthreads().values()) or 1

    def workers(self) -> int:
        return len(self.client.nthreads())

    def run_on_workers(self, func, *args) -> dict:
        """``func(*args)`` on every worker: {worker address: result}."""
        return self.client.run(func, *args)

    def map(self, func, items, *args, lost, failed, window: int | None = None):
        """Yield (item, result) for ``func(item, *args)`` run on the cluster, in completion order.
        ``lost(item, attempts)`` is the result for an item whose task started ``attempts`` times on workers
        that died; ``failed(item, exc)`` for a task that raised."""
        distributed = _distributed()
        from distributed.scheduler import KilledWorker

        run = uuid.uuid4().hex[:16]
        window = window or max(8, 3 * self.threads())
        source = enumerate(items)
        flight: dict = {}
        done = distributed.as_completed(loop=self.client.loop)

        def submit() -> bool:
            nxt = next(source, None)
            if nxt is None:
                return False
            index, item = nxt
            future = self.client.submit(_attempted, func, run, index, item, *args, key=f"modelport-{run}-{index}",
                                        pure=False, retries=0)
            flight[future.key] = (future, item)
            done.add(future)
            return True

        try:
            for _ in range(window):
                if not submit():
                    break
            for future in done:
                _, item = flight.pop(future.key)
                try:
                    result = future.result()
                except KilledWorker:
                    result = lost(item, None)
                except distributed.client.FutureCancelledError as exc:
                    raise EnvironmentProblem(f"the Dask scheduler at {self.address} dropped the audit's tasks "
                                             f"({str(exc)[:160]})", hint="run it again: finished results are "
                                                                         "in the cache") from None
                except Exception as exc:  # noqa: BLE001 -- a task that raised: one item's result
                    result = failed(item, exc)
                else:
                    if isinstance(result, dict) and LOST in result:
                        result = lost(item, result[LOST])
                future.release()
                yield item, result
                submit()
        finally:
            if flight and self.client is not None:
                try:
                    self.client.cancel([future for future, _ in flight.values()], force=True)
                except Exception:  # noqa: BLE001 -- a scheduler already gone cancels nothing
                    pass
            try:
                self.client.set_metadata(["modelport", run], None)
            except Exception:  # noqa: BLE001 -- a scheduler already gone keeps nothing anyway
                pass

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001 -- closing what is already gone
                pass
        if self.local is not None:
            try:
                self.local.close(timeout=20)
            except Exception:  # noqa: BLE001
                pass
            self.local = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------- on the workers


def _probe() -> str:
    import compat

    return compat.__name__


def _attempted(func, run: str, index: int, item, *args):
    """Run ``func(item, *args)`` unless this item's task has already started ``MAX_ATTEMPTS`` times (each
    on a worker that then died: a finished task is never started again)."""
    from distributed import get_client

    client = get_client()
    key = ["modelport", run, str(index)]
    attempts = int(client.get_metadata(key, default=0) or 0) + 1
    client.set_metadata(key, attempts)
    if attempts > MAX_ATTEMPTS:
        return {LOST: attempts - 1}
    return func(item, *args)
