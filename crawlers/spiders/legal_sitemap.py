"""`scrapy crawl legal_sitemap -a site=NAME`: collect a site's documents from its sitemaps.

`legal_docs` started from the profile's ``sitemap_urls`` (sitemap files, sitemap indexes or
robots.txt) instead of its start URLs: the URLs matching ``documents`` are extracted, nothing
else is followed. ``scrapy crawl legal_docs -a sitemap=URL`` does the same without a profile.
"""

from __future__ import annotations

from typing import Any

from crawlers.spiders.legal_docs import LegalDocsSpider


class LegalSitemapSpider(LegalDocsSpider):
    name = "legal_sitemap"
    from_sitemaps = True

    def __init__(self, site: str | None = None, **kwargs: Any) -> None:
        super().__init__(site=site, **kwargs)
        if not self.profile.sitemap_urls:
            raise ValueError(f"{self.profile.source}: the legal_sitemap spider needs 'sitemap_urls'")
        self.rules = []  # sitemap pages only: no link following
        self._compile_rules()
