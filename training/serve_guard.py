"""What stands between the network and `training.serve`'s handlers: bind address policy, API
keys, the request-body limit and read timeout, OpenAI-shaped error bodies, and access logs.

Errors use the OpenAI body (``{"error": {"message", "type", "param", "code"}}``) so the
``openai`` client raises its own types: 400 ``BadRequestError``, 401 ``AuthenticationError``,
404 ``NotFoundError``, 413 ``APIStatusError``, 429 ``RateLimitError``, 5xx ``InternalServerError``.
Access logs are one JSON object per request on stderr: who, what path, status, time, token
counts; never the ``Authorization`` header, and no prompt or completion text unless asked for.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOG_KEY = "corpusforge.access"  # scope key: the dict a handler fills with fields for the access log
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_unavailable",
    504: "timeout_error",
}

access_log = logging.getLogger("corpusforge.serve.access")


def setup_access_log() -> None:
    """One JSON line per request on stderr (the message is already JSON)."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def api_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}
    }
    return JSONResponse(body, status_code=status, headers=headers)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class Guard:
    """Pure ASGI middleware in front of the FastAPI app (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: list[str],
        max_body_bytes: int,
        body_timeout_s: float,
        protected: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.api_keys = [k.encode() for k in api_keys]
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope[LOG_KEY] = fields
        status = {"code": 0}

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        replay = receive
        try:
            refusal = self._authorise(scope)
            if refusal is None:
                replay, refusal = await self._read_body(scope, receive)
            if refusal is not None:
                fields.setdefault("error", json.loads(refusal.body)["error"]["message"])
                await refusal(scope, receive, logged_send)
            else:
                await self.app(scope, replay, logged_send)
        finally:
            client = scope.get("client")
            record = {
                "ts": round(time.time(), 3),
                "id": fields.pop("id", None) or uuid.uuid4().hex[:12],
                "client": f"{client[0]}:{client[1]}" if client else None,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status["code"] or 499,  # 499: the client left before any answer
                "ms": round((time.perf_counter() - started) * 1000, 1),
                **fields,
            }
            access_log.info(json.dumps(record, ensure_ascii=False))

    def _authorise(self, scope: Scope) -> JSONResponse | None:
        if not self.api_keys or not self.protected(scope.get("path", "")):
            return None
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, key = header.partition(b" ")
        if scheme.lower() != b"bearer" or not key:
            return api_error(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not any(hmac.compare_digest(key.strip(), k) for k in self.api_keys):
            return api_error(401, "invalid API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[Receive, JSONResponse | None]:
        """Read the whole body (bounded in size and time) and replay it to the app; the app's
        later ``receive`` calls go to the connection (a disconnect is seen there)."""
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return receive, None
        headers = dict(scope.get("headers") or [])
        limit = self.max_body_bytes
        too_large = api_error(
            413, f"request body is larger than this server's limit of {limit} bytes", code="request_too_large"
        )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return receive, too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return receive, api_error(400, "client disconnected while sending the body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        return receive, too_large
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            return receive, api_error(408, f"request body not received within {self.body_timeout_s:g} s")
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None
