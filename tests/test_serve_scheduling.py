"""`training.serve` keeps answering: disconnected requests are cancelled, short requests join the
running batch, streams carry tokens as they are decoded, timeouts, int8 and SIGTERM. The real
server process and the real `openai` client on a tiny random Llama."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from serve_support import save_tiny_model, serve

MODEL = "tiny"
MESSAGES = [{"role": "user", "content": "Write about the lease. 合同法 第三条 🙂"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # never_eos + greedy: a request runs to its max_tokens; 8192 positions allow very long ones
    return save_tiny_model(tmp_path_factory.mktemp("sched") / MODEL, never_eos=True, max_position_embeddings=8192)


@pytest.fixture(scope="module")
def server(model_dir):
    with serve(model_dir, "--max-batch", "2", "--max-tokens", "8000", "--request-timeout-s", "6") as s:
        yield s


def client(server, **kw) -> OpenAI:
    return OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, **kw)


def stats(server) -> dict:
    return httpx.get(f"{server.base}/stats").json()


def test_disconnected_long_requests_are_cancelled_and_a_short_one_behind_them_answers(server):
    before = stats(server)
    impatient = client(server, timeout=1.0)
    timed_out: list[BaseException] = []

    def give_up() -> None:
        try:
            impatient.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8000, temperature=0)
        except openai.APITimeoutError as exc:
            timed_out.append(exc)

    threads = [threading.Thread(target=give_up) for _ in range(2)]  # both batch slots, 8000 tokens each
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(timed_out) == 2  # the clients gave up after 1 s and closed their connections
    gone = time.monotonic()
    r = client(server, timeout=30).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3 and time.monotonic() - gone < 5
    after = stats(server)
    assert after["cancelled"] - before["cancelled"] == 2
    assert after["generated_tokens"] - before["generated_tokens"] < 2 * 8000  # they stopped early
    assert after["running"] == 0 and after["in_flight"] == 0


def test_a_short_request_joins_a_running_long_one_which_then_times_out(server):
    c = client(server, timeout=60)
    failure: list[BaseException] = []

    def long() -> None:
        try:
            c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8000, temperature=0)
        except BaseException as exc:  # recorded for the assertion below
            failure.append(exc)

    started = time.monotonic()
    t = threading.Thread(target=long)
    t.start()
    while stats(server)["running"] == 0:
        time.sleep(0.02)
    asked = time.monotonic()
    r = c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3 and time.monotonic() - asked < 5
    assert stats(server)["running"] == 1  # the long one is still decoding
    t.join(60)
    took = time.monotonic() - started
    assert len(failure) == 1 and isinstance(failure[0], openai.InternalServerError)
    assert failure[0].status_code == 504 and "6 s request timeout" in failure[0].message
    assert 5 < took < 20  # cut at the server's timeout, not retried by the client
    assert stats(server)["running"] == 0


def test_streamed_chunks_arrive_as_decoded_and_join_to_the_plain_answer(server):
    c = client(server, timeout=60)
    plain = c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=150, temperature=0)
    started = time.monotonic()
    arrivals, pieces, usage = [], [], None
    stream = c.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=150,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    total = time.monotonic() - started
    assert "".join(pieces) == plain.choices[0].message.content
    assert len(pieces) > 20 and arrivals[0] < total / 2  # not one burst at the end
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens == 150


def _mapped(path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_int8_drops_the_fp32_checkpoint_mapping(model_dir):
    """from_pretrained's fp32 weights are views into the mmapped safetensors file; after int8
    quantisation no tensor may keep it mapped (it kept the int8 server at 1.27x fp32's memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.int8 import Int8Linear, quantize_int8

    weights = model_dir / "model.safetensors"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 23, 9, 40]])
    with torch.no_grad():
        want = model(input_ids=ids).logits
    assert _mapped(weights)  # the premise: the loaded model lives in the file mapping
    quantize_int8(model)  # no gc.collect() here: quantize_int8 must release the mapping itself
    assert not _mapped(weights)
    assert isinstance(model.lm_head, Int8Linear)
    with torch.no_grad():
        got = model(input_ids=ids).logits
    assert float((got - want).pow(2).mean().sqrt() / want.std()) < 0.1  # still the same model


def test_int8_serving_answers_and_sigterm_stops_it_within_seconds(model_dir):
    with serve(model_dir, "--quantize", "int8", "--max-tokens", "8000") as s:
        c = client(s, timeout=60)
        r = c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0)
        assert r.usage.completion_tokens == 5 and r.choices[0].message.content
        assert stats(s)["quantize"] == "int8"

        seen: list[str] = []
        ended: list[BaseException | None] = []

        def consume() -> None:
            try:
                for chunk in c.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=8000, temperature=0, stream=True
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        seen.append(chunk.choices[0].delta.content)
                ended.append(None)
            except BaseException as exc:  # the stream ends with the server's error event
                ended.append(exc)

        t = threading.Thread(target=consume)
        t.start()
        while len(seen) < 5:
            time.sleep(0.02)
        sent = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(timeout=30)
        assert time.monotonic() - sent < 8
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
        t.join(10)
        assert ended and isinstance(ended[0], openai.APIError)  # told, not left hanging
