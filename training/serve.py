"""`python -m training.serve`: an OpenAI-compatible endpoint for a local Hugging Face causal LM.

Serves ``/v1/models`` and ``/v1/chat/completions`` (chat template, max_tokens, temperature,
top_p, seed, stop, n, frequency/presence penalties, ``response_format`` json_schema/json_object,
streaming as server-sent events) with real ``usage`` token counts. Concurrent requests are
batched by `training.generation.Engine`. ``GET /stats`` reports how many requests and batches
were served, which the tests and the benchmark read. Any client that speaks the OpenAI API
(the ``openai`` package, the synthesis job) can point ``base_url`` here, or at vLLM or a hosted
API instead, with no code change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from training.base_model import resolve_model_path
from training.generation import Engine, GenRequest, GenResult
from training.json_guide import FlatSchema


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
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    user: str | None = None


def _schema_of(fmt: dict[str, Any] | None) -> tuple[FlatSchema | None, Literal["text", "json"]]:
    if not fmt or fmt.get("type") in (None, "text"):
        return None, "text"
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return FlatSchema.parse(spec.get("schema")), "json"
    if fmt.get("type") == "json_object":
        return None, "json"
    raise HTTPException(400, f"unsupported response_format type {fmt.get('type')!r}")


def create_app(engine: Engine, model_id: str) -> FastAPI:
    """The FastAPI app around one engine; ``model_id`` is the name `/v1/models` lists."""
    app = FastAPI(title="corpusforge local OpenAI-compatible endpoint")
    created = int(time.time())
    counters = {"chat_completions": 0}

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
            "chat_completions": counters["chat_completions"],
            "generated_rows": s.rows or s.requests,
            "batches": s.batches,
            "max_batch": s.max_batch,
            "generated_tokens": s.generated_tokens,
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest) -> JSONResponse | StreamingResponse:
        counters["chat_completions"] += 1
        if req.model != model_id:
            raise HTTPException(404, f"model {req.model!r} not found; this server serves {model_id!r}")
        schema, _ = _schema_of(req.response_format)
        prompt_ids = engine.encode_chat([{"role": m.role, "content": m.text()} for m in req.messages])
        room = engine.context_window - len(prompt_ids)
        if room <= 0:
            raise HTTPException(
                400, f"prompt is {len(prompt_ids)} tokens; the context window is {engine.context_window}"
            )
        max_tokens = min(req.max_completion_tokens or req.max_tokens or room, room)
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
        results: list[GenResult] = await asyncio.gather(*(asyncio.wrap_future(engine.submit(g)) for g in gen))
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        usage = {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": sum(r.completion_tokens for r in results),
            "total_tokens": len(prompt_ids) + sum(r.completion_tokens for r in results),
        }
        if req.stream:
            return StreamingResponse(_sse(completion_id, model_id, results, usage), media_type="text/event-stream")
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
                "usage": usage,
            }
        )

    return app


async def _sse(cid: str, model: str, results: list[GenResult], usage: dict[str, int]) -> AsyncIterator[str]:
    """OpenAI chunk format: role, content, finish reason per choice, then a usage chunk."""

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        return f"data: {json.dumps({**body, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    for i, r in enumerate(results):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        yield chunk([{"index": i, "delta": {"content": r.text}, "finish_reason": None}])
        yield chunk([{"index": i, "delta": {}, "finish_reason": r.finish_reason}])
    yield chunk([], usage=usage)
    yield "data: [DONE]\n\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="Hugging Face model directory (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--model-id", help="name clients use for the model (default: the directory name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=8, help="most requests generated together")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long to wait to fill a batch")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    model_dir: Path = resolve_model_path(args.model)
    engine = Engine(
        model_dir,
        max_batch=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1000,
        device=args.device,
        threads=args.threads,
    )
    model_id = args.model_id or model_dir.name
    print(f"serving {model_dir} as {model_id!r} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(engine, model_id), host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
