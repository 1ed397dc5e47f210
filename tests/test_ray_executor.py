"""The same build on a local Ray cluster (2 CPUs) and on the local executor: same bytes."""

from __future__ import annotations

from pathlib import Path

import chaos_steps
import pytest
from conftest import query

from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, LengthFilter, Normalize, Split
from pipelines.steps.minhash_dedup import MinHashDedup

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(chaos_steps)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _published(root: Path) -> list[tuple]:
    return query(root, "SELECT path, stage, rows, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY 1")


def _config(root: Path, sample: Path, executor: str, *extra_steps) -> BuildConfig:
    steps = [
        Normalize(),
        LengthFilter(min_chars=20),
        ExactDedup(reduce_partitions=3),
        MinHashDedup(reduce_partitions=2),
        *extra_steps,
        Split(validation_ratio=0.1),
    ]
    return BuildConfig(
        root=root, workers=2, work_shard_mb=0.05, executor=executor, sources=[SourceSpec(sample)], steps=steps
    )


def test_ray_build_equals_local_build_byte_for_byte(tmp_path, sample_jsonl, ray_cluster):
    local = run_build(_config(tmp_path / "local", sample_jsonl, "local"), progress=False)
    on_ray = run_build(_config(tmp_path / "ray", sample_jsonl, "ray"), progress=False)
    assert len(list(local.stages[1].directory.glob("done/process-*.json"))) >= 5  # fused: no parts
    assert len(list(on_ray.stages[3].directory.glob("scan/part-*-p002.parquet"))) >= 5  # the shuffle ran
    assert len(list(on_ray.stages[4].directory.glob("edges/part-*.parquet"))) == 2  # MinHash bands as 2 tasks
    assert _published(tmp_path / "ray") == _published(tmp_path / "local")
    assert (on_ray.docs_in, on_ray.docs_out, on_ray.docs_rejected) == (
        local.docs_in,
        local.docs_out,
        local.docs_rejected,
    )


def test_killed_worker_is_retried_and_every_document_is_there_once(tmp_path, sample_jsonl, ray_cluster):
    marker = tmp_path / "killed.pid"
    chaos = chaos_steps.KillWorkerOnce(marker=str(marker), shard=2)
    result = run_build(_config(tmp_path / "ray", sample_jsonl, "ray", chaos), progress=False)
    assert marker.exists(), "the worker was never killed"
    assert result.docs_out + result.docs_rejected == result.docs_in
    root = tmp_path / "ray"
    assert query(root, "SELECT count(*) - count(DISTINCT doc_id) FROM documents") == [(0,)]
    [(docs,)] = query(root, "SELECT count(*) FROM documents")
    [(rejected,)] = query(root, "SELECT count(*) FROM rejects")
    assert docs + rejected == result.docs_in
    # the same config without a crash (marker already there) publishes the same bytes locally
    reference = run_build(_config(tmp_path / "local", sample_jsonl, "local", chaos), progress=False)
    assert reference.docs_out == result.docs_out
    assert _published(root) == _published(tmp_path / "local")
