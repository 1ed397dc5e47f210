"""The DuckDB catalog at ``<root>/catalog.duckdb``: runs, shards, step stats and SQL views.

Users audit a corpus with plain SQL against this file (``python -m corpus.remote sql data
"SQL"``). Only the driver process of a job writes here, and it opens the file briefly per
operation so a crawl and a build can take turns; a build writes once, at its end.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

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
CREATE TABLE IF NOT EXISTS step_settings (
    run_id VARCHAR NOT NULL,
    step_index INTEGER NOT NULL,
    step VARCHAR NOT NULL,
    params JSON NOT NULL,
    changed JSON NOT NULL,
    thresholds JSON NOT NULL,
    PRIMARY KEY (run_id, step_index)
);
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS wall_seconds DOUBLE;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS tasks INTEGER;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS reused_tasks INTEGER;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS cpu_seconds DOUBLE;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS peak_rss_mb DOUBLE;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS rss_base_mb DOUBLE;
ALTER TABLE step_stats ADD COLUMN IF NOT EXISTS rss_mb_per_mb DOUBLE;
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
class StepSettings:
    """A step of a build as it ran: every parameter, those the config changed from the defaults,
    and the thresholds it applied (``(measure, label, value)``), for reports to read back."""

    step_index: int
    step: str
    params: dict[str, Any]
    changed: dict[str, Any]
    thresholds: list[tuple[str, str, float]]


@dataclass(frozen=True)
class StepStatRow:
    """One stage of a build. ``seconds`` is task time summed over workers (including tasks an
    earlier, interrupted run of the same plan finished: ``reused_tasks`` of ``tasks``);
    ``wall_seconds`` is the time this run spent on the stage; ``cpu_seconds`` is the CPU time of
    the processes that ran its tasks, over the tasks (a pool worker's start-up included), summed,
    and ``peak_rss_mb`` the largest of its tasks' peak RSS (the whole worker process's).
    ``rss_base_mb`` + ``rss_mb_per_mb`` x (MB of text in a shard) is the memory model the next
    build requests per task from an executor (`MemoryModel`): the smallest task's peak, and the
    largest growth over it per MB of input of any task."""

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
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rss_base_mb: float = 0.0
    rss_mb_per_mb: float = 0.0


@dataclass(frozen=True)
class MemoryModel:
    """Peak RSS of one task of a step, as measured by an earlier build: ``base_mb`` (the worker
    with the step set up) + ``per_mb`` x MB of text of the task's input, with a margin."""

    base_mb: float
    per_mb: float
    peak_mb: float

    MARGIN: ClassVar[float] = 1.25

    def request_mb(self, input_mb: float | None) -> int:
        """What to ask an executor for: the model at ``input_mb``, or the measured peak when the
        input size is not known."""
        need = self.peak_mb if input_mb is None else self.base_mb + self.per_mb * input_mb
        return math.ceil(self.MARGIN * max(need, 1.0))


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


def _ident(name: str) -> str:
    """A table or column name made by code (never by a user): checked, then quoted."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a catalog identifier: {name!r}")
    return f'"{name}"'


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a view filter takes a string or a number, got {value!r}")
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _where(equals: dict[str, Any]) -> tuple[str, list[Any]]:
    parts, params = [], []
    for key, value in equals.items():
        if isinstance(value, list | tuple):
            parts.append(f"{_ident(key)} IN (SELECT unnest(?))")
        else:
            parts.append(f"{_ident(key)} = ?")
        params.append(list(value) if isinstance(value, list | tuple) else value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _duckdb_type(t: pa.DataType) -> str:
    if t not in DUCKDB_TYPES:
        raise ValueError(f"no catalog column type for {t}")
    return DUCKDB_TYPES[t]


HIVE = re.compile(r"bucket=(?P<bucket>[^/]+)/split=(?P<split>[^/]+)/")


@dataclass(frozen=True)
class FinalShard:
    """A final shard as the catalog lists it, with its Hive partition."""

    path: Path
    bucket: str
    split: str
    rows: int
    bytes: int
    checksum: str


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

    # -- runs (their lifecycle is `Run`'s) -----------------------------------------------------
    @staticmethod
    def new_run_id(kind: str) -> str:
        return f"{kind}-{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

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

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        error: str | None = None,
        docs_in: int | None = None,
        docs_out: int | None = None,
        docs_rejected: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        """Close a run; ``config`` keys are merged into its recorded config (e.g. why it ended)."""
        now = utc_now()
        started: datetime = self.conn.execute("SELECT started_at FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        self.conn.execute(
            """UPDATE runs SET status = ?, error = ?, finished_at = ?, seconds = ?, docs_in = ?, docs_out = ?,
               docs_rejected = ? WHERE run_id = ?""",
            [status, error, now, (now - started).total_seconds(), docs_in, docs_out, docs_rejected, run_id],
        )
        if config:
            self.conn.execute(
                "UPDATE runs SET config = json_merge_patch(coalesce(config, '{}'), ?) WHERE run_id = ?",
                [json.dumps(config, default=str), run_id],
            )

    def mark_interrupted(self, kind: str, match: dict[str, str], error: str) -> None:
        """Runs of ``kind`` still 'running' (whose config has the ``match`` values) were killed."""
        sql = "UPDATE runs SET status = 'interrupted', error = ? WHERE kind = ? AND status = 'running'"
        params: list[Any] = [error, kind]
        for key, value in match.items():
            sql += f" AND json_extract_string(config, '$.{_ident(key)}') = ?"
            params.append(value)
        self.conn.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or not at all."""
        if self._in_transaction:
            yield
            return
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

    # -- shards -----------------------------------------------------------------------------
    def register_shards(self, run_id: str | None, records: Iterable[ShardRecord]) -> None:
        now = utc_now()
        rows = [(r.path, r.stage, run_id, r.rows, r.bytes, r.checksum, now) for r in records]
        if rows:
            self.conn.executemany("INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def replace_stage(self, stage: str, run_id: str, records: Iterable[ShardRecord]) -> None:
        """Final shards and rejects belong to the latest successful build: swap them whole."""
        with self.transaction():
            self.conn.execute("DELETE FROM shards WHERE stage = ?", [stage])
            self.register_shards(run_id, records)

    def replace_raw(self, prefix: str, run_id: str, records: Iterable[ShardRecord]) -> None:
        """A job's raw output under ``prefix`` (relative to the root) is now ``records``, whole."""
        with self.transaction():
            self.conn.execute("DELETE FROM shards WHERE stage = 'raw' AND starts_with(path, ?)", [prefix])
            self.register_shards(run_id, records)

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
                "seconds, drops, wall_seconds, tasks, reused_tasks, cpu_seconds, peak_rss_mb, rss_base_mb, "
                "rss_mb_per_mb) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, MAP(?::VARCHAR[], ?::BIGINT[]), ?, ?, ?, ?, ?, ?, ?)",
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
                    r.cpu_seconds,
                    r.peak_rss_mb,
                    r.rss_base_mb,
                    r.rss_mb_per_mb,
                ],
            )

    def memory_models(self) -> dict[str, MemoryModel]:
        """Per step name, the memory model measured by the latest succeeded build that ran it
        (what the next build's tasks request from the executor)."""
        rows = self.conn.execute(
            "SELECT s.step, s.rss_base_mb, s.rss_mb_per_mb, s.peak_rss_mb FROM step_stats s "
            "JOIN runs r USING (run_id) WHERE r.status = 'succeeded' AND s.peak_rss_mb > 0 "
            "QUALIFY row_number() OVER (PARTITION BY s.step ORDER BY r.started_at DESC, s.step_index DESC) = 1"
        ).fetchall()
        return {step: MemoryModel(base or 0.0, per_mb or 0.0, peak) for step, base, per_mb, peak in rows}

    def record_step_settings(self, run_id: str, rows: Iterable[StepSettings]) -> None:
        for r in rows:
            self.conn.execute(
                "INSERT OR REPLACE INTO step_settings VALUES (?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    r.step_index,
                    r.step,
                    json.dumps(r.params, default=str),
                    json.dumps(r.changed, default=str),
                    json.dumps([list(t) for t in r.thresholds]),
                ],
            )

    def step_settings(self, run_id: str) -> list[StepSettings]:
        rows = self.conn.execute(
            "SELECT step_index, step, params, changed, thresholds FROM step_settings WHERE run_id = ? "
            "ORDER BY step_index",
            [run_id],
        ).fetchall()
        return [
            StepSettings(i, step, json.loads(p), json.loads(c), [tuple(t) for t in json.loads(t)])
            for i, step, p, c, t in rows
        ]

    # -- tables of steps and jobs ------------------------------------------------------------
    def register_table(self, table: str, paths: Sequence[Path]) -> None:
        """(Re)create catalog table ``table`` from Parquet files (a step's side table: dedup clusters,
        PII findings); no files: no table."""
        self.conn.execute(f"DROP TABLE IF EXISTS {_ident(table)}")
        if paths:
            self.conn.execute(
                f"CREATE TABLE {_ident(table)} AS SELECT * FROM read_parquet({_sql_list([str(p) for p in paths])})"
            )

    def ensure_table(self, table: str, schema: pa.Schema, *, key: Sequence[str] = ()) -> None:
        """Create a job's own table (columns from an Arrow schema; non-nullable fields NOT NULL)."""
        cols = [f"{_ident(f.name)} {_duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema]
        if key:
            cols.append(f"PRIMARY KEY ({', '.join(map(_ident, key))})")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {_ident(table)} ({', '.join(cols)})")

    def table_kind(self, name: str) -> str | None:
        """'table', 'view', or None when the catalog has no relation ``name``."""
        row = self.conn.execute(
            "SELECT max(table_type) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()
        return {"BASE TABLE": "table", "VIEW": "view"}.get(row[0] if row else None)

    def append_rows(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str] | None = None) -> None:
        """Insert ``rows`` (tuples in ``columns`` order, or the table's column order)."""
        if not rows:
            return
        width = len(columns) if columns is not None else len(rows[0])
        names = f" ({', '.join(map(_ident, columns))})" if columns is not None else ""
        self.conn.executemany(f"INSERT INTO {_ident(table)}{names} VALUES ({', '.join('?' * width)})", list(rows))

    def delete_rows(self, table: str, **equals: Any) -> None:
        where, params = _where(equals)
        self.conn.execute(f"DELETE FROM {_ident(table)}{where}", params)

    def rows(self, table: str, columns: Sequence[str], **where: Any) -> list[tuple[Any, ...]]:
        """``columns`` of ``table`` where each keyword column equals its value (a list: is one of)."""
        clause, params = _where(where)
        return self.conn.execute(
            f"SELECT {', '.join(map(_ident, columns))} FROM {_ident(table)}{clause}", params
        ).fetchall()

    def move_rows(self, source: str, target: str, columns: Sequence[str], constants: dict[str, Any]) -> None:
        """Append every row of table ``source`` to ``target`` (``columns`` copied, ``constants`` set),
        then drop ``source``: a table folded into a newer one."""
        with self.transaction():
            names = [*columns, *constants]
            values = [*map(_ident, columns), *("?" for _ in constants)]
            self.conn.execute(
                f"INSERT INTO {_ident(target)} ({', '.join(map(_ident, names))}) "
                f"SELECT {', '.join(values)} FROM {_ident(source)}",
                list(constants.values()),
            )
            self.conn.execute(f"DROP TABLE {_ident(source)}")

    def define_view(self, name: str, table: str, columns: Sequence[str], **where: Any) -> None:
        """A view of ``columns`` of ``table`` where each keyword column equals its (literal) value."""
        clause = " AND ".join(f"{_ident(k)} = {_literal(v)}" for k, v in where.items())
        self.conn.execute(
            f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT {', '.join(map(_ident, columns))} FROM {_ident(table)}"
            + (f" WHERE {clause}" if clause else "")
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A reader's own SQL over the catalog (e.g. a seed selection): column names and rows."""
        cur = self.conn.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()

    # -- what a trainer reads ----------------------------------------------------------------
    def final_shards(self, *, split: str | None = None, buckets: Sequence[str] | None = None) -> list[FinalShard]:
        """The latest build's final shards (of ``split``, in ``buckets``), in path order."""
        out = []
        for r in self.shard_records("final"):
            found = HIVE.search(r.path)
            if found is None:
                continue
            bucket, part_split = found["bucket"], found["split"]
            if (split is None or part_split == split) and (buckets is None or bucket in buckets):
                out.append(FinalShard(self.layout.root / r.path, bucket, part_split, r.rows, r.bytes, r.checksum))
        return out

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


# -- the run lifecycle: every job (build, crawl, synthesis) is a row of ``runs`` -------------------
class Run:
    """A job's row in ``runs``, from start to finish; its writes go through `Run.catalog`.

    A deferred run (a build) is written only with its first catalog visit, so a job that reads
    the catalog at the start and writes it once at the end holds no lock in between."""

    def __init__(self, layout: CorpusLayout, info: RunInfo, *, recorded: bool, hint: str = "") -> None:
        self.layout = layout
        self.info = info
        self.recorded = recorded
        self.hint = hint  # appended to a recorded error: what a rerun does
        self.finished = False
        self._resumes: dict[str, str] | None = None

    @property
    def run_id(self) -> str:
        return self.info.run_id

    @classmethod
    def start(
        cls,
        layout: CorpusLayout,
        kind: str,
        *,
        command: str,
        config: dict[str, Any] | None = None,
        config_hash: str | None = None,
        resumes: dict[str, str] | None = None,
        defer: bool = False,
        hint: str = "",
    ) -> Run:
        """Start a run; ``resumes``: earlier runs of ``kind`` still 'running' with these config
        values were killed, and are marked interrupted (this run takes over their work)."""
        info = RunInfo(Catalog.new_run_id(kind), utc_now(), command, config, config_hash)
        run = cls(layout, info, recorded=False, hint=hint)
        run._resumes = resumes
        if not defer:
            with run.catalog():
                pass
        return run

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        """One write visit for this run, as a transaction (a deferred run's row is inserted first)."""
        with Catalog.open(self.layout) as cat, cat.transaction():
            if not self.recorded:
                if self._resumes is not None:
                    error = "ended without finishing (killed?); resumed by a later run"
                    cat.mark_interrupted(self.info.run_id.split("-", 1)[0], self._resumes, error)
                cat.insert_run(self.info)
            yield cat
        self.recorded = True

    def finish(
        self,
        status: str = "succeeded",
        *,
        error: str | None = None,
        docs_in: int | None = None,
        docs_out: int | None = None,
        docs_rejected: int | None = None,
        config: dict[str, Any] | None = None,
        cat: Catalog | None = None,
    ) -> None:
        """Close the run (in ``cat``'s visit when given, so it commits with the run's last writes)."""
        counts = {"docs_in": docs_in, "docs_out": docs_out, "docs_rejected": docs_rejected}
        if cat is not None:
            cat.finish_run(self.run_id, status=status, error=error, config=config, **counts)
        else:
            with self.catalog() as visit:
                visit.finish_run(self.run_id, status=status, error=error, config=config, **counts)
        self.finished = True

    def fail(self, exc: BaseException) -> None:
        """Record why the job stopped: interrupted (Ctrl-C, cancelled) or failed; a catalog held by
        another process is said on stderr instead (the job's own error matters more)."""
        if isinstance(exc, CatalogLockedError):
            return  # its message says it all, and the catalog is still held
        status = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "CancelledError" else "failed"
        )
        error = f"{type(exc).__name__}: {exc}" + (f" ({self.hint})" if self.hint else "")
        try:
            self.finish(status, error=error)
        except CatalogLockedError as locked:
            print(f"warning: the {status} run is not recorded in the catalog: {locked}", file=sys.stderr)


@contextmanager
def run(layout: CorpusLayout, kind: str, **start: Any) -> Iterator[Run]:
    """``with catalog.run(layout, "build", command=..., config=...) as run:`` the job; the run is
    recorded succeeded when the block ends (unless it finished itself), failed or interrupted
    when it raises (the error re-raised). Keywords: those of `Run.start`."""
    job = Run.start(layout, kind, **start)
    try:
        yield job
    except BaseException as exc:
        if not job.finished:
            job.fail(exc)
        raise
    if not job.finished:
        job.finish()
