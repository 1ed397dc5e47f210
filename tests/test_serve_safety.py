"""`training.serve` on a shared host: keys, limits, access logs, bind address, each refusal seen
through the real `openai` client as its own error type."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from conftest import run_cli
from openai import AsyncOpenAI, OpenAI
from serve_support import save_tiny_model, serve

KEYS = "cf-test-key-one,cf-test-key-two"
SECRET = "PROMPT-TEXT-MARKER-7d1f"  # must never reach the access log
MODEL = "tiny"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    model = save_tiny_model(root / MODEL, never_eos=True, max_position_embeddings=1024)
    args = ["--api-key-env", "CF_TEST_KEYS", "--max-body-bytes", "20000", "--max-tokens", "1000", "--max-n", "2",
            "--max-concurrent", "2", "--max-queue", "1", "--max-batch", "1"]  # fmt: skip
    with serve(model, *args, env={"CF_TEST_KEYS": KEYS}, log=root / "access.log") as s:
        yield s


def client(server, key: str = "cf-test-key-one") -> OpenAI:
    return OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0, timeout=60)


def ask(c: OpenAI, content: str = f"Say something. {SECRET}", **kw):
    kw.setdefault("temperature", 0)  # greedy: the tiny model never picks its end-of-turn token
    return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def test_api_keys(server):
    assert ask(client(server), max_tokens=3).usage.completion_tokens == 3
    assert ask(client(server, "cf-test-key-two"), max_tokens=2).choices[0].finish_reason == "length"
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        ask(client(server, "wrong"), max_tokens=2)
    missing = httpx.post(f"{server.base}/v1/chat/completions", json={})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert httpx.get(f"{server.base}/stats").status_code == 401
    assert httpx.get(f"{server.base}/health").json()["status"] == "ok"  # health needs no key


def test_request_limits(server):
    c = client(server)
    with pytest.raises(openai.APIStatusError) as too_big:
        ask(c, "x" * 30_000, max_tokens=2)
    assert too_big.value.status_code == 413 and "20000 bytes" in too_big.value.message
    with pytest.raises(openai.BadRequestError, match="at most 1000") as absurd:
        ask(c, max_tokens=1_000_000_000)
    assert absurd.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError, match="context window 1024") as long_prompt:
        ask(c, "lease " * 1500, max_tokens=2)
    assert long_prompt.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="at most 2"):
        ask(c, max_tokens=2, n=3)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        ask(c, max_tokens=2, temperature=7)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=2)

    # within the cap but past the context left: clamped, and says so with finish_reason "length"
    r = ask(c, "lease " * 150, max_tokens=1000)
    assert r.usage.prompt_tokens + r.usage.completion_tokens == 1024 and r.choices[0].finish_reason == "length"


def test_concurrency_and_queue_limits(server):
    async def scenario() -> None:
        c = AsyncOpenAI(base_url=f"{server.base}/v1", api_key="cf-test-key-one", max_retries=0, timeout=120)

        def call(**kw):
            messages = [{"role": "user", "content": SECRET}]
            return c.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)

        long = asyncio.ensure_future(call(max_tokens=1000))
        while httpx.get(f"{server.base}/health").json()["running"] == 0:  # the long row holds the batch
            await asyncio.sleep(0.02)
        with pytest.raises(openai.RateLimitError, match="queue limit 1"):
            await call(max_tokens=2, n=2)  # two rows do not fit the queue of one
        queued = asyncio.ensure_future(call(max_tokens=2))
        while httpx.get(f"{server.base}/health").json()["in_flight"] < 2:
            await asyncio.sleep(0.02)
        with pytest.raises(openai.RateLimitError, match="too many concurrent requests"):
            await call(max_tokens=2)
        assert (await queued).usage.completion_tokens == 2
        assert (await long).usage.total_tokens == 1024  # 1000 asked, clamped to the context left

    asyncio.run(scenario())


def test_access_log_is_structured_and_keeps_prompts_and_keys_out(server):
    ask(client(server), max_tokens=2)
    time.sleep(0.3)
    text = server.log.read_text()
    assert SECRET not in text and "cf-test-key" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    chats = [r for r in records if r["path"] == "/v1/chat/completions"]
    assert {200, 400, 401, 404, 413, 429} <= {r["status"] for r in chats}
    ok = next(r for r in chats if r["status"] == 200)
    assert ok["prompt_tokens"] > 0 and ok["completion_tokens"] > 0 and ok["ms"] > 0 and ok["client"].startswith("127.")
    assert all(r.get("error") for r in chats if r["status"] >= 400)


def test_refuses_a_non_loopback_address_without_the_flag():
    result = run_cli("-m", "training.serve", "--host", "0.0.0.0", "--port", "1", timeout=120)
    assert result.returncode == 2 and "--allow-remote" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # refused before loading anything
    missing_key = run_cli("-m", "training.serve", "--api-key-env", "CF_NO_SUCH_VAR", timeout=120)
    assert missing_key.returncode != 0 and "CF_NO_SUCH_VAR" in missing_key.stderr
