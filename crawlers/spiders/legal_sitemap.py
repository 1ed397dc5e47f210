"""`scrapy crawl legal_sitemap -a site=NAME`: collect a site's documents from its sitemaps.

Uses the profile's ``sitemap_urls`` (sitemap files, sitemap indexes or robots.txt) and keeps
the URLs that match its ``documents`` regexes; extraction and output are those of `legal_docs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response
from scrapy.spiders import SitemapSpider

from crawlers.profiles import load_profile
from crawlers.spiders.base import ProfileSpiderMixin


class LegalSitemapSpider(ProfileSpiderMixin, SitemapSpider):
    name = "legal_sitemap"

    def __init__(self, site: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_profile(load_profile(site or "demo"))
        if not self.profile.sitemap_urls:
            raise ValueError(f"{self.profile.source}: the legal_sitemap spider needs 'sitemap_urls'")
        self.sitemap_rules = [(p, "parse_document") for p in self.profile.documents]
        self._cbs = [(p, self.parse_document) for p in self.profile.documents]

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> LegalSitemapSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider._connect(crawler)
        spider.sitemap_urls = [spider.absolute(u) for u in spider.profile.sitemap_urls]
        return spider

    async def start(self) -> AsyncIterator[Any]:
        for url in self.sitemap_urls:
            yield scrapy.Request(url, callback=self._parse_sitemap, errback=self.on_error)

    def _parse_sitemap(self, response: Response) -> Iterator[Any]:
        for request in super()._parse_sitemap(response):
            if request.callback == self.parse_document and self.profile.is_denied(request.url):
                continue
            if request.callback == self.parse_document and not self.on_site(request.url):
                yield from self.refusal(request.url, "offsite", response.url)
                continue
            yield request.replace(errback=self.on_error)
