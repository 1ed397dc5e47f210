"""Task `preference` against a real local HTTP server scripted per stage: judge parsing, margin
rejects, cache reuse, and the build rewriting prompt/chosen/rejected like text."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from common.config import ConfigError
from pipelines.synth.config import load_config
from pipelines.synth.job import run_job
from pipelines.synth.preference import parse_ratings
from pipelines.synth.templates import TemplateSet
from tests.conftest import query, run_cli, write_config
from tests.synth_support import REPO, PreferenceServer, candidate_answer, make_raw_corpus, write_synth_config

KEY = "sk-pref-test"
DOCS = {
    "p1": ("en", "JUDGE=9,3"),  # candidate 1 (t=0.2) chosen
    "p2": ("en", "JUDGE=2,8"),  # candidate 2 (t=1.0) chosen
    "p3": ("en", "JUDGE=6,5"),  # margin 1 < 2: rejected
    "p4": ("en", "JUDGE=x:9,3"),  # an unparsable rating, retried with seed + 1
    "p5": ("en", "JUDGE=x"),  # never parses: rejected after 1 + invalid_retries judge calls
    "p6": ("en", "SAME JUDGE=9,3"),  # identical candidates: rejected before the judge
    "p7": ("zh", "JUDGE=8,4"),  # the Chinese templates
}
KEPT = ["p1", "p2", "p4", "p7"]


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "corpus"
    texts = {"en": "The tenant shall pay rent monthly to the landlord.", "zh": "承租人应当按月向出租人支付租金。"}
    make_raw_corpus(
        root,
        [
            {"text": f"DOC={tag} {texts[lang]} {script}", "lang": lang, "url": f"u/{tag}"}
            for tag, (lang, script) in DOCS.items()
        ],
    )
    monkeypatch.setenv("PREF_KEY", KEY)
    return root


def _config(tmp_path: Path, root: Path, server: PreferenceServer) -> Path:
    return write_synth_config(
        tmp_path / "synth.yaml",
        job="pairs",
        root=str(root),
        tasks=["preference"],
        endpoint={"base_url": server.base_url, "model": "m", "api_key_env": "PREF_KEY", "timeout_s": 10.0},
        limits={"concurrency": 4, "max_retries": 1, "invalid_retries": 2, "backoff_s": 0.01},
        seeds={"table": "raw_documents"},
        preference={"candidates": [{"temperature": 0.2}, {"temperature": 1.0}], "min_margin": 2},
    )


def _pairs(root: Path) -> dict[str, dict]:
    rows = query(root, "SELECT source, text, meta FROM raw_documents WHERE source LIKE 'synth:%' ORDER BY doc_id")
    out = {}
    for source, text, meta_json in rows:
        meta = json.loads(meta_json)
        assert source == "synth:preference" and text == f"{meta['prompt']}\n\n{meta['chosen']}"
        out[meta["seed_url"].split("/")[1]] = meta
    return out


def test_pairs_are_judged_margin_rejected_and_replayed_from_the_cache(corpus: Path, tmp_path: Path) -> None:
    with PreferenceServer(KEY) as server:
        cfg = load_config(_config(tmp_path, corpus, server))
        result = run_job(cfg, progress=False)
        calls = Counter(tag for _, tag, _ in server.calls)
        judged = list(server.judge_requests)

        pairs = _pairs(corpus)
        assert sorted(pairs) == KEPT and result.rows == len(KEPT)
        p1, p2 = pairs["p1"], pairs["p2"]
        assert (p1["chosen"], p1["rejected"]) == (candidate_answer("p1", 0.2), candidate_answer("p1", 1.0))
        assert (p2["chosen"], p2["rejected"]) == (candidate_answer("p2", 1.0), candidate_answer("p2", 0.2))
        assert p1["ratings"] == [9, 3] and p1["margin"] == 6 and (p1["chosen_index"], p1["rejected_index"]) == (0, 1)
        assert p2["ratings"] == [2, 8] and p2["margin"] == 6 and (p2["chosen_index"], p2["rejected_index"]) == (1, 0)
        seed_text = "DOC=p1 The tenant shall pay rent monthly to the landlord. JUDGE=9,3"
        assert p1["prompt"] == f"What does document p1 say?\n\nText:\n{seed_text}"
        assert p1["prompt_id"] == "preference.en.v1" and p1["judge_id"] == "judge.en.v1"
        assert [c["temperature"] for c in p1["candidates"]] == [0.2, 1.0]
        assert [c["seed"] for c in p1["candidates"]] == [0, 1000]  # distinct seeds per candidate
        assert pairs["p4"]["judge_attempts"] == 2 and pairs["p4"]["ratings"] == [9, 3]
        assert pairs["p7"]["prompt_id"] == "preference.zh.v1" and pairs["p7"]["judge_id"] == "judge.zh.v1"
        assert "文本：" in pairs["p7"]["prompt"]

        # the judge sees the seed text once, the question, and the numbered answers
        first = judged[0]["messages"][-1]["content"]
        assert first.count("The tenant shall pay") + first.count("承租人应当") == 1 and "[the text above]" in first
        assert ("Answer 1:" in first and "Answer 2:" in first) or ("回答 1:" in first and "回答 2:" in first)
        schema = judged[0]["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["rationale", "rating_1", "rating_2"]

        assert result.rejects == {"margin_below_min": 1, "judge_unparsable_rating": 1, "identical_candidates": 1}
        rejects = dict(query(corpus, "SELECT reason, detail FROM synth_rejects"))
        assert rejects["margin_below_min"] == "ratings [6, 5]: margin 1 < min_margin 2"
        assert "rating_1 = 'A+'" in rejects["judge_unparsable_rating"]
        # requests: question + 2 candidates + the judge's tries (none for identical candidates)
        assert calls == {"p1": 4, "p2": 4, "p3": 4, "p4": 5, "p5": 6, "p6": 3, "p7": 4}
        attempts = dict(query(corpus, "SELECT reason, attempts FROM synth_rejects"))
        assert attempts == {"margin_below_min": 4, "judge_unparsable_rating": 6, "identical_candidates": 3}

        # the same job again: every stage from the cache, identical rows, no request
        before = len(server.calls)
        again = run_job(cfg, progress=False)
        assert len(server.calls) == before and again.stats.requests == 0
        assert again.stats.cache_hits == sum(calls.values()) and _pairs(corpus) == pairs

        # a stricter margin is a config change answered from the same cache: p7 (8 vs 4) drops out
        cfg.preference.min_margin = 5
        stricter = run_job(cfg, progress=False)
        assert len(server.calls) == before and stricter.rows == 3
        assert stricter.rejects["margin_below_min"] == 2


def test_pii_in_chosen_and_rejected_is_redacted_by_the_build(corpus: Path, tmp_path: Path) -> None:
    with PreferenceServer(KEY) as server:
        run_job(load_config(_config(tmp_path, corpus, server)), progress=False)
    build_cfg = write_config(
        tmp_path / "build.yaml", corpus, [], ["normalize", "exact_dedup", {"pii_redact": {"ner_languages": []}}]
    )
    built = run_cli("-m", "pipelines.build", "--config", str(build_cfg), "--quiet")
    assert built.returncode == 0, built.stderr
    rows = query(corpus, "SELECT text, meta FROM documents WHERE source = 'synth:preference'")
    assert len(rows) == len(KEPT)
    for text, meta_json in rows:
        meta = json.loads(meta_json)
        for part in (text, meta["chosen"], meta["rejected"], meta["prompt"]):
            assert "@example.com" not in part and "ＦＵＬＬ" not in part  # redacted and NFKC-normalised
        assert "<EMAIL>" in meta["chosen"] and "<EMAIL>" in meta["rejected"] and meta["chosen"].endswith("FULL")
        assert text == f"{meta['prompt']}\n\n{meta['chosen']}"  # still the same pair after the rewrite
    with duckdb.connect(str(corpus / "catalog.duckdb"), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM pii_findings WHERE entity_type = 'EMAIL'").fetchone()[0] >= len(KEPT)


def test_judge_ratings_parse_strictly() -> None:
    judge = TemplateSet(REPO / "configs" / "prompts", ["preference"]).judge("en")
    schema = judge.schema(2)
    ok = parse_ratings(schema, 2, json.dumps({"rationale": "r", "rating_1": "9", "rating_2": "10"}), "stop")
    assert ok.ok and ok.answer == {"rationale": "r", "ratings": [9, 10]}
    assert parse_ratings(schema, 2, '```json\n{"rationale": "r", "rating_1": "7/10", "rating_2": " 3"}\n```', None).ok
    for bad in ("0", "11", "nine", "8.5", "-2"):
        v = parse_ratings(schema, 2, json.dumps({"rationale": "r", "rating_1": bad, "rating_2": "3"}), "stop")
        assert v.reason in ("unparsable_rating", "schema_violation"), bad
    missing = parse_ratings(schema, 2, json.dumps({"rationale": "r", "rating_1": "3"}), "stop")
    assert missing.reason == "schema_violation"


def test_preference_config_is_checked(tmp_path: Path) -> None:
    path = write_synth_config(tmp_path / "s.yaml", tasks=["preference"], preference={"candidates": [{}]})
    with pytest.raises(ConfigError, match="at least 2 candidates"):
        load_config(path)
    path = write_synth_config(tmp_path / "s.yaml", tasks=["preference"], preference={"min_margin": 0})
    with pytest.raises(ConfigError, match="min_margin must be 1-9"):
        load_config(path)
    path = write_synth_config(tmp_path / "s.yaml", tasks=["preference"], preference={"judge": "x"})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
