"""`scrapy crawl legal_docs`: crawl a court / legislation site described by a site profile.

    scrapy crawl legal_docs                        # the bundled demo site, served on 127.0.0.1
    scrapy crawl legal_docs -a site=NAME           # crawlers/sites/NAME.yaml (or -a site=path.yaml)
    scrapy crawl legal_docs -a start_urls=https://court.example/judgments   # a site without a profile
    scrapy crawl legal_docs -a urls_file=urls.txt  # exactly these pages (one URL a line)
    scrapy crawl legal_docs -a sitemap=https://court.example/sitemap.xml    # the pages a sitemap lists

A `CrawlSpider` whose `Rule`s come from the profile (`rules_for`): listing pages (``follow``) are
parsed for links, document pages (``documents``: HTML or PDF) are extracted in a worker pool
under EXTRACTION_TIMEOUT and become documents, listings (no main text) or failed pages. With a
sitemap it is also a `SitemapSpider`: sitemaps, sitemap indexes and robots.txt are Scrapy's.
Off-site and too-deep links are refused by `crawlers.refusals`; the demo site is served by
`crawlers.extensions.ServeProfileSite`; every request's errback records its failure.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.linkextractors import IGNORED_EXTENSIONS, LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.spiders import CrawlSpider, Rule, SitemapSpider
from scrapy.utils.asyncio import run_in_thread
from twisted.python.failure import Failure

from crawlers.extract import ExtractionError, extract
from crawlers.extraction_pool import ExtractionPool, ExtractionTimeout
from crawlers.items import CrawlFailureItem
from crawlers.pages import content_type, document_item, failure_item, listing_item, page_verdict, payload_of
from crawlers.profiles import SiteProfile, adhoc_profile, load_profile
from crawlers.refusals import RefusalLog, is_offsite

DOCUMENT_EXTENSIONS = {"pdf"}


def rules_for(profile: SiteProfile) -> list[Rule]:
    """The profile's link policy as CrawlSpider rules; the first rule a link matches wins.

    Listing pages (``follow``) go to ``parse_listing`` and are followed; document pages
    (``documents``) to ``parse_page``, followed only with ``follow_links_in_documents``. With
    ``listings_are_candidates`` a page matching both is extracted *and* followed. Links to other
    hosts get a last rule of their own so that `OffsiteRefusalMiddleware` records them.
    """

    def links(**kwargs: Any) -> LinkExtractor:
        return LinkExtractor(
            deny=[p.pattern for p in profile.deny],
            deny_extensions=[e for e in IGNORED_EXTENSIONS if e not in DOCUMENT_EXTENSIONS],
            restrict_css=tuple(profile.restrict_css),
            unique=True,
            **kwargs,
        )

    documents = [p.pattern for p in profile.documents]
    follow = [p.pattern for p in profile.follow]
    listing = [Rule(links(allow=follow), callback="parse_listing", follow=True, errback="on_error")] if follow else []
    rules: list[Rule] = []
    if profile.listings_are_candidates:

        def also_followed(found: list[Any]) -> list[Any]:
            return [link for link in found if profile.should_follow(link.url)]

        rules.append(
            Rule(
                links(allow=documents),
                callback="parse_page",
                follow=True,
                process_links=also_followed,
                errback="on_error",
            )
        )
    else:
        rules.extend(listing)
    rules.append(
        Rule(
            links(allow=documents), callback="parse_page", follow=profile.follow_links_in_documents, errback="on_error"
        )
    )
    if profile.listings_are_candidates:
        rules.extend(listing)
    if profile.allowed_domains:
        rules.append(Rule(links(), follow=False, process_links="offsite_links"))
    return rules


def resolve_profile(site: str | None, **arguments: str | None) -> SiteProfile:
    """``-a site=`` names a profile; ``-a start_urls|urls_file|sitemap=`` make an ad-hoc one."""
    if any(arguments.get(k) for k in ("start_urls", "urls_file", "sitemap")):
        if site:
            raise ValueError("give either -a site=NAME or ad-hoc arguments (start_urls, urls_file, sitemap), not both")
        return adhoc_profile(**arguments)
    if any(arguments.values()):
        given = ", ".join(k for k, v in arguments.items() if v)
        raise ValueError(f"-a {given} only apply with -a start_urls, urls_file or sitemap")
    return load_profile(site or "demo")


class LegalDocsSpider(CrawlSpider, SitemapSpider):
    name = "legal_docs"
    from_sitemaps = False  # with a profile that has both, legal_docs starts from start_urls

    def __init__(
        self,
        site: str | None = None,
        start_urls: str | None = None,
        urls_file: str | None = None,
        sitemap: str | None = None,
        allowed_domains: str | None = None,
        follow: str | None = None,
        documents: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.profile = resolve_profile(
            site,
            start_urls=start_urls,
            urls_file=urls_file,
            sitemap=sitemap,
            allowed_domains=allowed_domains,
            follow=follow,
            documents=documents,
        )
        self.site = self.profile.name
        self.allowed_domains = list(self.profile.allowed_domains)
        self.rules = rules_for(self.profile)
        self.sitemap_rules = [(p, "parse_start") for p in self.profile.documents]
        super().__init__(**kwargs)
        self.pool: ExtractionPool | None = None

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> LegalDocsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        for key, value in spider.profile.settings.items():  # before Scrapy freezes them; -s still wins
            crawler.settings.set(key, value, priority="spider")
        if not spider.profile.serve:  # a served profile's relative URLs are resolved by ServeProfileSite
            spider.profile.check_absolute()
        crawler.signals.connect(spider._open_pool, signal=signals.spider_opened)
        crawler.signals.connect(spider._close_pool, signal=signals.spider_closed)
        return spider

    def offsite_links(self, links: list[Any]) -> list[Any]:
        """Links to other sites, requested only so that OffsiteRefusalMiddleware records them."""
        return [link for link in links if is_offsite(self.crawler, scrapy.Request(link.url))]

    def uses_sitemaps(self) -> bool:
        return self.from_sitemaps or not self.profile.start_urls

    def _open_pool(self, spider: scrapy.Spider) -> None:
        s = self.crawler.settings
        self.pool = ExtractionPool(s.getint("EXTRACTION_WORKERS", 2), s.getfloat("EXTRACTION_TIMEOUT", 20.0))

    def _close_pool(self, spider: scrapy.Spider, reason: str) -> None:
        if self.pool is not None:
            self.crawler.stats.set_value("extraction/timeouts", self.pool.timeouts)
            self.pool.close()

    # -- where the crawl starts ----------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        # dont_filter stays False so a resumed crawl (same JOBDIR) does not refetch its start pages
        if self.uses_sitemaps():
            for url in self.profile.sitemap_urls:
                yield scrapy.Request(url, callback=self._parse_sitemap, errback=self.on_error)
            return
        for url in self.profile.start_urls:
            yield scrapy.Request(url, callback=self.parse_start, errback=self.on_error)

    def parse_start(self, response: Response) -> AsyncIterator[Any]:
        """A start page or sitemap entry: a listing unless the profile makes it a candidate document."""
        url = response.url
        if self.profile.is_candidate(url):
            follow = self.profile.should_follow(url) or self.profile.follow_links_in_documents
            return self.parse_with_rules(response, self.parse_page, {}, follow)
        return self.parse_with_rules(response, self.parse_listing, {}, True)

    def _parse_sitemap(self, response: Response) -> Iterator[Any]:
        for request in super()._parse_sitemap(response):
            if request.callback == self.parse_start and self.profile.is_denied(request.url):
                continue
            yield request.replace(errback=self.on_error)

    # -- pages -----------------------------------------------------------------------------------
    def parse_listing(self, response: Response) -> Iterator[Any]:
        yield listing_item(response, "matches follow, not documents")

    async def parse_page(self, response: Response) -> AsyncIterator[Any]:
        """A candidate document: extract it, then record a document, a listing or a failure."""
        payload = payload_of(response)
        if payload is None:
            mime = content_type(response).split(";")[0].strip() or "unknown"
            yield self.failure(response.url, "extract", f"unsupported content type {mime}", response.status)
            return
        kind, body, encoding = payload
        assert self.pool is not None
        try:
            data = await run_in_thread(self.pool.call, extract, kind, body, response.url, self.profile.selectors)
        except ExtractionTimeout as exc:
            yield self.failure(response.url, "extract", f"timeout: {exc}", response.status)
            return
        except ExtractionError as exc:
            yield self.failure(response.url, "extract", f"error: {exc}", response.status)
            return
        verdict, reason = page_verdict(data, expect_document=self.profile.documents_expected)
        if verdict == "document":
            self.crawler.stats.inc_value("corpusforge/documents")
            yield document_item(response, data, encoding, self.site)
        elif verdict == "listing":
            self.crawler.stats.inc_value("corpusforge/listings")
            yield listing_item(response, reason)
        else:
            yield self.failure(response.url, "extract", reason, response.status)

    # -- failures ----------------------------------------------------------------------------------
    def failure(self, url: str, stage: str, reason: str, status: int | None) -> CrawlFailureItem:
        self.crawler.stats.inc_value(f"corpusforge/failed/{stage}")
        level = logging.INFO if status in (404, 410) else logging.WARNING  # dead links are routine on real sites
        self.logger.log(level, "recorded failure for %s (%s): %s", url, stage, reason)
        return failure_item(url, stage, reason, status)

    def on_error(self, failure: Failure) -> Iterator[Any]:
        """Errback of every request: turn the failure into a record instead of a log line."""
        request = failure.request  # type: ignore[attr-defined]
        if failure.check(HttpError):
            status = failure.value.response.status
            yield self.failure(request.url, "fetch", f"HTTP {status}", status)
        elif failure.check(IgnoreRequest):
            message = str(failure.value)
            if "robots.txt" in message:
                referer = (request.headers.get(b"Referer") or b"").decode("latin-1") or None
                refusal = RefusalLog.of(self.crawler).item(request.url, "robots", referer)
                if refusal is not None:
                    yield refusal
            else:
                yield self.failure(request.url, "fetch", f"ignored: {message}", None)
        else:
            yield self.failure(request.url, "fetch", f"{failure.type.__name__}: {failure.getErrorMessage()}", None)
