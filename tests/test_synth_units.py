"""Synthesis building blocks: chunking, templates, validation, rate limits, config, seed selection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from common.config import ConfigError
from pipelines.synth.chunking import chunk_text
from pipelines.synth.config import SeedsConfig, load_config
from pipelines.synth.limits import RateLimiter
from pipelines.synth.seeds import select_seeds
from pipelines.synth.templates import TemplateSet, load_template
from pipelines.synth.validate import validate_response
from tests.synth_support import REPO, make_raw_corpus

PROMPTS = REPO / "configs" / "prompts"
QA_SCHEMA = load_template(PROMPTS / "qa.en.yaml").schema


def test_chunks_respect_the_budget_and_cut_at_boundaries() -> None:
    paragraphs = ["First paragraph. " * 5, "第二段。" * 40, "x" * 130]
    chunks = chunk_text("\n\n".join(paragraphs), max_chars=100)
    assert all(len(c) <= 100 for c in chunks)
    assert chunks[0].startswith(paragraphs[0].strip())  # paragraphs are packed whole when they fit
    assert all(c.endswith((".", "。")) for c in chunks[:-2])  # else cut at sentence ends
    assert chunks[-2:] == ["x" * 100, "x" * 30]  # and only a sentence longer than the budget is sliced
    assert "".join(c.replace("\n\n", "") for c in chunks).replace(" ", "") == "".join(paragraphs).replace(" ", "")
    assert chunk_text("short text", 100) == ["short text"]
    assert chunk_text("a. " * 100, 20, max_chunks=2) == chunk_text("a. " * 100, 20)[:2]
    assert chunk_text("", 100) == []


def test_shipped_templates_load_render_and_pick_the_language() -> None:
    tasks = ["qa", "instruct", "summary"]
    templates = TemplateSet(PROMPTS, tasks)
    for task in tasks:
        en, zh = templates.get(task, "en"), templates.get(task, "zh-Hans")
        assert (en.id, zh.id) == (f"{task}.en.v1", f"{task}.zh.v1")
        assert templates.get(task, None).lang == "en" and templates.get(task, "fr").lang == "en"
        msgs = en.messages("Text with {braces} kept.")
        assert msgs[0]["role"] == "system" and "Text with {braces} kept." in msgs[1]["content"]
        answer = {k: f"<{k}>" for k in en.schema["properties"]}
        prompt, response = en.to_row(answer, "CHUNK")
        assert prompt and response and "{" not in prompt + response


def test_template_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "qa.en.yaml"
    bad.write_text(
        "id: qa.en.v1\ntask: qa\nlang: en\nsystem: s\nuser: no slot\nschema: {type: object}\n"
        "row: {prompt: '{question}', response: '{answer}'}\n"
    )
    with pytest.raises(ConfigError, match=r"qa\.en\.yaml: row\.prompt uses question, not a schema property"):
        load_template(bad)
    bad.write_text(bad.read_text().replace("{type: object}", "{type: object, properties: {question: {}, answer: {}}}"))
    with pytest.raises(ConfigError, match=r"qa\.en\.yaml: 'user' must contain the \{chunk\} slot"):
        load_template(bad)
    with pytest.raises(ConfigError, match="no template for task 'poem'"):
        TemplateSet(PROMPTS, ["poem"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (json.dumps({"question": "Q?", "answer": "A."}), None),
        ('Here you go:\n```json\n{"question": "Who {pays}?", "answer": "The tenant."}\n```', None),
        ("", "empty_response"),
        ('{"question": "Q?", "answer": "cut', "invalid_json"),
        (json.dumps({"question": "Q?"}), "schema_violation"),
        (json.dumps({"question": "Q?", "answer": "A", "extra": 1}), "schema_violation"),
        (json.dumps(["Q?", "A."]), "schema_violation"),
        (json.dumps({"question": "  ", "answer": "A"}), "blank_field"),
    ],
)
def test_validation_accepts_only_schema_valid_answers(content: str, reason: str | None) -> None:
    verdict = validate_response(content, QA_SCHEMA, "stop")
    assert verdict.reason == reason
    assert verdict.ok == (reason is None)


def test_rate_limiter_spaces_requests_and_tokens_over_the_window() -> None:
    now = [0.0]
    sent: list[float] = []

    async def fake_sleep(s: float) -> None:
        now[0] += s

    async def go() -> None:
        rpm = RateLimiter(3, 0, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(7):
            await rpm.acquire(1)
            sent.append(now[0])
        assert sent == [0, 0, 0, 60, 60, 60, 120]
        tpm = RateLimiter(0, 1000, clock=lambda: now[0], sleep=fake_sleep)
        start = now[0]
        b1 = await tpm.acquire(600)
        tpm.settle(b1, 300)  # the server reported fewer tokens than estimated
        await tpm.acquire(600)  # fits now: 300 + 600 <= 1000
        assert now[0] == start
        await tpm.acquire(600)  # must wait for the first booking to leave the window
        assert now[0] == start + 60

    asyncio.run(go())


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("job: j\nlimits: {concurency: 3}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml.*limits.*'concurency'"):
        load_config(cfg)
    cfg.write_text("job: j\nendpoint: {structured_output: xml}\n")
    with pytest.raises(ConfigError, match="structured_output"):
        load_config(cfg)
    cfg.write_text("job: j\n")
    loaded = load_config(cfg, ["seeds.sample=5", "endpoint.base_url=http://h:1/v1"])
    assert loaded.seeds.sample == 5 and loaded.endpoint.base_url == "http://h:1/v1"
    assert "key" not in json.dumps(loaded.to_dict()).replace("api_key_env", "")


def test_seed_selection_is_sql_filtered_deterministic_and_nested(tmp_path: Path) -> None:
    docs = [{"text": f"document number {i}", "lang": "zh" if i % 3 == 0 else "en"} for i in range(40)]
    layout = make_raw_corpus(tmp_path / "c", docs)
    pick = lambda **kw: [d.doc_id for d in select_seeds(layout, SeedsConfig(table="raw_documents", **kw))]  # noqa: E731
    ten = pick(sample=10, seed=1)
    assert len(ten) == 10 and pick(sample=10, seed=1) == ten
    assert pick(sample=20, seed=1)[:10] == ten and pick(sample=10, seed=2) != ten
    zh = select_seeds(layout, SeedsConfig(table="raw_documents", where="lang = 'zh'"))
    assert len(zh) == 14 and {d.lang for d in zh} == {"zh"}
    from pipelines.synth.client import SynthError

    with pytest.raises(SynthError, match="no seed documents match"):
        select_seeds(layout, SeedsConfig(table="raw_documents", where="lang = 'fr'"))
    with pytest.raises(SynthError, match=r"seed selection failed.*no_such_column"):
        select_seeds(layout, SeedsConfig(table="raw_documents", where="no_such_column = 1"))


def test_steps_that_rewrite_text_rewrite_the_instruction_parts_too(tmp_path: Path) -> None:
    from tests.conftest import query, run_cli, write_config

    prompt, response = "How do I   reach the\u00a0clerk?", "Write to jane.doe@example.com or call +44 20 7946 0958."
    meta = {"prompt": prompt, "response": response, "task": "qa"}
    root = tmp_path / "c"
    make_raw_corpus(root, [{"text": f"{prompt}\n\n{response}", "lang": "en", "source": "synth:qa", "meta": meta}])
    cfg = write_config(tmp_path / "b.yaml", root, [], ["normalize", {"pii_redact": {"entities": ["EMAIL", "PHONE"]}}])
    built = run_cli("-m", "pipelines.build", "--config", str(cfg), "--quiet")
    assert built.returncode == 0, built.stderr
    ((text, meta_json),) = query(root, "SELECT text, meta FROM documents")
    got = json.loads(meta_json)
    assert got["prompt"] == "How do I reach the clerk?"  # whitespace cleaned like the text
    assert "jane.doe@example.com" not in got["response"] and "jane.doe@example.com" not in text
    assert text == f"{got['prompt']}\n\n{got['response']}"


def test_seeds_leave_out_synthetic_rows_unless_asked(tmp_path: Path) -> None:
    docs = [{"text": "a crawled text"}, {"text": "a generated text", "source": "synth:qa"}]
    layout = make_raw_corpus(tmp_path / "c", docs)
    assert [d.text for d in select_seeds(layout, SeedsConfig(table="raw_documents"))] == ["a crawled text"]
    both = select_seeds(layout, SeedsConfig(table="raw_documents", include_synthetic=True))
    assert sorted(d.text for d in both) == ["a crawled text", "a generated text"]


def test_every_meta_text_field_is_rewritten_once_per_frame() -> None:
    import polars as pl

    from pipelines.steps.instruction_meta import META_TEXT_FIELDS, rewrite_parts

    qa = {"prompt": "q", "response": "a", "task": "qa"}
    pref = {"prompt": "p", "chosen": "c", "rejected": "r", "rationale": "why", "ratings": [9, 3], "task": "preference"}
    df = pl.DataFrame({"meta": [json.dumps(qa), None, '{"url_status": 200}', json.dumps(pref)]})
    calls = []

    def upper(texts: list[str], owners: list[int]) -> list[str]:
        calls.append(list(zip(owners, texts, strict=True)))
        return [t.upper() for t in texts]

    out = [json.loads(m) if m else None for m in rewrite_parts(df, upper).get_column("meta").to_list()]
    assert len(calls) == 1  # one transform call for the whole frame (one NER batch)
    assert sorted(calls[0]) == [(0, "a"), (0, "q"), (3, "c"), (3, "p"), (3, "r"), (3, "why")]
    assert out[0] == {"prompt": "Q", "response": "A", "task": "qa"}
    assert out[3] == {**pref, "prompt": "P", "chosen": "C", "rejected": "R", "rationale": "WHY"}
    assert out[1] is None and out[2] == {"url_status": 200}
    assert set(META_TEXT_FIELDS) == {"prompt", "response", "chosen", "rejected", "rationale"}
    with pytest.raises(ValueError, match="returned 1 texts for 2"):
        rewrite_parts(df.head(1), lambda texts, owners: texts[:1])
