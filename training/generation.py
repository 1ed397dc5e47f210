"""A batching text-generation engine over a Hugging Face causal LM.

Requests arrive from many asyncio handlers; one worker thread drains the queue, groups the
requests that can share a forward pass (greedy or unseeded sampling with the same
temperature/top_p), left-pads them and runs one ``generate`` for the group. Seeded sampling
runs alone so a seed reproduces its output. Each row keeps its own ``max_tokens``, stop
strings and JSON guide, so batching never changes what a request asked for.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from training.json_guide import FlatSchema, JsonGuide, TokenClasses


@dataclass
class GenRequest:
    """One prompt (already a list of token ids) and its decoding settings."""

    prompt_ids: list[int]
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    schema: FlatSchema | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def batch_key(self) -> tuple[Any, ...] | None:
        """Requests with equal keys can be generated together; None means run alone."""
        if self.temperature > 0 and self.seed is not None:
            return None
        return (self.temperature > 0, round(self.temperature, 6), round(self.top_p, 6))


@dataclass
class GenResult:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass
class EngineStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    max_batch: int = 0
    generated_tokens: int = 0


class _Stops(StoppingCriteria):
    """Per-row stop strings and token budgets: a finished row is padded while others go on."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[list[str]], budgets: list[int]) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.budgets = budgets

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        n = input_ids.shape[1] - self.prompt_len
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for b in range(input_ids.shape[0]):
            if n >= self.budgets[b]:
                done[b] = True
            elif self.stops[b]:
                tail = self.tokenizer.decode(input_ids[b, self.prompt_len :][-32:], skip_special_tokens=True)
                done[b] = any(s in tail for s in self.stops[b])
        return done


class _Penalties:
    """OpenAI-style frequency/presence penalties, per row, over the generated tokens only."""

    def __init__(self, prompt_len: int, freq: list[float], pres: list[float]) -> None:
        self.prompt_len = prompt_len
        self.freq = torch.tensor(freq)
        self.pres = torch.tensor(pres)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        penalty = counts * self.freq[:, None].to(scores) + (counts > 0).to(scores) * self.pres[:, None].to(scores)
        return scores - penalty


class Engine:
    """Owns the model and the worker thread; ``submit`` is thread-safe and returns a Future."""

    def __init__(
        self,
        model_dir: Path,
        *,
        max_batch: int = 8,
        batch_wait_s: float = 0.01,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.eos_ids = self._eos_ids()
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.stats = EngineStats()
        self._classes: TokenClasses | None = None
        self._queue: queue.Queue[tuple[GenRequest, Future[GenResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="generation", daemon=True)
        self._thread.start()

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, list | tuple) else ([ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return list(out)

    def submit(self, request: GenRequest) -> Future[GenResult]:
        future: Future[GenResult] = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    # -- worker ----------------------------------------------------------------------------
    def _loop(self) -> None:
        pending: list[tuple[GenRequest, Future[GenResult]]] = []
        while True:
            if not pending:
                item = self._queue.get()
                if item is None:
                    return
                pending.append(item)
            deadline = time.monotonic() + self.batch_wait_s
            while len(pending) < self.max_batch * 4:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._fail_all(pending, RuntimeError("engine closed"))
                    return
                pending.append(item)
            batch, pending = self._take_batch(pending)
            self._run(batch)

    def _take_batch(
        self, pending: list[tuple[GenRequest, Future[GenResult]]]
    ) -> tuple[list[tuple[GenRequest, Future[GenResult]]], list[tuple[GenRequest, Future[GenResult]]]]:
        key = pending[0][0].batch_key()
        if key is None:
            return pending[:1], pending[1:]
        batch, rest = [], []
        for item in pending:
            if len(batch) < self.max_batch and item[0].batch_key() == key:
                batch.append(item)
            else:
                rest.append(item)
        return batch, rest

    @staticmethod
    def _fail_all(items: list[tuple[GenRequest, Future[GenResult]]], exc: BaseException) -> None:
        for _, fut in items:
            if not fut.done():
                fut.set_exception(exc)

    def _run(self, batch: list[tuple[GenRequest, Future[GenResult]]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self.generate([r for r, _ in live])
        except BaseException as exc:  # report to every waiter, keep serving
            self._fail_all(live, exc)
            return
        for (_, fut), res in zip(live, results, strict=True):
            fut.set_result(res)

    # -- one forward batch -----------------------------------------------------------------
    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Generate for requests that share a batch key (see `GenRequest.batch_key`)."""
        tok = self.tokenizer
        enc = tok.pad({"input_ids": [r.prompt_ids for r in requests]}, return_tensors="pt").to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        budgets = [r.max_tokens for r in requests]
        processors: list[Callable[..., Any]] = []
        if any(r.frequency_penalty or r.presence_penalty for r in requests):
            processors.append(
                _Penalties(
                    prompt_len,
                    [r.frequency_penalty for r in requests],
                    [r.presence_penalty for r in requests],
                )
            )
        if any(r.schema is not None for r in requests):
            if self._classes is None:
                self._classes = TokenClasses(tok, self.model.get_output_embeddings().weight.shape[0])
            processors.append(JsonGuide(tok, self._classes, [r.schema for r in requests], budgets, self.eos_ids[0]))
        first = requests[0]
        sample = first.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=0)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=max(budgets),
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([_Stops(tok, prompt_len, [r.stop for r in requests], budgets)]),
                eos_token_id=self.eos_ids,
                pad_token_id=tok.pad_token_id,
                **kwargs,
            )
        results = [self._finish(r, out[b, prompt_len:].tolist()) for b, r in enumerate(requests)]
        self.stats.requests += len(requests)
        self.stats.batches += 1
        self.stats.max_batch = max(self.stats.max_batch, len(requests))
        self.stats.generated_tokens += sum(r.completion_tokens for r in results)
        return results

    def _finish(self, request: GenRequest, ids: list[int]) -> GenResult:
        """Cut a row at EOS, its budget or its first stop string; count the tokens it used."""
        ids = ids[: request.max_tokens]
        reason = "length"
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                ids, reason = ids[: i + 1], "stop"
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if request.stop:
            cut = min((p for p in (text.find(s) for s in request.stop) if p >= 0), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                ids = self._tokens_covering(ids, cut)
        return GenResult(text=text, completion_tokens=len(ids), finish_reason=reason)

    def _tokens_covering(self, ids: list[int], chars: int) -> list[int]:
        """The shortest prefix of ``ids`` whose text reaches ``chars`` characters (the stop)."""
        for n in range(1, len(ids) + 1):
            if len(self.tokenizer.decode(ids[:n], skip_special_tokens=True)) > chars:
                return ids[:n]
        return ids
