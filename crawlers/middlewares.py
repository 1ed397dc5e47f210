"""Retries that respect the server: exponential backoff, and ``Retry-After`` on 429/503.

Scrapy's stock RetryMiddleware re-queues a failed request at once, and AutoThrottle ignores
``Retry-After``. This subclass (it replaces the stock one at the same priority) keeps the stock
retry rules (RETRY_TIMES, RETRY_HTTP_CODES, RETRY_EXCEPTIONS, ``dont_retry``) and adds:

* a ``not before`` time on every retry: ``RETRY_BACKOFF_BASE * 2**(n-1)`` seconds, capped at
  ``RETRY_BACKOFF_MAX``;
* for 429 and 503 with ``Retry-After`` (seconds or an HTTP date), that wait instead, and the whole
  host is paused until then, not just the one URL, because that is what the server asked for.
  A wait longer than ``RETRY_AFTER_MAX`` gives up on the request (it is recorded as failed).
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime

from scrapy import Request
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.asyncio import sleep
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.response import response_status_message

logger = logging.getLogger(__name__)

NOT_BEFORE = "retry_not_before"


def parse_retry_after(value: bytes | str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, settings: BaseSettings):
        super().__init__(settings)
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE", 1.0)
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX", 60.0)
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX", 600.0)
        self.host_paused_until: dict[str, float] = {}

    async def process_request(self, request: Request) -> None:
        """Hold a request until its own backoff and its host's Retry-After pause have passed."""
        host = urlparse_cached(request).hostname or ""
        until = max(request.meta.get(NOT_BEFORE, 0.0), self.host_paused_until.get(host, 0.0))
        wait = until - time.time()
        if wait > 0:
            self.crawler.stats.inc_value("retry/backoff_wait_count")
            await sleep(wait)
        return None

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        wait = None
        if response.status in (429, 503):
            wait = parse_retry_after(response.headers.get(b"Retry-After"))
        if wait is not None:
            self.crawler.stats.inc_value("retry/retry_after_count")
            if wait > self.retry_after_max:
                logger.warning(
                    "Giving up on %s: Retry-After %.0fs exceeds RETRY_AFTER_MAX=%.0fs",
                    request,
                    wait,
                    self.retry_after_max,
                )
                self.crawler.stats.inc_value("retry/retry_after_too_long")
                return response
            host = urlparse_cached(request).hostname or ""
            self.host_paused_until[host] = max(self.host_paused_until.get(host, 0.0), time.time() + wait)
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        return self._schedule(retry, wait)

    def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:
        retry = super().process_exception(request, exception)
        if isinstance(retry, Request):
            return self._schedule(retry, None)
        return retry

    def _schedule(self, retry: Request, wait: float | None) -> Request:
        if wait is None:
            attempt = retry.meta.get("retry_times", 1)
            wait = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        retry.meta[NOT_BEFORE] = time.time() + wait
        return retry
