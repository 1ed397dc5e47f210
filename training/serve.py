"""`python -m training.serve`: an OpenAI-compatible endpoint for a local Hugging Face causal LM.

Serves ``/v1/models`` and ``/v1/chat/completions`` (chat template, max_tokens, temperature,
top_p, seed, stop, n, frequency/presence penalties, ``response_format`` json_schema/json_object,
``stream`` as server-sent events with tokens as they are decoded) with real ``usage`` counts,
``/health`` (no key needed) and ``/stats``. Requests are decoded together by
`training.generation.Engine` (iteration-level batching); a request whose client disconnects or
that runs past ``--request-timeout-s`` is dropped from the batch at the next step.

Safe on a shared host by default: it binds 127.0.0.1 and refuses any other address without
``--allow-remote``; ``--api-key-env NAME`` requires ``Authorization: Bearer <key>`` with a key
from that variable (comma-separated for several); the body size, prompt length, ``max_tokens``
(requests above the cap are refused; within it, the answer is clamped to the context left),
``n``, concurrent requests and queued rows are limited with 400/413/429 answers the ``openai``
client raises as its own error types (`training.serve_guard`); SIGTERM answers what is in flight
with 503 and exits within seconds. ``--quantize int8`` serves int8 linear layers on CPU (`training.int8`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from common.models import ModelNotFoundError, resolve_model_path
from training.generation import QUANTIZE, Engine, EngineClosedError, GenRequest, GenResult, Job, QueueFullError
from training.json_guide import FlatSchema
from training.serve_guard import LOG_KEY, Guard, api_error, is_loopback, setup_access_log


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    user: str | None = None


@dataclass
class Limits:
    """What one request may ask for and how much the server takes on at once."""

    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int | None = None  # None: the model's context window less one
    max_tokens: int = 2048  # a request asking for more is refused; within it, clamped to the context left
    max_n: int = 4
    max_concurrent: int = 32  # chat requests in flight (queued + generating + streaming)
    request_timeout_s: float = 300.0


class Refusal(Exception):
    """A request the server will not take: an OpenAI-style error answer."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def _schema_of(fmt: dict[str, Any] | None) -> tuple[FlatSchema | None, Literal["text", "json"]]:
    if not fmt or fmt.get("type") in (None, "text"):
        return None, "text"
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return FlatSchema.parse(spec.get("schema")), "json"
    if fmt.get("type") == "json_object":
        return None, "json"
    raise Refusal(400, f"unsupported response_format type {fmt.get('type')!r}", param="response_format")


def create_app(
    engine: Engine,
    model_id: str,
    limits: Limits | None = None,
    *,
    api_keys: list[str] | None = None,
    log_prompts: bool = False,
) -> Any:
    """The ASGI app: `Guard` (keys, body limit, access log) around the FastAPI routes."""
    limits = limits or Limits()
    app = FastAPI(title="corpusforge local OpenAI-compatible endpoint")
    created = int(time.time())
    state = {"chat_completions": 0, "in_flight": 0, "refused": 0}

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> JSONResponse:
        state["refused"] += 1
        request.scope[LOG_KEY]["error"] = str(exc)
        headers = {"Retry-After": "1"} if exc.status == 429 else {"x-should-retry": "false"}
        return api_error(exc.status, str(exc), code=exc.code, param=exc.param, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        request.scope[LOG_KEY]["error"] = str(exc.detail)
        return api_error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the field and what is wrong, never the submitted value (it may be prompt text)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid request')}"
        request.scope[LOG_KEY]["error"] = message
        return api_error(400, message, param=where, code="invalid_value")

    @app.get("/health")
    async def health() -> JSONResponse:
        closing = engine.closed
        body = {
            "status": "shutting down" if closing else "ok",
            "model": model_id,
            "running": engine.running,
            "queued": engine.queued,
            "in_flight": state["in_flight"],
        }
        return JSONResponse(body, status_code=503 if closing else 200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "corpusforge"}],
        }

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        s = engine.stats
        return {
            "chat_completions": state["chat_completions"],
            "in_flight": state["in_flight"],
            "refused": state["refused"],
            "rows_finished": s.requests,
            "cancelled": s.cancelled,
            "decode_steps": s.steps,
            "row_steps": s.row_steps,
            "mean_batch": s.row_steps / s.steps if s.steps else 0.0,
            "max_batch": s.max_batch,
            "generated_tokens": s.generated_tokens,
            "running": engine.running,
            "queued": engine.queued,
            "quantize": engine.quantize,
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
        state["chat_completions"] += 1
        log: dict[str, Any] = request.scope[LOG_KEY]
        log.update(model=req.model, n=req.n, stream=req.stream)
        if log_prompts:
            log["messages"] = [m.model_dump() for m in req.messages]
        if req.model != model_id:
            raise HTTPException(404, f"model {req.model!r} not found; this server serves {model_id!r}")
        if req.n > limits.max_n:
            raise Refusal(400, f"n is {req.n}; this server allows at most {limits.max_n}", param="n")
        requested = req.max_completion_tokens or req.max_tokens
        if requested is not None and requested > limits.max_tokens:
            raise Refusal(
                400, f"max_tokens is {requested}; this server allows at most {limits.max_tokens}", param="max_tokens"
            )
        schema, _ = _schema_of(req.response_format)
        if state["in_flight"] >= limits.max_concurrent:
            raise Refusal(
                429,
                f"too many concurrent requests (limit {limits.max_concurrent}); retry shortly",
                code="too_many_requests",
            )
        state["in_flight"] += 1
        handed_to_stream = False
        try:
            messages = [{"role": m.role, "content": m.text()} for m in req.messages]
            prompt_ids = await asyncio.to_thread(engine.encode_chat, messages)
            window = engine.context_window
            allowed = min(limits.max_prompt_tokens or window - 1, window - 1)
            if len(prompt_ids) > allowed:
                raise Refusal(
                    400,
                    f"the prompt is {len(prompt_ids)} tokens; this server takes at most {allowed} "
                    f"(context window {window})",
                    code="context_length_exceeded",
                    param="messages",
                )
            max_tokens = min(requested or limits.max_tokens, window - len(prompt_ids))
            stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
            gen = [
                GenRequest(
                    prompt_ids=prompt_ids,
                    max_tokens=max_tokens,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    seed=None if req.seed is None else req.seed + i,
                    stop=stops,
                    schema=schema,
                    frequency_penalty=req.frequency_penalty,
                    presence_penalty=req.presence_penalty,
                )
                for i in range(req.n)
            ]
            log["prompt_tokens"] = len(prompt_ids)
            completion_id = f"chatcmpl-{uuid.uuid4().hex}"
            log["id"] = completion_id[9:21]
            if req.stream:
                include_usage = bool((req.stream_options or {}).get("include_usage"))
                stream = _Stream(engine, gen, completion_id, model_id, include_usage, limits.request_timeout_s, log)
                handed_to_stream = True
                return StreamingResponse(
                    stream.events(lambda: state.__setitem__("in_flight", state["in_flight"] - 1)),
                    media_type="text/event-stream",
                )
            results = await _generate(engine, gen, request, limits.request_timeout_s)
            completion = sum(r.completion_tokens for r in results)
            log.update(completion_tokens=completion, finish_reason=[r.finish_reason for r in results])
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model_id,
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": r.text},
                            "finish_reason": r.finish_reason,
                            "logprobs": None,
                        }
                        for i, r in enumerate(results)
                    ],
                    "usage": {
                        "prompt_tokens": len(prompt_ids),
                        "completion_tokens": completion,
                        "total_tokens": len(prompt_ids) + completion,
                    },
                }
            )
        finally:
            if not handed_to_stream:
                state["in_flight"] -= 1

    protected = lambda path: path.startswith("/v1/") or path == "/stats"  # noqa: E731
    return Guard(
        app,
        api_keys=api_keys or [],
        max_body_bytes=limits.max_body_bytes,
        body_timeout_s=min(30.0, limits.request_timeout_s),
        protected=protected,
    )


def _submit(engine: Engine, gen: list[GenRequest], on_text: list[Any] | None = None) -> list[Job]:
    try:
        return engine.submit_many(gen, on_text)
    except QueueFullError as exc:
        raise Refusal(429, f"the server is busy: {exc}; retry shortly", code="queue_full") from None
    except EngineClosedError as exc:
        raise Refusal(503, str(exc), code="shutting_down") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _generate(engine: Engine, gen: list[GenRequest], request: Request, timeout: float) -> list[GenResult]:
    """Wait for all rows; a disconnect or the timeout cancels them (they leave the batch)."""
    jobs = _submit(engine, gen)
    results = asyncio.gather(*(asyncio.wrap_future(j.future) for j in jobs))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({results, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if results in done:
            try:
                return results.result()
            except EngineClosedError as exc:
                raise Refusal(503, str(exc), code="shutting_down") from None
        request.scope[LOG_KEY]["cancelled"] = "client disconnected" if gone in done else "timeout"
        if gone in done:
            raise Refusal(499, "client disconnected")  # nobody reads this answer
        raise Refusal(
            504, f"generation did not finish within the server's {timeout:g} s request timeout", code="timeout"
        )
    finally:
        for job in jobs:
            job.cancel()  # no-op for finished rows
        gone.cancel()
        results.cancel()
        results.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" warning


class _Stream:
    """Server-sent events for one request: role chunks, content as the engine decodes it, a
    finish chunk per choice, usage if asked, ``[DONE]``. Leaving early (disconnect, timeout)
    cancels the rows."""

    def __init__(
        self,
        engine: Engine,
        gen: list[GenRequest],
        cid: str,
        model: str,
        include_usage: bool,
        timeout: float,
        log: dict[str, Any],
    ) -> None:
        self.cid, self.model, self.include_usage, self.timeout, self.log = cid, model, include_usage, timeout, log
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, str | None]] = asyncio.Queue()
        self.prompt_tokens = len(gen[0].prompt_ids)
        callbacks = [self._on_text(i) for i in range(len(gen))]
        self.jobs = _submit(engine, gen, callbacks)  # a refusal here is still a plain error answer
        for i, job in enumerate(self.jobs):
            job.future.add_done_callback(
                lambda _f, i=i: self.loop.call_soon_threadsafe(self.queue.put_nowait, (i, None))
            )

    def _on_text(self, index: int) -> Any:
        return lambda text: self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, text))

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": self.cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model}
        return f"data: {json.dumps({**body, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    async def events(self, release: Any) -> AsyncIterator[str]:
        deadline = time.monotonic() + self.timeout
        pending = len(self.jobs)
        completion = 0
        try:
            for i in range(len(self.jobs)):
                yield self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            while pending:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        index, text = await self.queue.get()
                except TimeoutError:
                    self.log["cancelled"] = "timeout"
                    yield self._error(
                        504, f"generation did not finish within the server's {self.timeout:g} s request timeout"
                    )
                    return
                if text is not None:
                    yield self._chunk([{"index": index, "delta": {"content": text}, "finish_reason": None}])
                    continue
                pending -= 1
                future = self.jobs[index].future
                if future.exception() is not None:
                    yield self._error(503, str(future.exception()))
                    return
                result = future.result()
                completion += result.completion_tokens
                yield self._chunk([{"index": index, "delta": {}, "finish_reason": result.finish_reason}])
            if self.include_usage:
                usage = {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": self.prompt_tokens + completion,
                }
                yield self._chunk([], usage=usage)
            yield "data: [DONE]\n\n"
        finally:
            if pending:
                self.log.setdefault("cancelled", "client disconnected")
            for job in self.jobs:
                job.cancel()
            self.log["completion_tokens"] = completion
            release()

    def _error(self, status: int, message: str) -> str:
        error = {"message": message, "type": "server_error", "code": status}
        return f"data: {json.dumps({'error': error})}\n\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    lim = Limits()
    p = argparse.ArgumentParser(prog="python -m training.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="Hugging Face model directory (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--model-id", help="name clients use for the model (default: the directory name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-env", metavar="NAME", help="require 'Authorization: Bearer <key>', keys in $NAME")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8 weights, GPTQ-rounded at load (CPU, training.int8)")
    p.add_argument("--max-batch", type=int, default=8, help="most rows decoded together")
    p.add_argument("--max-queue", type=int, default=64, help="most rows waiting for a batch slot (429 beyond)")
    p.add_argument("--max-concurrent", type=int, default=lim.max_concurrent, help="chat requests in flight (429)")
    p.add_argument("--max-body-bytes", type=int, default=lim.max_body_bytes, help="request body size (413)")
    p.add_argument("--max-prompt-tokens", type=int, help="prompt length (400; default: the context window)")
    p.add_argument("--max-tokens", type=int, default=lim.max_tokens, help="largest max_tokens accepted (400)")
    p.add_argument("--max-n", type=int, default=lim.max_n, help="largest n accepted (400)")
    p.add_argument("--request-timeout-s", type=float, default=lim.request_timeout_s, help="per request (504)")
    p.add_argument("--log-prompts", action="store_true", help="put the request messages in the access log")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    return p.parse_args(argv)


def _api_keys(name: str | None) -> list[str]:
    if name is None:
        return []
    keys = [k.strip() for k in os.environ.get(name, "").split(",") if k.strip()]
    if not keys:
        raise SystemExit(f"error: --api-key-env {name}: the variable is not set or empty")
    return keys


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"error: --host {args.host} is reachable from other machines; pass --allow-remote to serve there "
            "(with --api-key-env)",
            file=sys.stderr,
        )
        return 2
    keys = _api_keys(args.api_key_env)
    try:
        model_dir: Path = resolve_model_path(args.model)
        engine = Engine(
            model_dir,
            max_batch=args.max_batch,
            max_queue=args.max_queue,
            device=args.device,
            threads=args.threads,
            quantize=args.quantize,
        )
    except (ModelNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limits = Limits(
        max_body_bytes=args.max_body_bytes,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens=args.max_tokens,
        max_n=args.max_n,
        max_concurrent=args.max_concurrent,
        request_timeout_s=args.request_timeout_s,
    )
    model_id = args.model_id or model_dir.name
    setup_access_log()
    app = create_app(engine, model_id, limits, api_keys=keys, log_prompts=args.log_prompts)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    server = _Server(config, engine)
    where = f"http://{args.host}:{args.port}/v1"
    auth = f"API keys from ${args.api_key_env}" if keys else "no API key"
    quant = f", {args.quantize}" if args.quantize else ""
    print(f"serving {model_dir} as {model_id!r} on {where} ({auth}{quant})", file=sys.stderr, flush=True)
    if not is_loopback(args.host) and not keys:
        print("warning: serving a non-loopback address without an API key", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        engine.close(timeout=10)
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, plus: on SIGTERM/SIGINT the engine stops at once (what is in flight is
    answered 503) so the graceful shutdown does not wait for long generations."""

    def __init__(self, config: uvicorn.Config, engine: Engine) -> None:
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.engine.close(timeout=0)
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
