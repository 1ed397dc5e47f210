"""Run extraction in worker processes with a hard time limit per page.

A pathological page (a regex blow-up, a PDF with a million objects, a C-level loop in a parser)
must not hang the crawl, and a thread cannot be interrupted. So each page is extracted in a
long-lived worker process; when a call overruns its limit the worker is killed and replaced, and
the caller gets `ExtractionTimeout`. Calls block, so Scrapy callbacks run them in a thread
(`scrapy.utils.asyncio.run_in_thread`) and the reactor keeps downloading meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from crawlers.extract import ExtractionError


class ExtractionTimeout(ExtractionError):
    """The call ran past the pool's time limit; its worker was killed."""


def _worker_main(conn: Connection) -> None:
    # parsers' own warnings (e.g. pypdf on a truncated file) would only duplicate the recorded reason
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args = message
        try:
            conn.send(("ok", fn(*args)))
        except ExtractionError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:  # any bug in a parser becomes a recorded failure, not a dead crawl
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


class ExtractionPool:
    """``workers`` processes; ``call(fn, *args)`` runs ``fn`` in one of them within ``timeout_s``.

    ``fn`` and its arguments must be picklable (a module-level function). Thread-safe: up to
    ``workers`` calls run at once, others wait for a free worker.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 20.0, *, preload: tuple[str, ...] = ("crawlers.extract",)):
        if workers < 1:
            raise ValueError("an extraction pool needs at least one worker")
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(preload))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._all: list[_Worker] = []
        for _ in range(workers):
            self._add_worker()
        self.timeouts = 0
        self.restarts = 0

    def _add_worker(self) -> None:
        worker = _Worker(self._ctx)
        with self._lock:
            self._all.append(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.remove(worker)
            self.restarts += 1
        if not self._closed:
            self._add_worker()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise RuntimeError("extraction pool is closed")
        worker = self._idle.get()
        try:
            worker.conn.send((fn, args))
            if not worker.conn.poll(self.timeout_s):
                self.timeouts += 1
                self._replace(worker)
                worker = None
                raise ExtractionTimeout(f"extraction took longer than {self.timeout_s:g}s")
            status, value = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            if worker is not None:
                self._replace(worker)
                worker = None
            raise ExtractionError(f"extraction worker died: {type(exc).__name__}") from exc
        finally:
            if worker is not None:
                self._idle.put(worker)
        if status == "error":
            raise ExtractionError(value)
        return value

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
