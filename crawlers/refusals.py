"""Spider middlewares that record the requests Scrapy's own policies refuse.

Scrapy drops an off-site request (`OffsiteMiddleware`) or one past DEPTH_LIMIT
(`DepthMiddleware`) with only a stats counter; a corpus needs to know which links it never
followed. These middlewares apply Scrapy's policies unchanged and turn each refused request into
a `CrawlRefusalItem` (once per URL and reason), which the pipeline writes to ``crawl_refusals``.
Robots.txt refusals reach the request's errback as `IgnoreRequest` and are recorded there.
"""

from __future__ import annotations

from typing import Any

from scrapy import Request
from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware
from scrapy.http import Response
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware
from scrapy.spidermiddlewares.depth import DepthMiddleware

from crawlers.items import CrawlRefusalItem


class RefusalLog:
    """The (url, reason) pairs already recorded in this crawl, shared by the middlewares."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.seen: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, crawler: Any) -> RefusalLog:
        log = getattr(crawler, "_corpusforge_refusals", None)
        if log is None:
            log = crawler._corpusforge_refusals = cls(crawler)
        return log

    def item(self, url: str, reason: str, referer: str | None) -> CrawlRefusalItem | None:
        """The refusal record, or None when this URL was already refused for this reason."""
        if (url, reason) in self.seen:
            return None
        self.seen.add((url, reason))
        self.crawler.stats.inc_value(f"corpusforge/refused/{reason}")
        return CrawlRefusalItem(url=url, reason=reason, referer=referer)


def is_offsite(crawler: Any, request: Request) -> bool:
    """Scrapy's OffsiteMiddleware policy for ``request`` (allowed domains and their subdomains, any
    port; `allow_offsite` and `dont_filter` respected), from one policy object per crawler."""
    policy = getattr(crawler, "_corpusforge_offsite", None)
    if policy is None:
        policy = crawler._corpusforge_offsite = OffsiteMiddleware(crawler.stats)  # its policy only, no signals
        policy.crawler = crawler
    if request.dont_filter or request.meta.get("allow_offsite"):
        return False
    return not policy.should_follow(request, crawler.spider)


class OffsiteRefusalMiddleware(BaseSpiderMiddleware):
    """Refuse and record the requests Scrapy's OffsiteMiddleware would filter, before they reach
    the scheduler."""

    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        self.log = RefusalLog.of(crawler)

    def get_processed_request(self, request: Request, response: Response | None) -> Any:
        if not is_offsite(self.crawler, request):
            return request
        return self.log.item(request.url, "offsite", response.url if response else None)


class DepthRefusalMiddleware(DepthMiddleware):
    """Scrapy's DepthMiddleware (it replaces it at the same order), recording what it drops,
    except links to pages already requested at a smaller depth (a listing linking back to
    page 1 is not a refusal)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: RefusalLog | None = None
        self.requested: set[str] = set()

    def get_processed_request(self, request: Request, response: Response | None) -> Any:
        kept = super().get_processed_request(request, response)
        if kept is not None:
            self.requested.add(kept.url)
            return kept
        if response is None or request.url in self.requested:
            return None
        if self.log is None:
            self.log = RefusalLog.of(self.crawler)
        return self.log.item(request.url, "depth", response.url)
