"""A real synthesis job: the real `training.serve` with SmolLM2, the real `openai` client, a real catalog."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import query, run_cli, write_config
from tests.synth_support import make_raw_corpus, write_synth_config

DOCS = [
    {
        "text": "The tenant shall pay the monthly rent of 1,200 euros on the first day of each month. "
        "The landlord keeps the roof and the outer walls in good repair.",
        "lang": "en",
        "url": "https://example.test/lease",
    },
    {
        "text": "出租人应当按照约定将租赁物交付承租人，并在租赁期限内保持租赁物符合约定的用途。"
        "承租人应当按期支付租金。",
        "lang": "zh",
        "url": "https://example.test/zh-lease",
    },
]


def _synth_rows(root: Path) -> list[tuple]:
    return query(
        root,
        "SELECT doc_id, source, lang, text, created_at, meta FROM raw_documents "
        "WHERE source LIKE 'synth:%' ORDER BY doc_id",
    )


def test_synthesis_through_the_local_endpoint_is_cached_and_built(llm_server: str, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_raw_corpus(root, DOCS)
    config = write_synth_config(
        tmp_path / "synth.yaml",
        job="e2e",
        root=str(root),
        tasks=["qa", "summary"],
        endpoint={"base_url": f"{llm_server}/v1", "model": "smollm2-135m-instruct", "timeout_s": 300},
        limits={"concurrency": 4},
        seeds={"table": "raw_documents", "where": "source = 'import:corpus-input'"},
        generation={"max_tokens": 48},
    )
    stats = lambda: httpx.get(f"{llm_server}/stats").json()["chat_completions"]  # noqa: E731
    before = stats()
    first = run_cli("-m", "pipelines.synthesize", "--config", str(config), "--quiet", timeout=600)
    assert first.returncode == 0, first.stderr
    sent = stats() - before
    assert sent >= 4  # 2 documents x 2 tasks, plus any validation retries
    rows = _synth_rows(root)
    assert 1 <= len(rows) <= 4
    usage = query(root, "SELECT requests, cache_hits, prompt_tokens, completion_tokens FROM synth_usage")
    assert usage[0][0] == sent and usage[0][1] == 0 and usage[0][2] > 100 and usage[0][3] > 0
    for _, source, lang, text, _, meta_json in rows:
        meta = json.loads(meta_json)
        assert source == f"synth:{meta['task']}" and meta["prompt_id"] == f"{meta['task']}.{lang}.v1"
        assert text == f"{meta['prompt']}\n\n{meta['response']}" and meta["response"].strip()
        assert meta["model"] == "smollm2-135m-instruct" and meta["prompt_tokens"] > 0
        assert meta["seed_doc_id"] in {r[0] for r in query(root, "SELECT doc_id FROM raw_documents")}
    rejected = query(root, "SELECT count(*) FROM synth_rejects")[0][0]
    assert len(rows) + rejected == 4

    # the same job again: zero requests, identical rows
    before = stats()
    second = run_cli("-m", "pipelines.synthesize", "--config", str(config), "--quiet", timeout=600)
    assert second.returncode == 0, second.stderr
    assert stats() == before and "requests sent: 0" in second.stdout
    assert _synth_rows(root) == rows

    # the build takes synthesised rows through the same steps as crawled text
    build_cfg = write_config(tmp_path / "build.yaml", root, [], ["normalize", "exact_dedup"])
    built = run_cli("-m", "pipelines.build", "--config", str(build_cfg), "--quiet")
    assert built.returncode == 0, built.stderr
    sources = dict(query(root, "SELECT source, count(*) FROM documents GROUP BY source"))
    assert sources["import:corpus-input"] == 2
    assert sum(n for s, n in sources.items() if s.startswith("synth:")) >= 1


def test_preference_pairs_through_the_local_endpoint(llm_server: str, tmp_path: Path) -> None:
    """Task preference against the real server: guided question and judge JSON, free-text candidates,
    every item a pair or a named reject, and a rerun served from the cache."""
    from pipelines.synth.client import SynthError
    from pipelines.synth.config import load_config
    from pipelines.synth.job import run_job

    root = tmp_path / "corpus"
    make_raw_corpus(root, DOCS[:1])
    config = write_synth_config(
        tmp_path / "synth.yaml",
        job="pref-e2e",
        root=str(root),
        tasks=["preference"],
        endpoint={"base_url": f"{llm_server}/v1", "model": "smollm2-135m-instruct", "timeout_s": 600},
        limits={"concurrency": 4, "invalid_retries": 1},
        seeds={"table": "raw_documents", "where": "source = 'import:corpus-input'"},
        chunk={"max_chars": 300},
        generation={"max_tokens": 40},
        preference={
            "candidates": [{"temperature": 0.0}, {"temperature": 1.0}],
            "min_margin": 1,
            "judge_max_tokens": 64,
        },
    )
    stats = lambda: httpx.get(f"{llm_server}/stats").json()["chat_completions"]  # noqa: E731
    before = stats()
    cfg = load_config(config)
    try:
        result = run_job(cfg, progress=False)
        rows, rejects = result.rows, sum(result.rejects.values())
    except SynthError as exc:  # a 135M judge may rate nothing usable: then the job fails, saying why
        assert "no rows written" in str(exc)
        rows, rejects = 0, 1
    sent = stats() - before
    assert sent >= 3  # the question and two candidates (and the judge, unless the answers were identical)
    assert rows + rejects == 1
    reasons = [r for (r,) in query(root, "SELECT reason FROM synth_rejects")]
    pairs = query(root, "SELECT meta FROM raw_documents WHERE source = 'synth:preference'")
    if pairs:
        meta = json.loads(pairs[0][0])
        assert meta["chosen"] != meta["rejected"] and meta["margin"] >= 1 and len(meta["ratings"]) == 2
    else:
        assert reasons and reasons[0].split("_")[0] in ("question", "candidate", "judge", "margin", "identical")
    before = stats()
    try:
        run_job(cfg, progress=False)
    except SynthError:
        pass
    assert stats() == before  # every stage answered from the cache
