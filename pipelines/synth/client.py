"""Calling an OpenAI-compatible endpoint politely and robustly, through the official client.

The ``openai`` client's own retries are off (``max_retries=0``) so one loop here owns the
policy: 429, 5xx, timeouts and connection errors are retried with exponential backoff and
full jitter, honouring ``Retry-After`` / ``retry-after-ms``; concurrency is bounded by a
semaphore and sending waits for the RPM/TPM limiter. A response that fails validation is
retried as a new request with ``seed + attempt`` (a distinct cache key), up to
``limits.invalid_retries`` times, then rejected with its reason; a greedy request (temperature 0)
is retried at `RETRY_TEMPERATURE`, since greedy decoding ignores the seed and would only repeat
the same invalid answer. Misconfiguration that no retry
can fix (bad key, unknown model) stops the job with a clear error instead of rejecting every item.
Every transport retry is reported as a warning when it happens (a job stuck on timeouts must not
look like a slow one), and an item counts all its tries: requests sent plus cached responses used.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

from pipelines.synth.cache import CachedResponse, ResponseCache, request_key
from pipelines.synth.config import SynthConfig
from pipelines.synth.limits import RateLimiter, estimate_tokens
from pipelines.synth.validate import Verdict, validate_response, validate_text

RETRY_TEMPERATURE = 0.7  # a validation retry of a greedy request samples, or it would repeat itself
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)  # incl. timeouts
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class SynthError(RuntimeError):
    """The job cannot go on (endpoint misconfigured, no seeds ...); the message says why."""


@dataclass
class JobStats:
    requests: int = 0  # sent over the network, retries included
    cache_hits: int = 0
    transport_retries: int = 0
    prompt_tokens: int = 0  # of responses received in this run
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of responses served from the cache
    cached_completion_tokens: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)

    def cost(self, prices: Any) -> float:
        return (self.prompt_tokens * prices.prompt + self.completion_tokens * prices.completion) / 1e6


@dataclass(frozen=True)
class WorkItem:
    """One prompt: a chunk of a seed document rendered with one task's template.

    ``schema`` None asks for free text (no response format; any non-blank text is valid);
    ``params`` overrides the job's generation parameters (a candidate's temperature, the judge's
    max_tokens); ``check`` replaces schema validation (the judge's ratings must parse)."""

    index: int
    seed_doc_id: str
    chunk_index: int
    task: str
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None
    params: dict[str, Any] | None = None
    check: Callable[[str | None, str | None], Verdict] | None = None


@dataclass
class ItemResult:
    item: WorkItem
    verdict: Verdict
    response: CachedResponse | None  # the accepted response, or the last one received
    attempts: int  # generations tried (seed + attempt): what a row's meta.attempts records
    key: str | None  # cache key of ``response``
    params: dict[str, Any]
    tries: int = 0  # every request sent for this item (transport retries included) + cached responses used


def warn_stderr(message: str) -> None:
    """Default warning sink: one line on stderr, printed above a progress bar if one is shown."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)


def retry_after_s(exc: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``."""
    headers = exc.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def response_format(mode: str, task: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": task, "schema": schema, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


class EndpointCaller:
    def __init__(
        self,
        cfg: SynthConfig,
        cache: ResponseCache,
        client: AsyncOpenAI,
        stats: JobStats,
        on_request: Any = None,
        warn: Callable[[str], None] = warn_stderr,
        *,
        model: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model or cfg.endpoint.model  # a preference candidate may use another model/endpoint
        self.base_url = base_url or cfg.endpoint.base_url
        self.cache = cache
        self.client = client
        self.stats = stats
        self.limiter = RateLimiter(cfg.limits.requests_per_minute, cfg.limits.tokens_per_minute)
        self.semaphore = asyncio.Semaphore(cfg.limits.concurrency)
        self.rng = random.Random()  # jitter only: never affects what is generated
        self.on_request = on_request
        self.warn = warn

    def _params(self, attempt: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        g = self.cfg.generation
        params = {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens, "seed": g.seed}
        params.update(overrides or {})
        params["seed"] += attempt
        if attempt and not params["temperature"]:
            params["temperature"] = RETRY_TEMPERATURE
        return params

    async def run_item(self, item: WorkItem) -> ItemResult:
        fmt = response_format(self.cfg.endpoint.structured_output, item.task, item.schema)
        verdict = Verdict(None, "not_attempted")
        response: CachedResponse | None = None
        key: str | None = None
        params: dict[str, Any] = {}
        attempts = tries = 0
        for attempt in range(self.cfg.limits.invalid_retries + 1):
            attempts = attempt + 1
            params = self._params(attempt, item.params)
            key = request_key(self.model, item.messages, params, fmt)
            response = self.cache.get(key)
            if response is not None:
                tries += 1
                self.stats.cache_hits += 1
                self.stats.cached_prompt_tokens += response.prompt_tokens
                self.stats.cached_completion_tokens += response.completion_tokens
            else:
                response, failure, sent = await self._request(item, params, fmt)
                tries += sent
                if response is None:
                    verdict = Verdict(None, "request_failed", failure)
                    return ItemResult(item, verdict, None, attempts, None, params, tries)
                self.cache.put(key, self.model, response)
            if item.check is not None:
                verdict = item.check(response.content, response.finish_reason)
            elif item.schema is None:
                verdict = validate_text(response.content, response.finish_reason)
            else:
                verdict = validate_response(response.content, item.schema, response.finish_reason)
            if verdict.ok:
                break
        return ItemResult(item, verdict, response, attempts, key, params, tries)

    async def _request(
        self, item: WorkItem, params: dict[str, Any], fmt: dict[str, Any] | None
    ) -> tuple[CachedResponse | None, str | None, int]:
        """One logical request with transport retries: (response, None, requests sent) or
        (None, why it failed, requests sent)."""
        limits = self.cfg.limits
        chars = sum(len(m["content"]) for m in item.messages)
        extra = {"response_format": fmt} if fmt else {}
        last_error = "no attempt"
        sent = 0
        for retry in range(limits.max_retries + 1):
            async with self.semaphore:
                booking = await self.limiter.acquire(estimate_tokens(chars, params["max_tokens"]))
                self.stats.requests += 1
                sent += 1
                if self.on_request:
                    self.on_request()
                try:
                    r = await self.client.chat.completions.create(
                        model=self.model, messages=item.messages, **params, **extra
                    )
                except FATAL as exc:
                    raise SynthError(
                        f"endpoint {self.base_url} refused the job: HTTP {exc.status_code} "
                        f"{type(exc).__name__}: {_message(exc)} (check the model {self.model!r} and the key in "
                        f"${self.cfg.endpoint.api_key_env})"
                    ) from None
                except openai.BadRequestError as exc:
                    self.limiter.settle(booking, 0)
                    return None, f"HTTP 400: {_message(exc)}"[:500], sent
                except RETRYABLE as exc:
                    self.limiter.settle(booking, 0)
                    wait = retry_after_s(exc) if isinstance(exc, openai.APIStatusError) else None
                    kind = f"HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else type(exc).__name__
                    last_error = f"{kind}: {_message(exc)}"[:500]
                    self.stats.retry_reasons[kind] += 1
                else:
                    usage = r.usage
                    prompt_tokens = usage.prompt_tokens if usage else 0
                    completion_tokens = usage.completion_tokens if usage else 0
                    self.limiter.settle(booking, prompt_tokens + completion_tokens)
                    self.stats.prompt_tokens += prompt_tokens
                    self.stats.completion_tokens += completion_tokens
                    choice = r.choices[0] if r.choices else None
                    response = CachedResponse(
                        content=choice.message.content if choice else None,
                        finish_reason=choice.finish_reason if choice else None,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        created_at=float(r.created or time.time()),
                    )
                    return response, None, sent
            where = f"prompt {item.index} ({item.task}, seed {item.seed_doc_id[:12]})"
            if retry == limits.max_retries:
                self.warn(f"{where}: giving up after {sent} requests; last: {last_error}")
                break
            self.stats.transport_retries += 1
            backoff = min(limits.max_backoff_s, limits.backoff_s * 2**retry) * self.rng.random()
            delay = max(wait, backoff) if wait is not None else backoff
            self.warn(f"{where}: {last_error}; retry {retry + 1}/{limits.max_retries} in {delay:.1f} s")
            await asyncio.sleep(delay)
        why = f"no response after {sent} requests (1 + max_retries {limits.max_retries}); last: {last_error}"
        return None, why, sent


def _message(exc: openai.OpenAIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            return str(detail)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
