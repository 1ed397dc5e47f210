"""The JSON guide on a tiny byte-level BPE tokenizer: which schemas it enforces, and that no state
it can reach allows no token (the cause of "probability tensor contains inf/nan" at temperature
0.7 and of the empty 0-5 scores: a ``maxLength: 1`` string left nothing to sample at its start).
Random logits sampled at a temperature walk many paths; every answer must parse and conform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from jsonschema import Draft202012Validator
from serve_support import save_tiny_model, tiny_tokenizer

from training.generation import Engine, GenRequest
from training.json_guide import FlatSchema, JsonGuide, TokenClasses

REPO = Path(__file__).resolve().parents[1]
RUBRIC = yaml.safe_load((REPO / "configs" / "prompts" / "annotate.en.yaml").read_text(encoding="utf-8"))["schema"]
RUBRIC_ZH = yaml.safe_load((REPO / "configs" / "prompts" / "annotate.zh.yaml").read_text(encoding="utf-8"))["schema"]


def obj(**props) -> dict:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


SCHEMAS = {
    "rubric.en": RUBRIC,
    "rubric.zh": RUBRIC_ZH,
    "score first": obj(score={"type": "integer", "minimum": 0, "maximum": 5}, why={"type": "string", "minLength": 8}),
    "old rubric (one-char pattern string)": obj(
        reasons={"type": "string", "minLength": 1, "maxLength": 300},
        score={"type": "string", "minLength": 1, "maxLength": 1, "pattern": "^[0-5]$"},
    ),
    "one-char string": obj(c={"type": "string", "maxLength": 1}, d={"type": "string", "maxLength": 2}),
    "wide range, enum, bool": obj(
        n={"type": "integer", "minimum": -3, "maximum": 120},
        kind={"enum": ["statute", "judgment", "判决书", 7, None]},
        ok={"type": "boolean"},
        word={"type": "string", "pattern": "^(yes|no|maybe)$"},
    ),
}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def classes(tok):
    return TokenClasses(tok, len(tok) + 13)  # a model's vocabulary is often padded past the tokenizer's


def test_parse_enforces_what_the_annotation_schema_needs() -> None:
    rubric = FlatSchema.parse(RUBRIC)
    assert rubric is not None and rubric.keys == ("reasons", "score")
    reasons, score = rubric.fields
    assert score.choices == ("0", "1", "2", "3", "4", "5") and reasons.choices is None
    assert reasons.min_chars >= 1 and reasons.max_chars == RUBRIC["properties"]["reasons"]["maxLength"]
    old = FlatSchema.parse(SCHEMAS["old rubric (one-char pattern string)"])
    assert old is not None and old.fields[1].choices == ('"0"', '"1"', '"2"', '"3"', '"4"', '"5"')
    s = FlatSchema.parse(obj(a={"type": "string", "pattern": "^[a-z]+$", "minLength": 4}))
    assert s is not None and s.fields[0].min_chars == 4 and s.fields[0].choices is None  # pattern left to the client
    assert FlatSchema.parse(obj(x={"type": "integer", "minimum": 0, "maximum": 10**6})) is None  # too wide
    assert FlatSchema.parse(obj(x={"type": "integer"})) is None
    assert FlatSchema.parse(obj(x={"type": "number", "minimum": 0, "maximum": 1})) is None
    assert FlatSchema.parse(obj(x={"type": "array"})) is None
    assert FlatSchema.parse({"type": "array"}) is None


def walk(tok, classes, schema: dict, budget: int, seed: int, temperature: float, bias: dict[int, float]) -> str:
    """Sample random logits through the guide until it asks for the end; every mask must allow a token."""
    flat = FlatSchema.parse(schema)
    assert flat is not None
    eos = tok.eos_token_id
    guide = JsonGuide(tok, classes, [flat], [budget], eos)
    gen = torch.Generator().manual_seed(seed)
    vocab = classes.content.shape[0]
    ids: list[int] = [0]
    for _ in range(budget):
        logits = torch.randn(1, vocab, generator=gen) * 3
        for t, b in bias.items():
            logits[0, t] += b
        masked = guide(torch.tensor([ids]), logits)[0]
        assert torch.isfinite(masked).any(), f"no allowed token after {tok.decode(ids[1:])!r}"
        probs = torch.softmax(masked / temperature, dim=-1)
        assert not torch.isnan(probs).any()
        token = int(torch.multinomial(probs, 1, generator=gen))
        if token == eos:
            return tok.decode(ids[1:])
        ids.append(token)
    raise AssertionError(f"no end within {budget} tokens: {tok.decode(ids[1:])!r}")


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_sampled_answer_is_valid_and_no_state_is_dead(tok, classes, name) -> None:
    schema = SCHEMAS[name]
    validator = Draft202012Validator(schema)
    quote = classes.quote_ids[0]
    space = tok.convert_tokens_to_ids("Ġ")
    for seed in range(40):
        # some walks push the quote (close at once) or whitespace (a blank string) hard
        bias = [{}, {quote: 12.0}, {space: 12.0}, {quote: 6.0, space: 6.0}][seed % 4]
        text = walk(tok, classes, schema, budget=160, seed=seed, temperature=0.7 + (seed % 3) * 0.5, bias=bias)
        answer = json.loads(text)
        assert list(answer) == list(schema["properties"]), text
        errors = [e.message for e in validator.iter_errors(answer)]
        assert not errors, (text, errors)
        assert all(v.strip() for v in answer.values() if isinstance(v, str)), text


def test_a_small_budget_still_closes_every_string(tok, classes) -> None:
    for seed in range(10):
        text = walk(tok, classes, RUBRIC, budget=40, seed=seed, temperature=1.0, bias={})
        assert set(json.loads(text)) == {"reasons", "score"}


def test_engine_rows_at_a_temperature_all_give_valid_scores(tmp_path) -> None:
    """Through the real engine on a tiny random model: the rubric schema at 0 and 0.7 (several seeds)."""
    model_dir = save_tiny_model(tmp_path / "tiny", never_eos=True, max_position_embeddings=512)
    engine = Engine(model_dir, max_batch=4, device="cpu")
    try:
        prompt = engine.encode_chat([{"role": "user", "content": "Rate: 被告人应当赔偿原告的全部损失。"}])
        schema = FlatSchema.parse(RUBRIC)
        reqs = [GenRequest(prompt, max_tokens=48, temperature=0, schema=schema)]
        reqs += [GenRequest(prompt, max_tokens=48, temperature=0.7, seed=s, schema=schema) for s in range(5)]
        results = [j.future.result(120) for j in engine.submit_many(reqs)]
    finally:
        engine.close()
    validator = Draft202012Validator(RUBRIC)
    for r in results:
        answer = json.loads(r.text)
        assert not list(validator.iter_errors(answer)) and answer["reasons"].strip(), r.text
        assert r.finish_reason == "stop" and r.completion_tokens <= 48
    assert engine.stats.failed == 0
