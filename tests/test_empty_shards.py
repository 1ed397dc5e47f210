"""Shards that earlier steps emptied and reduce partitions that receive nothing: every step, global or
not, must go through them (the MinHash merge once crashed on `gens[0]` of an empty group)."""

from __future__ import annotations

import shutil

import pytest
from conftest import SAMPLE, query, run_cli, write_config, write_jsonl
from crawl_support import crawl

from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import REGISTRY, LengthFilter

GOOD = [
    "The tenant shall keep the premises in good and substantial repair for the whole of the term.",
    "The seller warrants that the goods conform to the contract description and to the sample shown.",
]
# parameters that make a global step spread its reduce over more partitions than there are documents
PARTITIONED = {"exact_dedup": {"reduce_partitions": 4}, "minhash_dedup": {"reduce_partitions": 4}}
LIGHT_STEPS = [
    "normalize",
    {"length_filter": {"min_chars": 50}},
    "exact_dedup",
    {"minhash_dedup": {"reduce_partitions": 2}},
]


def _params(name: str, tmp_path) -> dict:
    """The step's parameters for the test: a required evaluation set for ``decontaminate``."""
    if name == "decontaminate":
        item = {"question": "Which court hears appeals from the district courts of the ninth circuit in the west?"}
        return {"eval_sets": [str(write_jsonl(tmp_path / "eval.jsonl", [item]))]}
    return PARTITIONED.get(name, {})


def _short_docs(n: int) -> list[dict]:
    return [{"text": f"too short {i}", "url": f"s{i}"} for i in range(n)]


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("scenario", ["some_shards_emptied", "everything_removed"])
def test_every_step_handles_emptied_shards_and_empty_partitions(tmp_path, name, scenario):
    """``length_filter`` empties every shard of one source (the tiny work shards make several);
    the step under test then sees 0-row shards, and a global step partitions that receive nothing."""
    sources = [write_jsonl(tmp_path / "short.jsonl", _short_docs(12))]
    if scenario == "some_shards_emptied":
        sources.append(write_jsonl(tmp_path / "good.jsonl", [{"text": t, "url": f"g{i}"} for i, t in enumerate(GOOD)]))
    step = REGISTRY[name].from_params(_params(name, tmp_path), where="test")
    cfg = BuildConfig(
        root=tmp_path / "data",
        workers=1,
        work_shard_mb=0.0005,
        sources=[SourceSpec(p) for p in sources],
        steps=[LengthFilter(min_chars=50), step],
    )
    result = run_build(cfg, progress=False)
    # several shards, some (or all) empty (a light step under test runs fused: no parts in between)
    assert len(list(result.stages[1].directory.glob("done/process-*.json"))) >= 3
    kept = 0 if scenario == "everything_removed" else len(GOOD)
    assert result.stages[1].stats.docs_out == kept
    assert result.docs_in == 12 + kept
    assert result.docs_out + result.docs_rejected == result.docs_in
    assert query(tmp_path / "data", "SELECT count(*) FROM documents") == [(result.docs_out,)]


def test_a_copy_of_a_config_source_given_with_input_builds_and_rebuilds_with_force(tmp_path):
    """Every document of the copy is an exact duplicate, so its shards reach MinHash empty."""
    root = tmp_path / "data"
    config = write_config(tmp_path / "c.yaml", root, [SAMPLE], LIGHT_STEPS)  # one work shard per file
    copy = shutil.copy(SAMPLE, tmp_path / "copy.jsonl")
    for extra in ([], ["--force"]):
        result = run_cli("-m", "pipelines.build", "--config", str(config), "--input", str(copy), "--quiet", *extra)
        assert result.returncode == 0, result.stderr
        [(docs_in, docs_out)] = query(
            root, "SELECT docs_in, docs_out FROM runs WHERE status = 'succeeded' ORDER BY started_at DESC LIMIT 1"
        )
        n = sum(1 for line in SAMPLE.read_text().splitlines() if line.strip())
        assert docs_in == 2 * n and 0 < docs_out < n


def test_an_input_whose_only_document_is_too_long_builds_an_empty_corpus(tmp_path):
    root = tmp_path / "data"
    src = write_jsonl(tmp_path / "long.jsonl", [{"text": "word " * 400}])
    steps = ["normalize", {"length_filter": {"min_chars": 50, "max_chars": 1000}}, *LIGHT_STEPS[2:]]
    result = run_cli("-m", "pipelines.build", "--config", str(write_config(tmp_path / "c.yaml", root, [src], steps)))
    assert result.returncode == 0, result.stderr
    assert query(root, "SELECT status, docs_in, docs_out, docs_rejected FROM runs") == [("succeeded", 1, 0, 1)]
    assert query(root, "SELECT step, reason FROM rejects") == [("length_filter", "too_long")]


def test_readme_order_crawl_build_crawl_again_build_again(tmp_path):
    """`make demo`, then `scrapy crawl legal_docs` again, then `python -m pipelines.build`: the second
    crawl's pages are the first's again (the crawl now records them as duplicates, and whatever it
    writes is an exact duplicate that reaches MinHash as an emptied shard)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    root = workdir / "data"
    config = write_config(tmp_path / "c.yaml", root, [], LIGHT_STEPS)
    for _ in range(2):
        crawl(root, settings={"DEMO_SITE_PORT": "0"})
        result = run_cli("-m", "pipelines.build", "--config", str(config), "--quiet", cwd=workdir)
        assert result.returncode == 0, result.stderr
    first, second = query(root, "SELECT docs_in, docs_out FROM runs WHERE kind = 'build' ORDER BY started_at")
    assert second[0] >= first[0] and second[1] == first[1]  # the second crawl added no new document


def test_a_build_with_nothing_left_for_minhash_keeps_its_state(tmp_path):
    """The persisted MinHash state of earlier builds survives a build whose documents were all
    removed before minhash_dedup (nothing new to persist), and the next build sees it unchanged."""
    from pipelines.dedup import state
    from pipelines.steps import ExactDedup, MinHashDedup

    def build(max_chars: int):
        steps = [LengthFilter(min_chars=50, max_chars=max_chars), ExactDedup(), MinHashDedup(reduce_partitions=2)]
        cfg = BuildConfig(root=tmp_path / "data", workers=1, sources=[SourceSpec(SAMPLE)], steps=steps)
        return run_build(cfg, progress=False)

    first = build(1_000_000)
    directory = next((tmp_path / "data" / "state" / "minhash").iterdir())
    files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    assert build(50).docs_out == 0
    assert state.current_generation(directory) == 1
    assert sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file()) == files
    assert build(1_000_000).docs_out == first.docs_out
