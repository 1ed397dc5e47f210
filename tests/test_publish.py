"""Publish as executor tasks (`pipelines.publish`): a partition larger than one shard is written
by several tasks, the catalog's rows, sizes and checksums are those of the files on disk, and the
bytes do not depend on the number of workers."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from conftest import query

from corpus.store import file_checksum
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, Normalize, Split

CATALOGED = "SELECT path, stage, rows, bytes, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY path"


def _build(root: Path, sample: Path, workers: int) -> list[tuple]:
    cfg = BuildConfig(
        root=root,
        workers=workers,
        shard_mb=0.1,  # ~0.5 MB of text: several write groups per partition
        work_shard_mb=0.1,
        sources=[SourceSpec(sample)],
        steps=[Normalize(), ExactDedup(), Split(validation_ratio=0.1)],
    )
    result = run_build(cfg, progress=False)
    assert result.docs_out + result.docs_rejected == result.docs_in
    return query(root, CATALOGED)


def test_large_partitions_are_written_by_several_tasks_with_the_same_bytes_for_any_workers(tmp_path, sample_jsonl):
    one = _build(tmp_path / "one", sample_jsonl, workers=1)
    two = _build(tmp_path / "two", sample_jsonl, workers=2)
    assert one == two
    train = sorted(Path(p).name for p, stage, *_ in one if stage == "final" and "split=train" in p)
    assert len({name.split("-")[1] for name in train}) > 1, train  # more than one write group
    for path, _, rows, size, checksum in one:
        file = tmp_path / "one" / path
        assert (pq.ParquetFile(file).metadata.num_rows, file.stat().st_size, file_checksum(file)) == (
            rows,
            size,
            checksum,
        )
    docs = query(tmp_path / "one", "SELECT doc_id FROM documents")
    assert len(docs) == len(set(docs)) == sum(r for p, s, r, *_ in one if s == "final")
