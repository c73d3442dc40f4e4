"""The confined pool as a service other threads can use: one thread owns a ``Pool`` (its worker slots die
with the thread that started them: a parent-death signal) and feeds it from a queue; any thread calls
``run(task)`` and gets the task's result when its confined process is done.

This is what a Dask worker (``compat.scale.cluster``) and the audit of store objects use: the thread that
fetches an object, or runs a Dask task, never reads an artifact's bytes with a loader itself; the pool's
fresh confined process per file does, with the same timeout, memory cap and confinement as a local audit.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from concurrent.futures import Future

from .pool import Pool


class PoolService:
    """``service = PoolService(jobs, timeout, memory)``; ``service.run(task)`` from any thread;
    ``service.close()`` when done. ``stats()`` and ``confinement()`` are the pool's."""

    def __init__(self, jobs: int, timeout: float, memory: int):
        self.jobs, self.timeout, self.memory = jobs, timeout, memory
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: dict[int, Future] = {}
        self._tickets = itertools.count(1)
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.pool: Pool | None = None
        self._stats: dict = {}
        self._confinement: dict = {}
        self._mechanisms: list[dict] = []
        self._thread = threading.Thread(target=self._serve, name="modelport-pool", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, task: dict) -> Future:
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("the audit's pool is closed")
        ticket = next(self._tickets)
        future: Future = Future()
        self._futures[ticket] = future
        self._queue.put(dict(task, ticket=ticket))
        self._wake()
        return future

    def run(self, task: dict) -> dict:
        """The result of ``task`` (as ``Pool.run`` gives it), blocking this thread until it is done."""
        return self.submit(task).result()

    def alive(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def stats(self) -> dict:
        return dict(self.pool.stats()) if self.pool is not None else dict(self._stats)

    def mechanisms(self) -> list[dict]:
        """Every confinement mechanism the pool's processes reported (``confine.summarize`` merges them)."""
        pool = self.pool
        for _ in range(5):
            try:
                return [m.to_dict() for m in set(pool.mechanisms)] if pool is not None else list(self._mechanisms)
            except RuntimeError:  # the pool's thread added one meanwhile
                continue
        return []

    def confinement(self) -> dict:
        if self.pool is None:
            return dict(self._confinement)
        for _ in range(5):  # the pool's thread may add a layer meanwhile
            try:
                return self.pool.confinement()
            except RuntimeError:
                continue
        return {}

    def close(self) -> None:
        self._closed = True
        self._wake()
        self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------------------- the pool's thread

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _feed(self):
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                if self._closed:
                    return
                yield None

    def _serve(self) -> None:
        try:
            pool = Pool(jobs=self.jobs, timeout=self.timeout, memory=self.memory)
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that started the service
            self._error = exc
            self._ready.set()
            return
        self.pool = pool
        self._ready.set()
        try:
            with pool:
                for task, result in pool.run(self._feed(), wake=self._wake_r):
                    future = self._futures.pop(task.get("ticket"), None)
                    if future is not None:
                        future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 -- every waiting thread learns why
            for future in list(self._futures.values()):
                if not future.done():
                    future.set_exception(exc)
            self._futures.clear()
        finally:
            self._stats, self._confinement = pool.stats(), pool.confinement()
            self._mechanisms = [m.to_dict() for m in set(pool.mechanisms)]
            self.pool = None
            self._closed = True
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(RuntimeError("the audit's pool closed before this task ran"))
