from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.schema import BASE_SCHEMA, SchemaError, conform, document_schema, make_doc_id
from corpus.store import ShardWriter, balanced_slices, write_table


def test_doc_id_is_content_derived_and_stable():
    a = make_doc_id("import:x", "http://a", "some text")
    assert a == make_doc_id("import:x", "http://a", "some text")
    assert a != make_doc_id("import:x", "http://a", "some text!")
    assert a != make_doc_id("import:y", "http://a", "some text")
    assert len(a) == 32 and int(a, 16) >= 0
    assert a == "cc36a9d25d03411bfda850a181657775"  # pinned: ids must not change across versions/machines


def test_steps_declare_added_columns_and_clashes_are_errors():
    schema = document_schema([pa.field("split", pa.string()), pa.field("quality_score", pa.float64())])
    assert schema.names[-2:] == ["split", "quality_score"]
    assert schema.metadata == BASE_SCHEMA.metadata
    with pytest.raises(SchemaError, match="'text' is declared twice"):
        document_schema([pa.field("text", pa.string())])


def test_conform_names_origin_and_column():
    table = pa.table({"doc_id": ["a"], "source": ["s"]})
    with pytest.raises(SchemaError, match=r"in\.parquet: required column 'text' is missing"):
        conform(table, BASE_SCHEMA, origin="in.parquet")
    ok = conform(pa.table({"doc_id": ["a"], "source": ["s"], "text": ["t"], "junk": [1]}), BASE_SCHEMA, origin="x")
    assert ok.schema.names == BASE_SCHEMA.names and ok.column("url").null_count == 1


def test_shard_writer_rotates_by_size_and_keeps_order(tmp_path):
    schema = pa.schema([pa.field("i", pa.int64()), pa.field("text", pa.large_string())])
    writer = ShardWriter(tmp_path, schema, target_bytes=60_000, row_group_bytes=20_000)
    for start in range(0, 4000, 100):
        # hex digests compress poorly, so the file size tracks the data
        texts = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in range(start, start + 100)]
        writer.write(pa.table({"i": list(range(start, start + 100)), "text": texts}, schema=schema))
    paths = writer.close()
    assert len(paths) > 1
    assert [p.name for p in paths] == [f"part-{k:05d}.parquet" for k in range(len(paths))]
    assert all(p.stat().st_size < 120_000 for p in paths)
    rows = pa.concat_tables([pq.read_table(p) for p in paths]).column("i").to_pylist()
    assert rows == list(range(4000)) and sum(writer.rows) == 4000
    assert pq.ParquetFile(paths[0]).metadata.num_row_groups > 1
    assert pq.ParquetFile(paths[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    assert not list(tmp_path.glob(".*tmp*"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"

    def crash_midway(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        write_table(pa.table({"a": [1]}), target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("limit", "pieces"), [(10**9, 1), (420_000, 2), (260_000, 3)])
def test_balanced_slices_are_few_equal_and_in_order(limit: int, pieces: int) -> None:
    texts = [("x" * (50 + (i * 37) % 400)) for i in range(2_000)]  # ~500 KB of uneven rows
    table = pa.table({"doc_id": [str(i) for i in range(2_000)], "text": texts})
    out = balanced_slices(table, limit)
    assert len(out) == pieces
    assert pa.concat_tables(out).equals(table)  # every row once, in order
    sizes = [t.nbytes for t in out]
    assert max(sizes) <= limit and max(sizes) - min(sizes) < 0.02 * table.nbytes
