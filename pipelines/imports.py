"""Importing user files (JSONL, Parquet) into the raw store as schema-conformant shards.

An import is keyed by the file's checksum, so importing the same file twice is a no-op, and it
is written to a staging directory renamed into place at the end, so a crash leaves nothing.
Every error names the file and, for JSONL, the line.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.catalog import ShardRecord
from corpus.schema import BASE_COLUMNS, BASE_SCHEMA, conform, encode_meta, make_doc_id
from corpus.store import DEFAULT_SHARD_BYTES, CorpusLayout, ShardWriter, file_checksum, write_bytes

BATCH_ROWS = 5000
SUCCESS = "_SUCCESS"


class InputError(ValueError):
    """An input file or record is unusable; the message names the file and the record."""


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "input"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".parquet"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _parse_time(value: Any, where: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: 'created_at' is not an ISO-8601 timestamp: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InputError(f"{where}: 'created_at' must be an ISO-8601 string, got {type(value).__name__}")


def to_row(record: dict[str, Any], default_source: str, where: str) -> dict[str, Any]:
    """Map one input record onto the base schema; unknown fields are kept in ``meta``."""
    if "text" not in record:
        raise InputError(f"{where}: record has no 'text' field (fields: {', '.join(sorted(record)) or 'none'})")
    text = record["text"]
    if text is None:  # the rule: no value is an empty document (rejected as empty_text), a non-string an error
        text = ""
    if not isinstance(text, str):
        raise InputError(f"{where}: 'text' must be a string or null, got {type(text).__name__} {text!r:.40}")
    meta = record.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise InputError(f"{where}: 'meta' is a string but not JSON") from None
    meta = dict(meta or {})
    meta.update({k: v for k, v in record.items() if k not in BASE_COLUMNS})
    source = record.get("source") or default_source
    url = record.get("url")
    return {
        "doc_id": record.get("doc_id") or make_doc_id(source, url, text),
        "source": source,
        "url": url,
        "title": record.get("title"),
        "text": text,
        "lang": record.get("lang"),
        "created_at": _parse_time(record.get("created_at"), where),
        "meta": encode_meta(meta) if meta else None,
    }


def _jsonl_records(path: Path, default_source: str) -> Iterator[list[dict[str, Any]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    batch: list[dict[str, Any]] = []
    with opener(path, "rb") as fh:
        for lineno, raw in _lines(fh, path):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: invalid UTF-8 at byte {exc.start} of the line") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
            batch.append(to_row(record, default_source, where))
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
    if batch:
        yield batch


def _lines(fh: Any, path: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered lines; a cut-off or damaged ``.gz`` stream is an error naming the file and line."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, start=1):
            yield lineno, raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{path}: truncated or corrupt gzip data after line {lineno} ({exc})") from None


def _parquet_records(path: Path, default_source: str) -> Iterator[list[dict[str, Any]]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if "text" not in pf.schema_arrow.names:
        raise InputError(f"{path}: no 'text' column (columns: {', '.join(pf.schema_arrow.names)})")
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            rows = batch.to_pylist()
            yield [to_row(r, default_source, f"{path}: row {offset + i}") for i, r in enumerate(rows)]
            offset += len(rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: corrupt Parquet data after row {offset} ({exc})") from None


def read_records(path: Path, default_source: str) -> Iterator[list[dict[str, Any]]]:
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return _jsonl_records(path, default_source)
    if name.endswith(".parquet"):
        return _parquet_records(path, default_source)
    raise InputError(f"{path}: unsupported input format (use .jsonl, .jsonl.gz or .parquet)")


def import_file(
    path: Path, layout: CorpusLayout, *, source: str | None = None, shard_bytes: int = DEFAULT_SHARD_BYTES
) -> list[ShardRecord]:
    """Import one file into ``raw/import/<stem>-<checksum>/``; returns the shards written (or
    already there from an earlier import of the same bytes)."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the input files themselves (e.g. {path}/*.jsonl)")
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    default_source = source or f"import:{slug(_stem(path))}"
    digest = file_checksum(path)[:16]
    dest = layout.raw_dir("import", f"{slug(_stem(path))}-{digest}")
    if (dest / SUCCESS).exists():
        return _existing(dest, layout.root)
    staging = dest.with_name(f".{dest.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    writer = ShardWriter(staging, BASE_SCHEMA, target_bytes=shard_bytes)
    rows = 0
    try:
        for batch in read_records(path, default_source):
            table = conform(pa.Table.from_pylist(batch), BASE_SCHEMA, origin=str(path))
            writer.write(table)
            rows += table.num_rows
        writer.close()
        if rows == 0:
            raise InputError(f"{path}: no records")
        write_bytes(
            json.dumps({"input": str(path), "rows": rows, "source": default_source}).encode(), staging / SUCCESS
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _existing(dest, layout.root)


def _existing(dest: Path, root: Path) -> list[ShardRecord]:
    return [ShardRecord.of(p, "raw", pq.ParquetFile(p).metadata.num_rows, root) for p in sorted(dest.glob("*.parquet"))]
