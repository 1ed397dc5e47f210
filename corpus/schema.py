"""The document row every corpusforge stage reads and writes.

One Arrow schema, versioned. The base fields are fixed; pipeline steps add columns by declaring
them (``Step.adds``) and `document_schema` appends those declarations in step order, so the
schema of final shards is a pure function of the configured steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import xxhash

SCHEMA_VERSION = 1

BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("lang", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("meta", pa.large_string()),
)
BASE_SCHEMA = pa.schema(BASE_FIELDS, metadata={"corpusforge.schema_version": str(SCHEMA_VERSION)})
BASE_COLUMNS: tuple[str, ...] = tuple(f.name for f in BASE_FIELDS)

# Columns of a reject row: which document, which step removed it and why.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("url", pa.string()),
        pa.field("step", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("dup_of", pa.string()),
        pa.field("detail", pa.large_string()),
        pa.field("text", pa.large_string()),
    ],
    metadata={"corpusforge.schema_version": str(SCHEMA_VERSION)},
)


class SchemaError(ValueError):
    """A table does not fit the document schema; the message names the column and the cause."""


def document_schema(added: Iterable[pa.Field] = ()) -> pa.Schema:
    """Base schema plus the columns steps declare, in order; a clash with a base or an earlier
    added column is an error, so two steps can never silently overwrite each other's output."""
    fields = list(BASE_FIELDS)
    seen = set(BASE_COLUMNS)
    for field in added:
        if field.name in seen:
            raise SchemaError(f"column {field.name!r} is declared twice")
        seen.add(field.name)
        fields.append(field)
    return pa.schema(fields, metadata=BASE_SCHEMA.metadata)


def conform(table: pa.Table, schema: pa.Schema, *, origin: str) -> pa.Table:
    """Cast ``table`` to ``schema``: missing nullable columns become nulls, extra columns are
    dropped, a missing required column is an error naming ``origin`` (a file or step)."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"{origin}: column {field.name!r} has type {column.type}, expected {field.type}: {exc}"
                ) from exc
            if not field.nullable and column.null_count:
                raise SchemaError(f"{origin}: column {field.name!r} has {column.null_count} null values")
        elif field.nullable:
            column = pa.nulls(table.num_rows, field.type)
        else:
            raise SchemaError(f"{origin}: required column {field.name!r} is missing")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def make_doc_id(source: str, url: str | None, text: str) -> str:
    """Content-derived id: the same record always gets the same id, on any machine.

    128-bit xxh3 over source, url and text; records that are identical in all three are
    disambiguated at ingest (see `pipelines.ingest`), so ids are unique within a corpus.
    """
    h = xxhash.xxh3_128()
    h.update(source.encode())
    h.update(b"\x00")
    h.update((url or "").encode())
    h.update(b"\x00")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def occurrence_id(doc_id: str, occurrence: int) -> str:
    """Id of the n-th (n >= 1) repeat of an identical record: derived from the first id."""
    return xxhash.xxh3_128_hexdigest(f"{doc_id}#{occurrence}".encode())


def encode_meta(meta: Mapping[str, Any] | None) -> str | None:
    """Meta is stored as canonical JSON text so DuckDB's json functions can query it."""
    if meta is None:
        return None
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)


def utc_now() -> datetime:
    return datetime.now(UTC)
