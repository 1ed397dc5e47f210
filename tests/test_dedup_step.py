"""End-to-end builds with minhash_dedup: exact accounting, clusters table, incremental state."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from common.config import ConfigError
from pipelines.config import BuildConfig, SourceSpec
from pipelines.dedup import state
from pipelines.dedup.gen import Vocabulary, document, join, noise
from pipelines.dedup.shingle import shingle_texts
from pipelines.runner import run_build
from pipelines.steps import step_class
from pipelines.steps.minhash_dedup import MinHashDedup
from pipelines.steps.normalize import Normalize


def true_jaccard(a: str, b: str) -> float:
    sh = shingle_texts(pl.Series([a, b]))
    x, y = np.unique(sh.of(0)), np.unique(sh.of(1))
    shared = len(np.intersect1d(x, y))
    return shared / (len(x) + len(y) - shared)


def corpus(seed: int, n: int, prefix: str, dup_of: list[dict] | None = None) -> list[dict]:
    """n unrelated base documents (English and Chinese), every third with a near-duplicate that differs
    in case, whitespace and punctuation (so LSH finds it with certainty, not with probability 0.99);
    with ``dup_of``, also near-duplicates of those earlier documents."""
    rng = random.Random(seed)
    vocab = Vocabulary.english(random.Random(0))
    rows: list[dict] = []
    for i in range(n):
        lang = "en" if i % 2 == 0 else "zh"
        s = document(rng, lang, vocab, (10, 20))
        base = {"url": f"{prefix}/{i}", "text": join(s, lang), "lang": lang}
        rows.append(base)
        if i % 3 == 0:
            rows.append(
                {
                    "url": f"{prefix}/{i}/copy",
                    "text": noise(rng, join(s, lang).upper() if i % 4 == 0 else join(s, lang)),
                    "lang": lang,
                    "dup": base["url"],
                }
            )
    for j, old in enumerate(dup_of or []):
        rows.append(
            {"url": f"{prefix}/re/{j}", "text": old["text"] + " 更新 updated", "lang": old["lang"], "dup": old["url"]}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "dup"}, ensure_ascii=False) for r in rows))
    return path


def build(root: Path, sources: list[Path], **params) -> tuple[duckdb.DuckDBPyConnection, object]:
    cfg = BuildConfig(
        root=root,
        workers=1,
        work_shard_mb=0.02,
        sources=[SourceSpec(p) for p in sources],
        steps=[Normalize(), MinHashDedup(**params)],
    )
    result = run_build(cfg, progress=False)
    return duckdb.connect(str(root / "catalog.duckdb"), read_only=True), result


def merge_round(marker: Path) -> int:
    """The round of a merge task's done marker ``done/merge-r<round>-<task>.json``."""
    return int(marker.name.split("-")[1][1:])


def url_ids(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("SELECT url, doc_id FROM raw_documents").fetchall()
    return dict(rows)


def test_build_removes_near_duplicates_with_exact_accounting(tmp_path: Path) -> None:
    rows = corpus(1, 30, "a")
    con, result = build(tmp_path / "root", [write_jsonl(tmp_path / "a.jsonl", rows)])
    ids = url_ids(con)
    dups = {r["url"]: r["dup"] for r in rows if "dup" in r}
    assert all(
        true_jaccard(r["text"], next(b for b in rows if b["url"] == r["dup"])["text"]) >= 0.95
        for r in rows
        if "dup" in r
    )
    assert result.docs_in == len(rows)
    assert result.docs_out + result.docs_rejected == result.docs_in
    rejected = dict(con.execute("SELECT doc_id, dup_of FROM rejects WHERE reason = 'near_duplicate'").fetchall())
    assert rejected == {ids[u]: ids[d] for u, d in dups.items()}
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == len(rows) - len(dups)
    clusters = con.execute("SELECT kept_id, size, members FROM dedup_clusters ORDER BY cluster_id").fetchall()
    assert len(clusters) == len(dups)
    for kept, size, members in clusters:
        assert size == len(members) == 2 and kept == members[0]
    detail = json.loads(con.execute("SELECT detail FROM rejects LIMIT 1").fetchone()[0])
    assert detail["jaccard_estimate"] >= 0.8


def test_incremental_build_reuses_signatures_and_keeps_earlier_keepers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    old_rows = corpus(2, 24, "old")
    con, _ = build(root, [write_jsonl(tmp_path / "z_old.jsonl", old_rows)])
    kept_before = {r[0] for r in con.execute("SELECT doc_id FROM documents").fetchall()}
    con.close()
    state = next((root / "state" / "minhash").iterdir())
    seg1 = pl.read_parquet(state / "segments" / "seg-00001.parquet", columns=["key"])
    assert seg1.height == len(old_rows)

    # the new crawl sorts before the old one in the raw store, so it comes first in build order
    bases = [r for r in old_rows if "dup" not in r][:6]
    new_rows = corpus(3, 12, "new", dup_of=bases)
    con, result = build(root, [write_jsonl(tmp_path / "a_new.jsonl", new_rows)])
    assert result.docs_in == len(old_rows) + len(new_rows)
    seg2 = pl.read_parquet(state / "segments" / "seg-00002.parquet", columns=["key"])
    assert seg2.height == len(new_rows)  # only the new documents were signed
    assert set(seg1.get_column("key")).isdisjoint(seg2.get_column("key"))
    ids = url_ids(con)
    kept_now = {r[0] for r in con.execute("SELECT doc_id FROM documents").fetchall()}
    assert kept_before <= kept_now  # earlier keepers stay kept
    rejected = dict(con.execute("SELECT doc_id, dup_of FROM rejects").fetchall())
    expected = {ids[r["url"]]: ids[r["dup"]] for r in old_rows + new_rows if "dup" in r}
    assert rejected == expected
    docs = pl.read_parquet(state / "docs-00002")
    assert docs.height == len(old_rows) + len(new_rows) and docs.get_column("seq").is_unique().all()


def test_repeated_incremental_builds_compact_the_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_SEGMENTS", 2)
    root = tmp_path / "root"
    everything: list[dict] = []
    for b in range(5):
        # each crawl: new documents, and near-duplicates of documents of the earlier crawls
        bases = [r for r in everything if "dup" not in r][::4][:3]
        rows = corpus(10 + b, 6, f"c{b}", dup_of=bases)
        everything += rows
        con, result = build(root, [write_jsonl(tmp_path / f"c{b}.jsonl", rows)])
        assert result.docs_in == len(everything)
        directory = next((root / "state" / "minhash").iterdir())
        files = sorted(p.name for p in (directory / "segments").glob("*.parquet"))
        assert len(files) <= state.MAX_SEGMENTS, files
        keys = pl.concat([pl.read_parquet(directory / "segments" / f, columns=["key"]) for f in files])
        assert keys.height == len(everything) and keys.get_column("key").is_unique().all()  # signed once
        ids = url_ids(con)
        rejected = dict(con.execute("SELECT doc_id, dup_of FROM rejects").fetchall())
        assert rejected == {ids[r["url"]]: ids[r["dup"]] for r in everything if "dup" in r}
        con.close()
    assert any(f.startswith("base-") for f in files)  # compacted at least once
    assert state.read_current(directory)["gen"] == 5
    assert json.loads((directory / "key.json").read_text())[:3] == [2, 2, "oph-densified"]


def test_state_of_another_signature_scheme_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signatures of the earlier 128-function scheme (MINHASH_VERSION 1) mean something else:
    a build after the upgrade must sign everything again, in a directory of its own."""
    from pipelines.steps import minhash_dedup

    root = tmp_path / "root"
    rows = corpus(4, 9, "v")
    source = write_jsonl(tmp_path / "v.jsonl", rows)
    monkeypatch.setattr(minhash_dedup, "MINHASH_VERSION", 1)
    old_key = MinHashDedup().signature_key()
    build(root, [source])[0].close()
    monkeypatch.setattr(minhash_dedup, "MINHASH_VERSION", 2)
    new_key = MinHashDedup().signature_key()
    assert new_key != old_key
    extra = corpus(5, 3, "w")  # a new crawl, so that the stage runs again
    con, _ = build(root, [write_jsonl(tmp_path / "w.jsonl", extra)])
    new_state = root / "state" / "minhash" / new_key
    signed = pl.read_parquet(new_state / "segments" / "seg-00001.parquet")
    assert signed.height == len(rows) + len(extra)  # everything signed again
    assert state.current_generation(root / "state" / "minhash" / old_key) == 1  # old state untouched
    ids = url_ids(con)
    rejected = dict(con.execute("SELECT doc_id, dup_of FROM rejects").fetchall())
    assert rejected == {ids[r["url"]]: ids[r["dup"]] for r in rows + extra if "dup" in r}


def test_keep_longest_and_params_validation(tmp_path: Path) -> None:
    base = "the parties entered into a written contract on the date stated in the schedule " * 4
    rows = [{"url": "short", "text": base}, {"url": "long", "text": base + " signed"}]
    con, _ = build(tmp_path / "root", [write_jsonl(tmp_path / "l.jsonl", rows)], keep="longest")
    assert con.execute("SELECT url FROM documents").fetchall() == [("long",)]
    cls = step_class("minhash_dedup", where="t")
    with pytest.raises(ConfigError, match="bands"):
        cls.from_params({"bands": 4}, where="t")
    with pytest.raises(ConfigError, match="keep"):
        cls.from_params({"keep": "best"}, where="t")
    with pytest.raises(ConfigError, match="num_perm"):
        cls.from_params({"bands": 20, "rows": 10}, where="t")


def test_keep_quality_score_without_the_column_names_the_problem(tmp_path: Path) -> None:
    rows = [{"url": "x", "text": "some text here for the test"}]
    with pytest.raises(Exception, match="quality_score"):
        build(tmp_path / "root", [write_jsonl(tmp_path / "q.jsonl", rows)], keep="quality_score")


def test_partitioned_reduce_gives_the_same_output_incrementally_too(tmp_path: Path) -> None:
    """Band grouping and merge rounds spread over 4 tasks (band-hash partitions, document groups):
    the same final shards, rejects and clusters as one partition, for a first and an incremental
    build."""
    old_rows = corpus(5, 30, "old")
    new_rows = corpus(6, 12, "new", dup_of=[r for r in old_rows if "dup" not in r][:5])
    old = write_jsonl(tmp_path / "z_old.jsonl", old_rows)
    new = write_jsonl(tmp_path / "a_new.jsonl", new_rows)

    def outputs(con: duckdb.DuckDBPyConnection) -> tuple:
        return (
            con.execute("SELECT path, checksum FROM shards WHERE stage = 'final' ORDER BY path").fetchall(),
            con.execute("SELECT doc_id, dup_of FROM rejects ORDER BY doc_id").fetchall(),
            con.execute("SELECT cluster_id, kept_id, members FROM dedup_clusters ORDER BY cluster_id").fetchall(),
        )

    results = {}
    for parts in (1, 4):
        root = tmp_path / f"p{parts}"
        con, _ = build(root, [old], reduce_partitions=parts)
        first = outputs(con)
        con.close()
        con, _ = build(root, [old, new], reduce_partitions=parts)
        results[parts] = (first, outputs(con))
        con.close()
        edge_files = list(root.glob("work/*minhash*/edges/part-*.parquet"))
        assert len(edge_files) == parts  # the last build's reduce partitions
    assert results[1] == results[4]
    assert len(results[4][1][1]) > len(results[4][0][1]) > 0  # the second build found more duplicates


def test_partitioned_merge_follows_chains_of_near_duplicates(tmp_path: Path) -> None:
    """Chains of documents where each is an edit of the previous one (the ends are not near
    duplicates of each other): keepers and nearest-keeper assignments need several message rounds
    across document groups, and give what one group gives, for every keep policy."""
    rng = random.Random(11)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randrange(3, 9))) for _ in range(5000)]
    rows = []
    for c in range(12):
        words = rng.choices(vocab, k=150)
        for j in range(rng.randrange(3, 9)):
            for _ in range(2):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            rows.append({"url": f"c{c}/{j}", "text": " ".join(words) + " end" * rng.randrange(4), "lang": "en"})
    rng.shuffle(rows)  # chain members land in different shards (document groups)
    source = write_jsonl(tmp_path / "chains.jsonl", rows)

    def outputs(con: duckdb.DuckDBPyConnection) -> tuple:
        return (
            con.execute("SELECT path, checksum FROM shards WHERE stage = 'final' ORDER BY path").fetchall(),
            con.execute("SELECT doc_id, dup_of, detail FROM rejects ORDER BY doc_id").fetchall(),
            con.execute("SELECT cluster_id, kept_id, size, members FROM dedup_clusters ORDER BY cluster_id").fetchall(),
        )

    for keep in ("first", "longest"):
        results = {}
        for parts in (1, 3):
            root = tmp_path / f"{keep}-{parts}"
            con, _ = build(root, [source], reduce_partitions=parts, keep=keep, threshold=0.7)
            results[parts] = outputs(con)
            con.close()
            if parts == 3:
                stats = [json.loads(p.read_text()) for p in root.glob("work/*minhash*/done/merge-r*.json")]
                label_rounds = sum(1 for s in stats if s["phase"] == "labels") // parts
                groups_with_nodes = sum(1 for s in stats if s["phase"] == "nodes" and s["nodes"])
                assert label_rounds >= 3 and groups_with_nodes == parts
        assert results[1] == results[3]
        assert max(size for *_, size, _m in results[3][2]) >= 4  # long chains became one cluster


def test_partitioned_merge_resumes_after_a_crash_mid_propagation(tmp_path: Path) -> None:
    """A build that died during the label rounds (later rounds, decisions and the apply phase
    never happened) resumes from the finished rounds' markers and publishes the same output."""
    rows = corpus(3, 24, "r")
    source = write_jsonl(tmp_path / "r.jsonl", rows)
    root = tmp_path / "root"
    con, result = build(root, [source], reduce_partitions=3)
    before = con.execute(
        "SELECT path, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY path"
    ).fetchall()
    con.close()
    step_dir = result.stages[-1].directory
    stats = {p: json.loads(p.read_text()) for p in (step_dir / "done").glob("merge-r*.json")}
    first_label = min(merge_round(p) for p, s in stats.items() if s["phase"] == "labels")
    for p in stats:
        if merge_round(p) > first_label:
            p.unlink()
    for p in [*step_dir.glob("done/process-*.json"), *step_dir.glob("part-*.parquet")]:
        p.unlink()
    shutil.rmtree(step_dir / "decisions")
    con, _ = build(root, [source], reduce_partitions=3)
    after = con.execute(
        "SELECT path, checksum FROM shards WHERE stage IN ('final', 'rejects') ORDER BY path"
    ).fetchall()
    assert after == before
    rerun = {p for p in (step_dir / "done").glob("merge-r*.json") if merge_round(p) > first_label}
    assert len(rerun) >= 3 * 3  # the later label rounds, owners, assign, decide, persist, commit ran again
