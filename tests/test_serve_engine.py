"""The generation engine in-process on a tiny random Llama: iteration-level batching gives every
row what it would get alone, rows join and leave between steps, cancellation, incremental text."""

from __future__ import annotations

import random
import time

import pytest
from serve_support import save_tiny_model, tiny_tokenizer

from training.detokenize import IncrementalDecoder, stop_holdback
from training.generation import (
    Engine,
    EngineClosedError,
    GenRequest,
    QueueFullError,
    RequestCancelledError,
    SamplingError,
)

PROMPTS = ["The lease ends.", "合同法 第三条 规定了什么？", "List three colours, please, in order.", "Hi"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("engine") / "tiny", never_eos=True, max_position_embeddings=512)


def requests(engine: Engine, budgets: list[int], **kw) -> list[GenRequest]:
    return [
        GenRequest(prompt_ids=engine.encode_chat([{"role": "user", "content": p}]), max_tokens=n, **kw)
        for p, n in zip(PROMPTS, budgets, strict=True)
    ]


def test_incremental_text_never_splits_a_character_and_joins_to_the_full_decode():
    tok = tiny_tokenizer()
    text = "合同法 第三条 🙂 émigré — the lease ends. 契約書"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) // 2  # most CJK characters are several byte tokens here
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    rnd = random.Random(0)
    for _ in range(50):  # arbitrary ids (invalid byte runs included) join to what decode gives
        ids = [rnd.randrange(len(tok)) for _ in range(30)]
        decoder = IncrementalDecoder(tok)
        joined = "".join(decoder.push(i) for i in ids) + decoder.flush()
        assert joined == tok.decode(ids, skip_special_tokens=True)
    assert stop_holdback("answer: EN", ["END", "\n\n"]) == 2 and stop_holdback("answer", ["END"]) == 0


def test_batched_rows_match_solo_rows_and_join_between_steps(model_dir):
    budgets = [40, 12, 30, 5]
    solo_engine = Engine(model_dir, max_batch=1, device="cpu")
    solo = [f.future.result(60) for f in solo_engine.submit_many(requests(solo_engine, budgets, temperature=0))]
    seeded_solo = solo_engine.submit(requests(solo_engine, [20] * 4, temperature=0.9, seed=7)[0]).future.result(60)
    solo_engine.close()

    engine = Engine(model_dir, max_batch=4, device="cpu")
    try:
        long = engine.submit(requests(engine, [200, 1, 1, 1], temperature=0)[0])
        while engine.stats.steps < 5:  # the long row is decoding alone ...
            time.sleep(0.01)
        jobs = engine.submit_many(requests(engine, budgets, temperature=0))  # ... and these join it
        got = [j.future.result(60) for j in jobs]
        assert not long.future.done()  # the short rows finished while the long one went on
        seeded = engine.submit(requests(engine, [20] * 4, temperature=0.9, seed=7)[0]).future.result(60)
        assert long.future.result(60).completion_tokens == 200
        assert [(r.text, r.completion_tokens, r.finish_reason) for r in got] == [
            (r.text, r.completion_tokens, r.finish_reason) for r in solo
        ]
        assert seeded.text == seeded_solo.text  # a seed reproduces its row whatever it is batched with
        assert engine.stats.max_batch >= 4 and engine.stats.row_steps > engine.stats.steps
        deadline = time.monotonic() + 10  # a row's future is set just before the engine thread drops it
        while (engine.running or engine._mask is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.running == 0 and engine._mask is None  # every row left, the batch is empty
    finally:
        engine.close()


def test_stop_strings_cancellation_queue_limit_and_close(model_dir):
    engine = Engine(model_dir, max_batch=1, max_queue=2, device="cpu")
    try:
        free = engine.submit(requests(engine, [60, 1, 1, 1], temperature=0)[0]).future.result(60)
        stop = free.text[10:13]
        cut = engine.submit(requests(engine, [60, 1, 1, 1], temperature=0, stop=[stop])[0]).future.result(60)
        assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.find(stop)]

        long = engine.submit(requests(engine, [400, 1, 1, 1], temperature=0)[0])
        while engine.running == 0:
            time.sleep(0.01)
        engine.submit_many(requests(engine, [5, 5, 1, 1], temperature=0)[:2])  # the queue is now full
        with pytest.raises(QueueFullError, match="queue limit 2"):
            engine.submit(requests(engine, [5, 1, 1, 1], temperature=0)[0])
        long.cancel()
        with pytest.raises(RequestCancelledError):
            long.future.result(30)
        assert engine.stats.cancelled == 1
        waiting = engine.submit(requests(engine, [400, 1, 1, 1], temperature=0)[0])
    finally:
        engine.close()
    with pytest.raises(EngineClosedError):
        waiting.future.result(30)
    with pytest.raises(EngineClosedError):
        engine.submit(requests(engine, [5, 1, 1, 1])[0])


def test_a_row_that_cannot_be_sampled_fails_alone_and_the_engine_keeps_serving(model_dir):
    """NaN logits (here from a NaN penalty; in the field a guide with no allowed token) once crashed
    every row of the batch; now only that row fails, with a clear error."""
    engine = Engine(model_dir, max_batch=4, device="cpu")
    try:
        long = engine.submit(requests(engine, [60, 1, 1, 1], temperature=0)[0])
        while engine.running == 0:
            time.sleep(0.01)
        bad = engine.submit(requests(engine, [5, 5, 1, 1], temperature=0.7, frequency_penalty=float("nan"))[1])
        with pytest.raises(SamplingError, match="no finite logit"):
            bad.future.result(60)
        assert long.future.result(60).completion_tokens == 60  # the running row was not touched
        after = engine.submit(requests(engine, [5, 1, 1, 1], temperature=0.7, seed=3)[0]).future.result(60)
        assert after.completion_tokens == 5 and engine.stats.failed == 1
    finally:
        engine.close()


def test_int8_quantises_in_a_thread_of_its_own(model_dir, monkeypatch):
    """torch's OpenMP keeps a worker pool per thread that ran a parallel op; a live pool in the
    main thread made every generation-thread op of ``--quantize int8`` 3-4x slower on 2 cores.
    So the load-time quantisation runs in a short-lived thread, and errors still reach the caller."""
    import threading

    import training.generation as generation

    seen = []
    real = generation.quantize_int8

    def spy(model, tokenizer):
        seen.append(threading.current_thread())
        return real(model)  # round to nearest: the thread is what is tested

    monkeypatch.setattr(generation, "quantize_int8", spy)
    engine = Engine(model_dir, device="cpu", quantize="int8")
    try:
        assert seen and seen[0] is not threading.main_thread() and not seen[0].is_alive()
        out = engine.submit(requests(engine, [3, 1, 1, 1], temperature=0)[0]).future.result(60)
        assert out.completion_tokens == 3
    finally:
        engine.close()

    def broken(model, tokenizer):
        raise RuntimeError("no calibration today")

    monkeypatch.setattr(generation, "quantize_int8", broken)
    with pytest.raises(RuntimeError, match="no calibration today"):
        Engine(model_dir, device="cpu", quantize="int8")
