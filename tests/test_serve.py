"""The real `training.serve` process with the real SmolLM2 weights, driven by the real `openai` client."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from openai import AsyncOpenAI, NotFoundError, OpenAI

MODEL = "smollm2-135m-instruct"
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 120}, "answer": {"type": "string", "maxLength": 160}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You write quiz questions about a text. Reply with JSON only."},
    {"role": "user", "content": "Text: The lease was signed in Paris on 3 May 2020.\n\nWrite a question and answer."},
]


def test_models_and_guided_json_with_usage(llm_server: str) -> None:
    client = OpenAI(base_url=f"{llm_server}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == [MODEL]
    r = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "qa", "schema": SCHEMA, "strict": True}},
    )
    obj = json.loads(r.choices[0].message.content or "")
    assert set(obj) == {"question", "answer"} and obj["question"] and obj["answer"]
    assert len(obj["question"]) <= 120 and len(obj["answer"]) <= 160
    assert r.usage is not None and r.usage.prompt_tokens > 20
    assert 0 < r.usage.completion_tokens <= 60
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stop_max_tokens_and_concurrent_requests_batch(llm_server: str) -> None:
    client = OpenAI(base_url=f"{llm_server}/v1", api_key="unused")
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 5
    before = httpx.get(f"{llm_server}/stats").json()

    async def burst() -> list[str]:
        aclient = AsyncOpenAI(base_url=f"{llm_server}/v1", api_key="unused")
        rs = await asyncio.gather(
            *(
                aclient.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0)
                for _ in range(4)
            )
        )
        return [x.choices[0].message.content or "" for x in rs]

    texts = asyncio.run(burst())
    after = httpx.get(f"{llm_server}/stats").json()
    assert after["chat_completions"] - before["chat_completions"] == 4
    steps = after["decode_steps"] - before["decode_steps"]
    assert after["row_steps"] - before["row_steps"] > steps  # some decode steps carried several requests
    assert len(set(texts)) == 1  # greedy decoding is unaffected by batching here
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="other", messages=MESSAGES, max_tokens=2)


def test_streaming_real_text_with_cjk_matches_the_plain_answer(llm_server: str) -> None:
    client = OpenAI(base_url=f"{llm_server}/v1", api_key="unused")
    messages = [{"role": "user", "content": "Translate to Chinese: the contract is signed."}]
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
    pieces = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=24, temperature=0, stream=True
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == plain.choices[0].message.content and len(pieces) > 3
    body = (plain.choices[0].message.content or "").rstrip("\ufffd")  # max_tokens may cut the last character
    assert "\ufffd" not in body and not any("\ufffd" in p for p in pieces[:-1])  # no character cut in two
