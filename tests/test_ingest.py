"""Ingest as executor tasks (`pipelines.ingest`): repeats of an identical record get derived ids
in (raw shard, row) order, empty texts are rejected, and the output does not depend on the
number of partitions of the repeats reduce."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import query, write_jsonl

import pipelines.ingest
from corpus.schema import make_doc_id, occurrence_id
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import Normalize

LEASE = "The tenant shall keep the premises in good and substantial repair for the whole term."
SALE = "The seller warrants that the goods conform to the contract description and sample."
LOAN = "The borrower shall repay the principal with interest in twelve equal monthly instalments."


def _record(text: str) -> dict:
    return {"text": text, "source": "legal", "url": "https://example.test/doc"}


def _build(root: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, partitions: int) -> dict[str, list[str]]:
    first = write_jsonl(tmp / "a.jsonl", [_record(LEASE), _record(LEASE), _record("   "), _record(SALE)])
    second = write_jsonl(tmp / "b.jsonl", [_record(LEASE), _record(LOAN), _record(SALE)])
    monkeypatch.setattr(pipelines.ingest, "partitions_for", lambda shards: partitions)
    cfg = BuildConfig(root=root, workers=1, sources=[SourceSpec(first), SourceSpec(second)], steps=[Normalize()])
    run_build(cfg, progress=False)
    ids: dict[str, list[str]] = {}  # text -> doc_ids in corpus order (final shards keep the work order)
    for (path,) in query(root, "SELECT path FROM shards WHERE stage = 'final' ORDER BY path"):
        table = pq.read_table(root / path, columns=["text", "doc_id"])
        for text, doc_id in zip(table.column("text").to_pylist(), table.column("doc_id").to_pylist(), strict=True):
            ids.setdefault(text, []).append(doc_id)
    return ids


def test_repeats_get_derived_ids_in_order_and_empty_texts_are_rejected(tmp_path, monkeypatch):
    ids = _build(tmp_path / "data", tmp_path, monkeypatch, partitions=3)
    lease = make_doc_id("legal", "https://example.test/doc", LEASE)
    sale = make_doc_id("legal", "https://example.test/doc", SALE)
    assert ids[LEASE] == [lease, occurrence_id(lease, 1), occurrence_id(lease, 2)]  # a.jsonl twice, then b.jsonl
    assert ids[SALE] == [sale, occurrence_id(sale, 1)]
    assert len(ids[LOAN]) == 1
    all_ids = [i for v in ids.values() for i in v]
    assert len(set(all_ids)) == len(all_ids) == 6
    assert query(tmp_path / "data", "SELECT step, reason, count(*) FROM rejects GROUP BY ALL") == [
        ("ingest", "empty_text", 1)
    ]
    stats = query(tmp_path / "data", "SELECT docs_in, docs_out FROM step_stats WHERE step = 'ingest'")
    assert stats == [(7, 6)]


def test_the_output_does_not_depend_on_the_partitions_of_the_repeats_reduce(tmp_path, monkeypatch):
    one = _build(tmp_path / "one", tmp_path, monkeypatch, partitions=1)
    many = _build(tmp_path / "many", tmp_path, monkeypatch, partitions=4)
    assert one == many
    checksums = "SELECT path, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY path"
    assert query(tmp_path / "one", checksums) == query(tmp_path / "many", checksums)
