"""What every corpusforge spider shares: site profile, demo server, extraction, error records.

Spiders subclass `ProfileSpiderMixin` next to a Scrapy spider class. Document pages go through
`parse_document`, which extracts in the worker pool under EXTRACTION_TIMEOUT and yields either a
`LegalDocumentItem` or a `CrawlFailureItem`; every request uses `on_error` as errback, so HTTP
errors, timeouts and robots refusals are recorded too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse

import scrapy
from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.linkextractors import IGNORED_EXTENSIONS, LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.asyncio import run_in_thread
from twisted.python.failure import Failure

from crawlers.demo_server import SiteServer
from crawlers.extract import MIN_BODY_CHARS, ExtractionError, extract
from crawlers.extraction_pool import ExtractionPool, ExtractionTimeout
from crawlers.items import CrawlFailureItem, CrawlRefusalItem, LegalDocumentItem
from crawlers.profiles import SiteProfile, adhoc_profile, load_profile

DOCUMENT_EXTENSIONS = {"pdf"}


def resolve_profile(
    site: str | None, start_urls: str | None, allowed_domains: str | None, follow: str | None, documents: str | None
) -> SiteProfile:
    if start_urls:
        return adhoc_profile(start_urls, allowed_domains, follow, documents)
    return load_profile(site or "demo")


class ProfileSpiderMixin:
    profile: SiteProfile
    crawler: Any
    settings: Any
    logger: Any
    name: str

    def _init_profile(self, profile: SiteProfile) -> None:
        self.profile = profile
        self.site = profile.name
        self.allowed_domains = list(profile.allowed_domains)
        self.server: SiteServer | None = None
        self.pool: ExtractionPool | None = None
        self.base_url: str | None = None
        self._refused: set[tuple[str, str]] = set()
        self._requested: set[str] = set()  # links already requested this session (the dupefilter has the rest)

    def _connect(self, crawler: Any) -> None:
        """Apply the profile's settings, start the demo server (so start URLs can be resolved) and
        hook open/close signals. Runs before Scrapy freezes the settings; ``-s`` still wins."""
        for key, value in self.profile.settings.items():
            crawler.settings.set(key, value, priority="spider")
        if self.profile.serve:
            port = crawler.settings.getint("DEMO_SITE_PORT", 8750)
            try:
                self.server = SiteServer(self.profile.serve, port=port).start()
            except OSError as exc:
                raise RuntimeError(
                    f"cannot serve the demo site on 127.0.0.1:{port} ({exc}); "
                    "pass -s DEMO_SITE_PORT=0 for any free port, or another port"
                ) from exc
            self.base_url = self.server.base_url
            self.logger.info("serving %s at %s", self.profile.serve, self.base_url)
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    def _spider_opened(self, spider: scrapy.Spider) -> None:
        s = self.crawler.settings
        self.pool = ExtractionPool(s.getint("EXTRACTION_WORKERS", 2), s.getfloat("EXTRACTION_TIMEOUT", 20.0))

    def _spider_closed(self, spider: scrapy.Spider, reason: str) -> None:
        if self.pool is not None:
            self.crawler.stats.set_value("extraction/timeouts", self.pool.timeouts)
            self.pool.close()
        if self.server is not None:
            self.server.stop()

    def absolute(self, url: str) -> str:
        """Profile URLs may be relative to the served demo site."""
        if urlparse(url).scheme:
            return url
        if self.base_url is None:
            raise ValueError(f"{self.profile.source}: relative URL {url!r} needs 'serve' in the profile")
        return urljoin(self.base_url + "/", url.lstrip("/"))

    # -- links ------------------------------------------------------------------------------
    def refusal(self, url: str, reason: str, referer: str | None) -> Iterator[CrawlRefusalItem]:
        if (url, reason) not in self._refused:
            self._refused.add((url, reason))
            self.crawler.stats.inc_value(f"corpusforge/refused/{reason}")
            yield CrawlRefusalItem(url=url, reason=reason, referer=referer)

    def on_site(self, url: str) -> bool:
        """Host is an allowed domain or a subdomain of one (ports are ignored, as OffsiteMiddleware does)."""
        if not self.allowed_domains:
            return True
        host = (urlparse(url).hostname or "").lower()
        return any(host == d.lower() or host.endswith("." + d.lower()) for d in self.allowed_domains)

    def follow_links(self, response: Response) -> Iterator[Any]:
        """Requests for the listing and document links of a page; refusals for the rest worth noting."""
        if not isinstance(response, TextResponse):
            return
        extractor = LinkExtractor(
            deny_extensions=[e for e in IGNORED_EXTENSIONS if e not in DOCUMENT_EXTENSIONS],
            restrict_css=tuple(self.profile.restrict_css),
            unique=True,
        )
        depth = response.meta.get("depth", 0) + 1
        limit = self.crawler.settings.getint("DEPTH_LIMIT", 0)
        for link in extractor.extract_links(response):
            url = urldefrag(link.url).url
            if urlparse(url).scheme not in ("http", "https"):
                continue
            if not self.on_site(url):
                yield from self.refusal(url, "offsite", response.url)
                continue
            listing = self.profile.should_follow(url)
            document = not listing and self.profile.is_document(url)
            if not (listing or document):
                self.crawler.stats.inc_value("corpusforge/links_not_matched")
                continue
            if url in self._requested:
                continue
            if limit and depth > limit:
                yield from self.refusal(url, "depth", response.url)
                continue
            self._requested.add(url)
            callback = self.parse if listing else self.parse_document  # type: ignore[attr-defined]
            yield scrapy.Request(url, callback=callback, errback=self.on_error)

    # -- documents --------------------------------------------------------------------------
    async def parse_document(self, response: Response) -> Any:
        if self.profile.follow_links_in_documents:
            for request_or_item in self.follow_links(response):
                yield request_or_item
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1")
        mime = ctype.split(";")[0].strip().lower()
        if mime == "application/pdf" or response.body[:5] == b"%PDF-":
            kind, payload = "pdf", response.body
        elif isinstance(response, TextResponse) and (
            not mime or "html" in mime or "xml" in mime or mime == "text/plain"
        ):
            kind, payload = "html", response.text
        else:
            yield self.failure(
                response.url, "extract", f"unsupported content type {mime or 'unknown'}", response.status
            )
            return
        assert self.pool is not None
        try:
            data = await run_in_thread(self.pool.call, extract, kind, payload, response.url, self.profile.selectors)
        except ExtractionTimeout as exc:
            yield self.failure(response.url, "extract", f"timeout: {exc}", response.status)
            return
        except ExtractionError as exc:
            yield self.failure(response.url, "extract", f"error: {exc}", response.status)
            return
        text = data["text"]
        if len(text.strip()) < MIN_BODY_CHARS:
            yield self.failure(response.url, "extract", "no main text found", response.status)
            return
        url = urldefrag(response.url).url
        if data.get("canonical_url"):
            canonical = urldefrag(urljoin(response.url, data["canonical_url"])).url
            if urlparse(canonical).netloc == urlparse(url).netloc:
                url = canonical
        self.crawler.stats.inc_value("corpusforge/documents")
        yield LegalDocumentItem(
            url=url,
            fetched_url=response.url,
            title=data.get("title"),
            text=text,
            lang=data.get("lang"),
            date=data.get("date"),
            court=data.get("court"),
            case_number=data.get("case_number"),
            http_status=response.status,
            content_type=ctype or None,
            encoding=getattr(response, "encoding", None) if kind == "html" else None,
            fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
            body_sha256=hashlib.sha256(response.body).hexdigest(),
            extractor=data.get("extractor"),
            depth=response.meta.get("depth", 0),
            retries=response.request.meta.get("retry_times", 0) if response.request else 0,
            referer=(response.request.headers.get(b"Referer") or b"").decode("latin-1") or None
            if response.request
            else None,
            site=self.site,
            extra=data.get("extra") or {},
        )

    def failure(self, url: str, stage: str, reason: str, status: int | None) -> CrawlFailureItem:
        self.crawler.stats.inc_value(f"corpusforge/failed/{stage}")
        self.logger.warning("recorded failure for %s (%s): %s", url, stage, reason)
        return CrawlFailureItem(url=url, stage=stage, reason=reason, http_status=status)

    def on_error(self, failure: Failure) -> Iterator[Any]:
        """Errback of every request: turn the failure into a record instead of a log line."""
        request = failure.request  # type: ignore[attr-defined]
        referer = (request.headers.get(b"Referer") or b"").decode("latin-1") or None
        if failure.check(HttpError):
            status = failure.value.response.status
            yield self.failure(request.url, "fetch", f"HTTP {status}", status)
        elif failure.check(IgnoreRequest):
            message = str(failure.value)
            if "robots.txt" in message:
                yield from self.refusal(request.url, "robots", referer)
            elif "offsite" in message.lower():
                yield from self.refusal(request.url, "offsite", referer)
            else:
                yield self.failure(request.url, "fetch", f"ignored: {message}", None)
        else:
            yield self.failure(request.url, "fetch", f"{failure.type.__name__}: {failure.getErrorMessage()}", None)
