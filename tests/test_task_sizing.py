"""Work sized by cost: light map steps fused into one task per shard, heavy steps' shards re-split
into row ranges; either way the published bytes, rejects and per-step stats are those of the plain
plan (one task per step and shard), and a resumed build makes the same plan."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import SAMPLE, query

from pipelines import runner, tasks
from pipelines.config import BuildConfig, SourceSpec
from pipelines.pii.scrub import RejectsPolicy
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, LengthFilter, Normalize, Split
from pipelines.steps.pii_redact import PiiRedact

STEPS = [Normalize(), LengthFilter(min_chars=50), ExactDedup(), PiiRedact(ner_languages=[]), Split()]


def _build(root: Path) -> runner.BuildResult:
    cfg = BuildConfig(root=root, workers=1, work_shard_mb=0.1, sources=[SourceSpec(SAMPLE)], steps=list(STEPS))
    return run_build(cfg, progress=False)


def _published(root: Path) -> list[tuple]:
    return query(root, "SELECT path, rows, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY 1")


def _stats(root: Path) -> list[tuple]:
    return query(root, "SELECT step, docs_in, docs_out, bytes_in, bytes_out, drops FROM step_stats ORDER BY 1, 2")


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of ~20 KB, so the sample's 0.1 MB shards of a heavy step split in several tasks."""
    monkeypatch.setattr(tasks, "HEAVY_MIN_PIECE_MB", 0.02)


def test_fused_and_split_plan_publishes_what_the_plain_plan_does(tmp_path, monkeypatch, small_pieces):
    sized = _build(tmp_path / "sized")
    normalize, length, _, pii, _ = sized.stages[1:]
    shards = len(list(normalize.directory.glob("done/process-*.json")))
    assert shards >= 4
    assert not list(normalize.directory.glob("part-*.parquet")), "normalize ran fused with length_filter"
    assert len(list(length.directory.glob("part-*.parquet"))) == shards
    assert len(list(normalize.directory.glob("rejects-*.parquet"))) == shards  # each step keeps its rejects
    pieces = pii.stats.tasks
    assert pieces > len(list(sized.stages[3].directory.glob("part-*.parquet")))  # re-split
    assert all(s.stats.cpu_seconds > 0 and s.stats.peak_rss_mb > 0 for s in sized.stages)

    monkeypatch.setattr(runner, "fuse_light_steps", lambda planned: [[p] for p in planned])
    monkeypatch.setattr(tasks, "is_heavy", lambda step: False)
    plain = _build(tmp_path / "plain")
    assert plain.stages[4].stats.tasks < pieces
    assert _published(tmp_path / "sized") == _published(tmp_path / "plain")
    assert _stats(tmp_path / "sized") == _stats(tmp_path / "plain")


def test_a_resumed_build_redoes_only_unfinished_pieces_and_fused_tasks(tmp_path, small_pieces):
    root = tmp_path / "data"
    first = _build(root)
    reference = _published(root)
    length, pii = first.stages[2].stage, first.stages[4].stage
    # as if killed: two fused tasks lost their last step's marker (normalize's are there), and
    # half of the heavy step's pieces never finished
    for k in (0, 2):
        length.marker("process", k).unlink()
    pii_markers = sorted((pii.path / "done").glob("process-*.json"))
    for marker in pii_markers[::2]:
        marker.unlink()
    again = _build(root)
    assert _published(root) == reference
    assert again.stages[4].stats.tasks == len(pii_markers)
    assert again.stages[4].stats.reused_tasks == len(pii_markers) - len(pii_markers[::2])
    assert again.stages[1].stats.reused_tasks == again.stages[1].stats.tasks - 2


def test_pieces_cover_every_row_once_in_order(tmp_path, small_pieces):
    import polars as pl

    path = tmp_path / "part.parquet"
    texts = [f"{i:04d}" + "x" * 96 for i in range(1000)]  # distinct: the footer's size is the text's
    pl.DataFrame({"doc_id": [str(i) for i in range(1000)], "text": texts}).write_parquet(path)
    plan = tasks.plan_pieces([path, path], cost_per_mb=5.0)
    # 0.1 MB of text each, 0.2 MB in all: HEAVY_MIN_TASKS (8) pieces of 25 KB, 4 per file
    assert len(plan) == 8 and all(p == path for p, _, _ in plan)
    ranges = [r for _, r, _ in plan[:4]]
    assert abs(sum(mb for _, _, mb in plan) - 2 * tasks.text_mb(path)) < 1e-9
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert tasks.piece_mb(5.0, 400.0) == 2.0 and tasks.piece_mb(0.35, 40.0) == 5.0 and tasks.piece_mb(5.0, 2.0) == 0.25


def test_tasks_request_the_memory_the_last_build_measured(tmp_path):
    from corpus.catalog import Catalog
    from corpus.schema import document_schema
    from corpus.store import CorpusLayout

    root = tmp_path / "data"
    first = _build(root)
    with Catalog.open(CorpusLayout.at(root), read_only=True) as cat:
        models = cat.memory_models()
    assert {"ingest", "normalize", "length_filter", "exact_dedup", "pii_redact", "split"} <= set(models)
    pii = models["pii_redact"]
    assert 30 < pii.base_mb <= pii.peak_mb and pii.per_mb >= 0
    [(base, per_mb)] = query(root, "SELECT rss_base_mb, rss_mb_per_mb FROM step_stats WHERE step = 'pii_redact'")
    assert (base, per_mb) == (pii.base_mb, pii.per_mb)

    step = PiiRedact(ner_languages=[])
    inputs = first.stages[3].stage.parts()
    schema = document_schema(step.adds)
    [phase] = tasks.step_phases(step, first.stages[4].stage, inputs, schema, root, RejectsPolicy(), "pii", memory=pii)
    for task in phase.tasks:
        mb = tasks.text_mb(task.input_path)
        assert task.resources.memory_mb == pii.request_mb(mb) >= 1.25 * pii.base_mb
    [declared] = tasks.step_phases(step, first.stages[4].stage, inputs, schema, root, RejectsPolicy(), "pii")
    assert {t.resources.memory_mb for t in declared.tasks} == {step.resources.memory_mb}


def test_a_stage_that_ran_fused_is_recomputed_when_a_changed_plan_reads_its_parts(tmp_path):
    """``normalize`` ran fused before ``length_filter`` (no parts of its own); a second build on the
    same root puts a global step right after it, which reads normalize's parts: they are made, not
    taken as an empty stage (the ablation's `+dedup` recipe once failed accounting with 0 out)."""
    root = tmp_path / "data"

    def build(steps: list) -> runner.BuildResult:
        cfg = BuildConfig(root=root, workers=1, work_shard_mb=0.1, sources=[SourceSpec(SAMPLE)], steps=steps)
        return run_build(cfg, progress=False)

    first = build([Normalize(), LengthFilter(min_chars=50)])
    second = build([Normalize(), ExactDedup()])
    fresh = run_build(
        BuildConfig(
            root=tmp_path / "fresh",
            workers=1,
            work_shard_mb=0.1,
            sources=[SourceSpec(SAMPLE)],
            steps=[Normalize(), ExactDedup()],
        ),
        progress=False,
    )
    assert first.docs_out > 0 and second.docs_out == fresh.docs_out > 0
    assert second.docs_out + second.docs_rejected == second.docs_in
