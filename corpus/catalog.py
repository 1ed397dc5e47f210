"""The DuckDB catalog at ``<root>/catalog.duckdb``: runs, shards, step stats and SQL views.

Users audit a corpus with plain SQL against this file (``python -m corpus.remote sql data
"SQL"``). Only the driver process of a job writes here, and it opens the file briefly per
operation so a crawl and a build can take turns; a build writes once, at its end.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from corpus.schema import BASE_FIELDS, REJECT_SCHEMA, utc_now
from corpus.store import CorpusLayout, file_checksum

DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    command VARCHAR,
    config_hash VARCHAR,
    config JSON,
    status VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    seconds DOUBLE,
    docs_in BIGINT,
    docs_out BIGINT,
    docs_rejected BIGINT,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS shards (
    path VARCHAR PRIMARY KEY,
    stage VARCHAR NOT NULL,
    run_id VARCHAR,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    checksum VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    checksum VARCHAR NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS step_stats (
    run_id VARCHAR NOT NULL,
    step_index INTEGER NOT NULL,
    step VARCHAR NOT NULL,
    docs_in BIGINT NOT NULL,
    docs_out BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    seconds DOUBLE NOT NULL,
    drops MAP(VARCHAR, BIGINT),
    PRIMARY KEY (run_id, step_index)
);
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS wall_seconds DOUBLE;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS tasks INTEGER;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS reused_tasks INTEGER;
"""

STAGES = ("raw", "final", "rejects")
LOCK_WAIT_S = 60.0  # how long opening the catalog waits for another process's lock


class CatalogLockedError(RuntimeError):
    """Another process holds the catalog file; the message names it and says what to do."""


def lock_holder(message: str) -> str:
    """``process 1734 (python notebook.py)`` from DuckDB's lock error, as far as it can be told."""
    found = re.search(r"\(PID (\d+)\)", message)
    if not found:
        return "another process"
    pid = int(found.group(1))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        program = re.search(r"lock is held in (.+?) \(PID", message)
        cmdline = program.group(1) if program else ""
    cmdline = cmdline if len(cmdline) <= 80 else cmdline[:79] + "…"
    return f"process {pid}" + (f" ({cmdline})" if cmdline else "")


@dataclass(frozen=True)
class ShardRecord:
    """A shard file as the catalog lists it; ``path`` is relative to the corpus root, so a
    root can be moved or copied whole."""

    path: str
    stage: str
    rows: int
    bytes: int
    checksum: str

    @classmethod
    def of(
        cls, path: Path, stage: str, rows: int, root: Path, *, size: int | None = None, checksum: str | None = None
    ) -> ShardRecord:
        """The record of ``path`` under ``root``; ``size`` and ``checksum`` when its writer measured
        them already (otherwise the file is read)."""
        return cls(
            path.resolve().relative_to(root.resolve()).as_posix(),
            stage,
            rows,
            size if size is not None else path.stat().st_size,
            checksum if checksum is not None else file_checksum(path),
        )


@dataclass(frozen=True)
class RunInfo:
    """A run as the catalog records it (``kind`` is the run id's prefix)."""

    run_id: str
    started_at: datetime
    command: str
    config: dict[str, Any] | None = None
    config_hash: str | None = None


@dataclass(frozen=True)
class StepStatRow:
    """One stage of a build. ``seconds`` is task time summed over workers (including tasks an
    earlier, interrupted run of the same plan finished: ``reused_tasks`` of ``tasks``);
    ``wall_seconds`` is the time this run spent on the stage."""

    step_index: int
    step: str
    docs_in: int
    docs_out: int
    bytes_in: int
    bytes_out: int
    seconds: float
    drops: dict[str, int]
    wall_seconds: float = 0.0
    tasks: int = 0
    reused_tasks: int = 0


def _arrow_to_duckdb(type_str: str) -> str:
    return {
        "string": "VARCHAR",
        "large_string": "VARCHAR",
        "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    }.get(type_str, "VARCHAR")


def _empty_select(fields: Iterable[Any]) -> str:
    cols = ", ".join(f"NULL::{_arrow_to_duckdb(str(f.type))} AS {f.name}" for f in fields)
    return f"SELECT {cols} WHERE false"


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


class Catalog:
    """Thin, explicit API over the catalog file. Open it with ``Catalog.open(layout)``."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, layout: CorpusLayout, *, shard_base: str | None = None) -> None:
        self.conn = conn
        self.layout = layout
        self.shard_base = shard_base  # a URL the views read shards from instead of the root (corpus.remote)
        self._in_transaction = False

    @classmethod
    @contextmanager
    def open(
        cls, layout: CorpusLayout, *, read_only: bool = False, timeout_s: float | None = None
    ) -> Iterator[Catalog]:
        """Connect, waiting up to ``timeout_s`` (default `LOCK_WAIT_S`) for another process's lock:
        a writer excludes everyone, a reader excludes writers. Says once on stderr who it waits for."""
        layout.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + (LOCK_WAIT_S if timeout_s is None else timeout_s)
        said = False
        while True:
            try:
                conn = duckdb.connect(str(layout.catalog), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                holder = lock_holder(str(exc))
                if time.monotonic() > deadline:
                    raise CatalogLockedError(
                        f"{layout.catalog} is held open by {holder}: close that connection (or stop the "
                        "process) and run again; nothing was written"
                    ) from None
                if not said:
                    print(f"waiting for {layout.catalog}, held open by {holder} ...", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.2)
        try:
            catalog = cls(conn, layout)
            if not read_only:
                conn.execute(DDL)
            yield catalog
        finally:
            conn.close()

    # -- runs -------------------------------------------------------------------------------
    @staticmethod
    def new_run_id(kind: str) -> str:
        return f"{kind}-{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    def start_run(self, kind: str, *, command: str, config: dict[str, Any] | None, config_hash: str | None) -> str:
        run_id = self.new_run_id(kind)
        return self.insert_run(RunInfo(run_id, utc_now(), command, config, config_hash))

    def insert_run(self, run: RunInfo, status: str = "running", *, error: str | None = None) -> str:
        """Insert ``run``; a run recorded only when it ends gives its final ``status`` here."""
        now = utc_now()
        self.conn.execute(
            "INSERT INTO runs (run_id, kind, command, config_hash, config, status, started_at, finished_at, seconds, "
            "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run.run_id,
                run.run_id.split("-", 1)[0],
                run.command,
                run.config_hash,
                json.dumps(run.config, default=str) if run.config else None,
                status,
                run.started_at,
                None if status == "running" else now,
                None if status == "running" else (now - run.started_at).total_seconds(),
                error,
            ],
        )
        return run.run_id

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or not at all."""
        self.conn.execute("BEGIN")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._in_transaction = False

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        error: str | None = None,
        docs_in: int | None = None,
        docs_out: int | None = None,
        docs_rejected: int | None = None,
    ) -> None:
        now = utc_now()
        started: datetime = self.conn.execute("SELECT started_at FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        self.conn.execute(
            """UPDATE runs SET status = ?, error = ?, finished_at = ?, seconds = ?, docs_in = ?, docs_out = ?,
               docs_rejected = ? WHERE run_id = ?""",
            [status, error, now, (now - started).total_seconds(), docs_in, docs_out, docs_rejected, run_id],
        )

    # -- shards -----------------------------------------------------------------------------
    def register_shards(self, run_id: str | None, records: Iterable[ShardRecord]) -> None:
        now = utc_now()
        rows = [(r.path, r.stage, run_id, r.rows, r.bytes, r.checksum, now) for r in records]
        if rows:
            self.conn.executemany("INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def replace_stage(self, stage: str, run_id: str, records: Iterable[ShardRecord]) -> None:
        """Final shards and rejects belong to the latest successful build: swap them whole."""
        if not self._in_transaction:
            with self.transaction():
                return self.replace_stage(stage, run_id, records)
        self.conn.execute("DELETE FROM shards WHERE stage = ?", [stage])
        self.register_shards(run_id, records)
        return None

    def record_inputs(self, run_id: str, records: Iterable[ShardRecord]) -> None:
        """The raw shards a build read: its accounting is over these, not over raw data that
        arrived later (a crawl waiting for the next build)."""
        rows = [(run_id, r.path, r.rows, r.checksum) for r in records]
        if rows:
            self.conn.executemany("INSERT OR REPLACE INTO run_inputs VALUES (?, ?, ?, ?)", rows)

    def shard_records(self, stage: str) -> list[ShardRecord]:
        rows = self.conn.execute(
            "SELECT path, stage, rows, bytes, checksum FROM shards WHERE stage = ? ORDER BY path", [stage]
        ).fetchall()
        return [ShardRecord(*r) for r in rows]

    def shard_paths(self, stage: str) -> list[str]:
        """Absolute paths (or URLs, with ``shard_base``) of a stage's shards, in path order."""
        if self.shard_base:
            return [f"{self.shard_base}/{r.path}" for r in self.shard_records(stage)]
        return [str(self.layout.root / r.path) for r in self.shard_records(stage)]

    # -- step stats -------------------------------------------------------------------------
    def record_step_stats(self, run_id: str, rows: Iterable[StepStatRow]) -> None:
        for r in rows:
            self.conn.execute(
                "INSERT OR REPLACE INTO step_stats (run_id, step_index, step, docs_in, docs_out, bytes_in, bytes_out, "
                "seconds, drops, wall_seconds, tasks, reused_tasks) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, MAP(?::VARCHAR[], ?::BIGINT[]), ?, ?, ?)",
                [
                    run_id,
                    r.step_index,
                    r.step,
                    r.docs_in,
                    r.docs_out,
                    r.bytes_in,
                    r.bytes_out,
                    r.seconds,
                    list(r.drops),
                    list(r.drops.values()),
                    r.wall_seconds,
                    r.tasks,
                    r.reused_tasks,
                ],
            )

    # -- tables written by steps ------------------------------------------------------------
    def replace_table_from_parquet(self, table: str, paths: Sequence[Path]) -> None:
        """Load a step's side output (e.g. dedup clusters, PII findings) as a catalog table."""
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        if paths:
            self.conn.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet({_sql_list([str(p) for p in paths])})"
            )

    # -- views ------------------------------------------------------------------------------
    def refresh_views(self) -> None:
        """(Re)create the SQL views over the files the catalog lists."""
        final = self.shard_paths("final")
        raw = self.shard_paths("raw")
        rejects = self.shard_paths("rejects")
        base = _empty_select(BASE_FIELDS)
        self.conn.execute(
            "CREATE OR REPLACE VIEW documents AS "
            + (
                f"SELECT * FROM read_parquet({_sql_list(final)}, hive_partitioning = true, union_by_name = true)"
                if final
                else base.replace("WHERE false", ", NULL::VARCHAR AS bucket, NULL::VARCHAR AS split WHERE false")
            )
        )
        self.conn.execute(
            "CREATE OR REPLACE VIEW raw_documents AS "
            + (f"SELECT * FROM read_parquet({_sql_list(raw)}, union_by_name = true)" if raw else base)
        )
        self.conn.execute(
            "CREATE OR REPLACE VIEW rejects AS "
            + (
                f"SELECT * FROM read_parquet({_sql_list(rejects)}, union_by_name = true)"
                if rejects
                else _empty_select(REJECT_SCHEMA)
            )
        )
