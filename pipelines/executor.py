"""Executors run shard tasks; they know nothing about steps (datatrove keeps the same split).

`LocalExecutor` is a process pool (spawn, so workers never inherit a forked Polars/DuckDB
state). With one worker it runs tasks inline, which keeps tracebacks and profiles simple.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


class LocalExecutor:
    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield results as tasks finish; at most 2 x workers tasks in flight."""
        if self.workers == 1:
            for task in tasks:
                yield fn(task)
            return
        pool = self._get_pool()
        pending: set[Future[Any]] = set()
        it = iter(tasks)
        limit = 2 * self.workers
        try:
            while True:
                while len(pending) < limit:
                    try:
                        pending.add(pool.submit(fn, next(it)))
                    except StopIteration:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def make_executor(name: str, workers: int, **options: Any) -> Executor:
    if name == "local":
        return LocalExecutor(workers)
    raise ValueError(f"unknown executor {name!r}; available: local")
