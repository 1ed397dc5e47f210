"""Executors run shard tasks; they know nothing about steps (datatrove keeps the same split).

`LocalExecutor` is a process pool (spawn, so workers never inherit a forked Polars/DuckDB
state). With one worker it runs tasks inline, which keeps tracebacks and profiles simple.
`RayExecutor` runs the same tasks on a Ray cluster. Both yield results as tasks finish; the
build's output never depends on completion order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from pipelines.lifeline import Lifeline, die_with_parent
from pipelines.usage import mark_worker_start

MIB = 1024 * 1024
T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]: ...

    def start(self, warm: Callable[[], object]) -> None: ...

    def close(self) -> None: ...


THREAD_ENV = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Give a worker its share of the cores: without this, N workers each start a thread pool the
    size of the machine (Polars, torch) and oversubscribe it. Runs before the worker imports them."""
    for name in THREAD_ENV:
        os.environ.setdefault(name, str(threads))


def init_worker(driver: int, threads: int, warm: Callable[[], object] | None = None) -> None:
    """A pool worker exits with the driver (even a SIGKILLed one), gets its share of the cores
    and runs ``warm``; its start-up CPU is counted in its first task's stats."""
    die_with_parent(driver)
    limit_threads(threads)
    mark_worker_start()
    if warm is not None:
        warm()


def ray_thread_env(workers: int) -> dict[str, Any]:
    """Ray sets OMP_NUM_THREADS per task; Polars needs telling too (see `limit_threads`)."""
    return {"env_vars": {"POLARS_MAX_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, workers)))}}


class LocalExecutor:
    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self, warm: Callable[[], object] | None = None) -> ProcessPoolExecutor:
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(os.getpid(), threads, warm),
            )
        return self._pool

    def start(self, warm: Callable[[], object]) -> None:
        """Start every worker now, each running ``warm`` first (unpickling it imports its module),
        without waiting: a spawned worker takes ~0.6 s to import what tasks need, and a build's
        driver has that much of its own work (importing sources, planning) before the first
        phase, so the start-up is hidden behind it."""
        if self.workers > 1 and self._pool is None:
            pool = self._get_pool(warm)
            for _ in range(self.workers):
                pool.submit(int)  # one no-op per worker: the pool spawns a process per waiting item

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


class RayExecutor:
    """Tasks as Ray tasks: placed by their declared resources, retried when a worker dies.

    Tasks are idempotent (atomic outputs, done-markers written last), so a retry after a
    killed worker rewrites the same bytes and the output has every document exactly once.
    Connects to ``address`` (``ray://...`` or ``auto``) or starts a local cluster with
    ``workers`` CPUs that it shuts down on ``close``, and that a `Lifeline` kills if the driver
    dies without closing it.
    """

    def __init__(self, workers: int = 1, address: str | None = None, max_retries: int = 3) -> None:
        import ray

        self.workers = max(1, workers)
        self.max_retries = max_retries
        self._owns_cluster = False
        self._lifeline: Lifeline | None = None
        self._largest_node: int | None = None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                self._lifeline = Lifeline()
                ray.init(num_cpus=self.workers, runtime_env=ray_thread_env(self.workers), **kwargs)
                self._owns_cluster = True
            self.workers = max(1, int(ray.cluster_resources().get("CPU", self.workers)))

    def start(self, warm: Callable[[], object]) -> None:
        """The cluster is up once the constructor returns; Ray starts its workers itself."""

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        import ray

        remote = ray.remote(fn)
        pending: list[Any] = []
        it = iter(tasks)
        limit = 2 * self.workers
        while True:
            while len(pending) < limit:
                try:
                    task = next(it)
                except StopIteration:
                    break
                res = getattr(task, "resources", None)
                options = {"max_retries": self.max_retries, "retry_exceptions": False}
                if res is not None:
                    # never more than the largest node has, or the task would wait forever
                    memory = min(res.memory_mb * MIB, self._node_memory())
                    options.update(num_cpus=res.cpus, num_gpus=res.gpus, memory=memory)
                pending.append(remote.options(**options).remote(task))
            if not pending:
                return
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def _node_memory(self) -> int:
        """Bytes of Ray's ``memory`` resource on the largest alive node (cached)."""
        if self._largest_node is None:
            import ray

            sizes = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")]
            self._largest_node = int(max(sizes, default=0)) or 2**62
        return self._largest_node

    def close(self) -> None:
        import ray

        if self._owns_cluster and ray.is_initialized():
            ray.shutdown()
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None


def make_executor(name: str, workers: int, *, address: str | None = None) -> Executor:
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address=address)
    raise ValueError(f"unknown executor {name!r}; available: local, ray")
