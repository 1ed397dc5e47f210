"""`scrapy crawl legal_docs`: crawl a court / legislation site described by a site profile.

    scrapy crawl legal_docs                        # the bundled demo site, served on 127.0.0.1
    scrapy crawl legal_docs -a site=NAME           # crawlers/sites/NAME.yaml (or -a site=path.yaml)
    scrapy crawl legal_docs -a start_urls=https://court.example/judgments -a allowed_domains=court.example

Listing and pagination pages (profile ``follow``) are parsed for links; document pages
(profile ``documents``: HTML or PDF) are extracted and stored by the corpus pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.http import Response

from crawlers.spiders.base import ProfileSpiderMixin, resolve_profile


class LegalDocsSpider(ProfileSpiderMixin, scrapy.Spider):
    name = "legal_docs"

    def __init__(
        self,
        site: str | None = None,
        start_urls: str | None = None,
        allowed_domains: str | None = None,
        follow: str | None = None,
        documents: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_profile(resolve_profile(site, start_urls, allowed_domains, follow, documents))

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> LegalDocsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider._connect(crawler)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        # dont_filter stays False so a resumed crawl (same JOBDIR) does not refetch its start pages
        for url in self.profile.start_urls:
            url = self.absolute(url)
            self._requested.add(url)
            if self.profile.should_follow(url) or not self.profile.is_document(url):
                yield scrapy.Request(url, callback=self.parse, errback=self.on_error)
            else:
                yield scrapy.Request(url, callback=self.parse_document, errback=self.on_error)

    def parse(self, response: Response, **kwargs: Any) -> Any:
        """A listing or pagination page: follow its links."""
        yield from self.follow_links(response)
