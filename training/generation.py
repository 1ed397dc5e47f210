"""An iteration-level batching text-generation engine over a Hugging Face causal LM.

One worker thread owns the model and a running batch of rows, each a prompt being continued.
Between two decode steps, waiting requests join (their prompt is prefilled on its own, then its
KV cache is left-padded into the batch's) and finished or cancelled rows leave (their cache rows
are dropped, and padding no row needs any more is cut). So a short request starts at the next
step instead of waiting for the longest request of a batch, a disconnected client's row stops
at the next step, and ``max_batch`` bounds the rows decoded together.

Every row keeps its own decoding: temperature/top_p with its own seeded generator (a seed
reproduces its output whatever it is batched with), frequency/presence penalties, stop strings,
the JSON guide, ``max_tokens``. Text is produced incrementally (`training.detokenize`) and handed
to an optional ``on_text`` callback as it is decoded, holding back only what could still turn
into a stop string.
"""

from __future__ import annotations

import inspect
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from training.detokenize import IncrementalDecoder, stop_holdback
from training.int8 import quantize_int8
from training.json_guide import FlatSchema, JsonGuide, TokenClasses

QUANTIZE = ("int8",)


class QueueFullError(RuntimeError):
    """More rows wait for a batch slot than the engine's ``max_queue``."""


class EngineClosedError(RuntimeError):
    """The engine is shutting down; nothing more is generated."""


class SamplingError(RuntimeError):
    """A row's next-token distribution is empty or not finite (a guide that allows no token, NaN logits)."""


class RequestCancelledError(RuntimeError):
    """The row was dropped before it finished (its client went away, or its time ran out)."""


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


@dataclass
class GenResult:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass
class EngineStats:
    requests: int = 0  # rows finished
    cancelled: int = 0  # rows dropped because their client went away (or timed out)
    steps: int = 0  # decode steps
    row_steps: int = 0  # sum of the batch size over decode steps
    max_batch: int = 0
    generated_tokens: int = 0
    failed: int = 0  # rows whose next-token distribution was empty or not finite (SamplingError)


class Job:
    """A submitted row: ``future`` gets the result, ``on_text`` (engine thread) the text as it
    is decoded; ``cancel`` makes the engine drop the row at its next step."""

    def __init__(self, request: GenRequest, on_text: Callable[[str], None] | None) -> None:
        self.request = request
        self.on_text = on_text
        self.future: Future[GenResult] = Future()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Row:
    job: Job
    decoder: IncrementalDecoder
    generator: torch.Generator | None
    counts: torch.Tensor | None  # per-token counts of the generated tokens (penalties)
    guide: JsonGuide | None
    generated: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of ``text`` handed to on_text


class Engine:
    """Owns the model and the worker thread; ``submit`` is thread-safe."""

    def __init__(
        self,
        model_dir: Path,
        *,
        max_batch: int = 8,
        max_queue: int = 64,
        device: str | None = None,
        threads: int | None = None,
        quantize: str | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if quantize not in (None, *QUANTIZE):
            raise ValueError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
        if quantize and self.device != "cpu":
            raise ValueError(f"--quantize {quantize} is int8 for CPU inference; use --device cpu")
        self.quantize = quantize
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.model = _in_own_thread(quantize_int8, model, self.tokenizer) if quantize == "int8" else model
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # the name changed in transformers 5
        self.eos_ids = self._eos_ids()
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.stats = EngineStats()
        self._classes: TokenClasses | None = None
        self._cv = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._closed = False
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, cached positions]: 1 = a real token
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

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._rows)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return list(out)

    def submit(self, request: GenRequest, on_text: Callable[[str], None] | None = None) -> Job:
        return self.submit_many([request], on_text=[on_text])[0]

    def submit_many(
        self, requests: list[GenRequest], on_text: list[Callable[[str], None] | None] | None = None
    ) -> list[Job]:
        """Queue rows together (all or none): `QueueFullError` when they would overfill the queue."""
        callbacks = on_text or [None] * len(requests)
        jobs = [Job(r, cb) for r, cb in zip(requests, callbacks, strict=True)]
        with self._cv:
            if self._closed:
                raise EngineClosedError("the server is shutting down")
            if len(self._waiting) + len(jobs) > self.max_queue:
                raise QueueFullError(
                    f"{len(self._waiting)} rows are waiting for a batch slot (queue limit {self.max_queue})"
                )
            self._waiting.extend(jobs)
            self._cv.notify()
        return jobs

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the current step; every waiting and running row fails with EngineClosedError."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout)

    # -- worker ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not self._rows:
                    self._cv.wait()
                if self._closed:
                    break
                joiners: list[Job] = []
                while self._waiting and len(self._rows) + len(joiners) < self.max_batch:
                    joiners.append(self._waiting.popleft())
            try:
                for job in joiners:
                    self._admit(job)
                self._drop([i for i, r in enumerate(self._rows) if r.job.cancelled], cancelled=True)
                if self._rows:
                    self._step()
            except Exception as exc:  # a failed forward fails its rows; the engine keeps serving
                for row in self._rows:
                    self._fail(row.job, exc)
                self._rows, self._cache, self._mask = [], None, None
        closed = EngineClosedError("the server is shutting down")
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for job in [*waiting, *(r.job for r in self._rows)]:
            self._fail(job, closed)
        self._rows, self._cache, self._mask = [], None, None

    def _fail(self, job: Job, exc: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(exc)

    def _forward(self, input_ids: torch.Tensor, cache: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}, **kwargs)
        return out.logits[:, -1, :].float(), getattr(out, self._cache_kw)

    def _admit(self, job: Job) -> None:
        """Prefill one prompt, take its first token, and add it to the batch unless it is done."""
        if job.cancelled:
            self._cancelled(job)
            return
        req = job.request
        logits, cache = self._forward(torch.tensor([req.prompt_ids], device=self.device), DynamicCache())
        row = self._new_row(job)
        token = self._sample_or_fail(row, logits[0], req.prompt_ids[-1])
        if token is None or self._accept(row, token):
            return
        length = len(req.prompt_ids)
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        if not self._rows:
            self._cache, self._mask = cache, torch.ones(1, length, dtype=torch.long, device=self.device)
        else:
            width = max(self._mask.shape[1], length)
            for layer, (k, v) in zip(self._cache.layers, layers, strict=True):
                layer.keys = torch.cat([_pad_left(layer.keys, width), _pad_left(k, width)])
                layer.values = torch.cat([_pad_left(layer.values, width), _pad_left(v, width)])
            new_mask = torch.ones(1, length, dtype=torch.long, device=self.device)
            self._mask = torch.cat([_pad_left(self._mask, width), _pad_left(new_mask, width)])
        self._rows.append(row)

    def _new_row(self, job: Job) -> _Row:
        req = job.request
        generator = None
        if req.temperature > 0 and req.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(req.seed)
        counts = None
        if req.frequency_penalty or req.presence_penalty:
            counts = torch.zeros(self._vocab(), device=self.device)
        guide = None
        if req.schema is not None:
            if self._classes is None:
                self._classes = TokenClasses(self.tokenizer, self._vocab())
            guide = JsonGuide(self.tokenizer, self._classes, [req.schema], [req.max_tokens], self.eos_ids[0])
        return _Row(job, IncrementalDecoder(self.tokenizer), generator, counts, guide)

    def _vocab(self) -> int:
        return int(self.model.config.vocab_size)

    def _step(self) -> None:
        """One decode step for every running row, then let finished rows leave."""
        assert self._mask is not None
        rows = self._rows
        last = torch.tensor([[r.generated[-1]] for r in rows], device=self.device)
        positions = self._mask.sum(dim=1, keepdim=True)
        mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long, device=self.device)], dim=1)
        logits, self._cache = self._forward(last, self._cache, attention_mask=mask, position_ids=positions)
        self._mask = mask
        self.stats.steps += 1
        self.stats.row_steps += len(rows)
        self.stats.max_batch = max(self.stats.max_batch, len(rows))
        done = []
        for b, row in enumerate(rows):
            token = self._sample_or_fail(row, logits[b], row.generated[-1])
            if token is None or self._accept(row, token):
                done.append(b)
        self._drop(done)

    def _drop(self, indices: list[int], *, cancelled: bool = False) -> None:
        """Remove rows (finished, or ``cancelled``) from the batch and cut padding no row needs."""
        if not indices:
            return
        if cancelled:
            for i in indices:
                self._cancelled(self._rows[i].job)
        leaving = set(indices)
        keep = [i for i in range(len(self._rows)) if i not in leaving]
        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        assert self._mask is not None
        index = torch.tensor(keep, device=self.device)
        mask = self._mask.index_select(0, index)
        start = int((mask.sum(dim=0) > 0).nonzero()[0])  # leading columns that are padding in every row
        self._mask = mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]

    def _cancelled(self, job: Job) -> None:
        self.stats.cancelled += 1
        self._fail(job, RequestCancelledError("the request was cancelled"))

    # -- one row ---------------------------------------------------------------------------
    def _sample_or_fail(self, row: _Row, logits: torch.Tensor, previous: int) -> int | None:
        """The next token, or None when the row cannot be sampled: that row fails, the batch goes on."""
        try:
            return self._sample(row, logits, previous)
        except SamplingError as exc:
            self.stats.failed += 1
            self._fail(row.job, exc)
            return None

    def _sample(self, row: _Row, logits: torch.Tensor, previous: int) -> int:
        req = row.job.request
        if row.counts is not None:
            logits = logits - row.counts * req.frequency_penalty - (row.counts > 0).to(logits) * req.presence_penalty
        if row.guide is not None:
            logits = row.guide(torch.tensor([[previous]]), logits[None].clone())[0]
        if not bool(torch.isfinite(logits).any()) or bool(torch.isnan(logits).any()):
            allowed = "no token" if row.guide is not None else "no finite logit"
            raise SamplingError(f"generation stopped after {len(row.generated)} tokens: {allowed} to sample from")
        if req.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / req.temperature, dim=-1)
        if req.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            sorted_probs[(sorted_probs.cumsum(0) - sorted_probs) >= req.top_p] = 0  # keep the smallest nucleus
            return int(order[torch.multinomial(sorted_probs, 1, generator=row.generator)])
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _accept(self, row: _Row, token: int) -> bool:
        """Take ``token`` into the row; True when the row is finished (its future is then set)."""
        req = row.job.request
        row.generated.append(token)
        self.stats.generated_tokens += 1
        if row.counts is not None:
            row.counts[token] += 1
        if token in self.eos_ids:
            return self._finish(row, "stop", row.decoder.flush())
        before = len(row.text)
        row.text += row.decoder.push(token)
        if self._cut_at_stop(row, before):
            return self._finish(row, "stop", "")
        if len(row.generated) >= req.max_tokens or len(req.prompt_ids) + len(row.generated) >= self.context_window:
            return self._finish(row, "length", row.decoder.flush())
        self._emit(row, len(row.text) - stop_holdback(row.text, req.stop))
        return False

    def _cut_at_stop(self, row: _Row, scanned: int) -> bool:
        """Cut ``row.text`` at the first stop string that appears in what came after ``scanned``."""
        hits = [p for s in row.job.request.stop if (p := row.text.find(s, max(0, scanned - len(s) + 1))) >= 0]
        if not hits:
            return False
        row.text = row.text[: min(hits)]
        return True

    def _emit(self, row: _Row, upto: int) -> None:
        if upto > row.sent and row.job.on_text is not None:
            row.job.on_text(row.text[row.sent : upto])
        row.sent = max(row.sent, upto)

    def _finish(self, row: _Row, reason: str, tail: str) -> bool:
        if tail:
            before = len(row.text)
            row.text += tail
            if self._cut_at_stop(row, before):
                reason = "stop"
        self._emit(row, len(row.text))
        self.stats.requests += 1
        if not row.job.future.done():
            row.job.future.set_result(GenResult(row.text, len(row.generated), reason))
        return True


def _in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a short-lived thread. torch's CPU ops run on OpenMP (libgomp), which keeps
    one worker pool per thread that ever ran a parallel op; while the caller's pool lives, the
    generation thread's ops run 3-4x slower on 2 cores (measured: a 1536x576 linear at one row,
    34 -> 132 us). Quantising in the main thread did that to every ``--quantize int8`` server
    (0.73x fp32's tokens/s); a pool dies with its thread, so load-time work runs here."""
    with ThreadPoolExecutor(1, thread_name_prefix="model-prep") as prep:  # the thread ends on exit
        return prep.submit(fn, *args).result()


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad dimension -2 of a KV tensor [rows, heads, positions, dim] (or -1 of a mask) to ``width``."""
    dim = -1 if t.dim() == 2 else -2
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)
