"""Parquet shard store: where things live under a corpus root, and how shards are written.

Every write goes to a temporary name in the target directory and is renamed into place after
fsync, so a reader (or a resumed run) never sees a half-written shard.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DEFAULT_SHARD_BYTES = 128 * 1024 * 1024
DEFAULT_ROW_GROUP_BYTES = 16 * 1024 * 1024
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
# Intermediate work shards are read once by the next step: favour speed over size.
WORK_COMPRESSION = "lz4"


@dataclass(frozen=True)
class CorpusLayout:
    """Directory layout of a corpus root; the one place that knows path conventions."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> CorpusLayout:
        return cls(Path(root).resolve())

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def raw(self) -> Path:
        """Raw inputs as written by importers, crawlers and synthesis jobs."""
        return self.root / "raw"

    @property
    def work(self) -> Path:
        """Per-step intermediate outputs, keyed by the plan hash of the steps that made them."""
        return self.root / "work"

    @property
    def shards(self) -> Path:
        """Final shards, Hive-partitioned by bucket and split."""
        return self.root / "shards"

    @property
    def rejects(self) -> Path:
        """Every document a step removed, with the step and the reason."""
        return self.root / "rejects"

    @property
    def state(self) -> Path:
        """Persistent state that outlives one build (e.g. dedup signature indexes, caches)."""
        return self.root / "state"

    def raw_dir(self, kind: str, name: str) -> Path:
        return self.raw / kind / name

    def final_shard(self, bucket: str, split: str, part: int, base: Path | None = None) -> Path:
        return (base or self.shards) / f"bucket={bucket}" / f"split={split}" / f"part-{part:05d}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_table(
    table: pa.Table, path: Path, *, row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES, compression: str = COMPRESSION
) -> None:
    """Write one Parquet file atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        pq.write_table(
            table,
            tmp,
            compression=compression,
            compression_level=COMPRESSION_LEVEL if compression == "zstd" else None,
            row_group_size=rows_per_group(table, row_group_bytes),
            write_statistics=True,
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_streamed(parts: Iterable[pa.Table | pa.RecordBatch], path: Path, *, compression: str = "zstd") -> bool:
    """Stream tables/batches into one Parquet file atomically, one part in memory at a time;
    nothing is written (and False returned) when every part is empty."""
    writer: pq.ParquetWriter | None = None
    tmp = _tmp_name(path)
    try:
        for part in parts:
            if part.num_rows == 0:
                continue
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(tmp, part.schema, compression=compression)
            writer.write(part)
        if writer is None:
            return False
        writer.close()
        writer = None
        os.replace(tmp, path)
        return True
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)


def write_bytes(data: bytes, path: Path) -> None:
    """Atomic small-file write, used for done-markers and JSON state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rows_per_group(table: pa.Table, row_group_bytes: int) -> int:
    """Rows per row group so one group is about ``row_group_bytes`` uncompressed."""
    if table.num_rows == 0:
        return 1
    avg = max(1, table.nbytes // table.num_rows)
    return max(1, min(table.num_rows, row_group_bytes // avg))


def balanced_slices(table: pa.Table, max_bytes: int) -> list[pa.Table]:
    """``table`` cut into the fewest row ranges of at most about ``max_bytes`` (Arrow memory)
    each, of about equal text bytes: the work shards of one input then take similar time, so no
    worker waits behind a remainder shard (40 MB in 32 MB units: 20 + 20, not 32 + 8)."""
    n = max(1, math.ceil(table.nbytes / max(1, max_bytes)))
    if n == 1 or table.num_rows < 2:
        return [table]
    text = pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy().astype(np.int64)
    weights = np.cumsum(text + max(1, table.nbytes // table.num_rows - int(text.mean())))
    cuts = np.searchsorted(weights, weights[-1] * np.arange(1, n) / n, side="left") + 1
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < table.num_rows}), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def file_checksum(path: Path) -> str:
    """sha256 of a file's bytes: what the catalog records and audits recheck."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_mismatch(path: Path, size: int | None, checksum: str) -> tuple[str, str, str] | None:
    """Why ``path`` is not the file the catalog recorded, as (problem, expected, actual), or None.
    The size is compared first (free); ``size`` None skips it."""
    if not path.is_file():
        return "missing on disk", checksum[:16], ""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return "size differs", str(size), str(actual_size)
    actual = file_checksum(path)
    if actual != checksum:
        return "sha256 differs", checksum[:16], actual[:16]
    return None


class ShardWriter:
    """Streams tables into ``<prefix>-NNNNN.parquet`` files of about ``target_bytes`` on disk
    (work shards are cut by `balanced_slices` instead, where the unit is work, not bytes).

    Rows are buffered up to one row group (``row_group_bytes`` in memory), so memory stays
    bounded whatever the input size; a file is renamed into place only when complete. Output
    bytes are a pure function of the sequence of appended tables.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        target_bytes: int = DEFAULT_SHARD_BYTES,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        prefix: str = "part",
        compression: str = COMPRESSION,
    ) -> None:
        self.directory = directory
        self.compression = compression
        self.schema = schema
        self.target_bytes = target_bytes
        self.row_group_bytes = min(row_group_bytes, max(1, target_bytes // 2))
        self.prefix = prefix
        self.paths: list[Path] = []
        self.rows: list[int] = []
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._file_rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table.cast(self.schema))
        self._pending_bytes += table.nbytes
        if self._pending_bytes >= self.row_group_bytes:
            self._write_row_groups(final=False)

    def close(self) -> list[Path]:
        self._write_row_groups(final=True)
        self._finish_file()
        return self.paths

    def _write_row_groups(self, *, final: bool) -> None:
        if not self._pending:
            return
        merged = pa.concat_tables(self._pending)
        self._pending, self._pending_bytes = [], 0
        group_rows = rows_per_group(merged, self.row_group_bytes)
        start = 0
        while start < merged.num_rows:
            group = merged.slice(start, group_rows)
            if group.num_rows < group_rows and not final:
                self._pending, self._pending_bytes = [group], group.nbytes  # carry the tail
                return
            self._open().write_table(group, row_group_size=group.num_rows)
            self._file_rows += group.num_rows
            start += group.num_rows
            assert self._tmp is not None
            if self._tmp.stat().st_size >= self.target_bytes:
                self._finish_file()

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._tmp = _tmp_name(self.directory / f"{self.prefix}-{len(self.paths):05d}.parquet")
            self._writer = pq.ParquetWriter(
                self._tmp,
                self.schema,
                compression=self.compression,
                compression_level=COMPRESSION_LEVEL if self.compression == "zstd" else None,
            )
        return self._writer

    def _finish_file(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}.parquet"
        os.replace(self._tmp, path)
        self.paths.append(path)
        self.rows.append(self._file_rows)
        self._writer, self._tmp, self._file_rows = None, None, 0


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written staging directory into place; the old one is removed after."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file; a corrupt or truncated file raises an error naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptShardError(f"{path}: not a readable Parquet file ({exc})") from exc


class CorruptShardError(ValueError):
    """A Parquet file could not be read; the message names the file."""
