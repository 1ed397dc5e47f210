"""Scrapy extension: serve a profile's bundled site (``serve:``) on loopback for the crawl.

The demo profile (`crawlers/sites/demo.yaml`) names a directory to serve, so `scrapy crawl
legal_docs` works offline. This extension starts `crawlers.demo_server.SiteServer` on
DEMO_SITE_PORT (0 = any free port) before the spider's first request, resolves the profile's
relative start and sitemap URLs against it, and stops it when the spider closes. Spiders
without a ``serve`` profile leave it disabled (NotConfigured).
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.exceptions import NotConfigured

from crawlers.demo_server import SiteServer

logger = logging.getLogger(__name__)


class ServeProfileSite:
    def __init__(self, crawler: Any) -> None:
        spider = crawler.spider
        profile = getattr(spider, "profile", None)
        if profile is None or not profile.serve:
            raise NotConfigured  # no message: Scrapy would log a warning for every other crawl
        port = crawler.settings.getint("DEMO_SITE_PORT", 8750)
        try:
            self.server = SiteServer(profile.serve, port=port).start()
        except OSError as exc:
            raise RuntimeError(
                f"cannot serve the demo site on 127.0.0.1:{port} ({exc}); "
                "pass -s DEMO_SITE_PORT=0 for any free port, or another port"
            ) from exc
        spider.profile = profile.served_at(self.server.base_url)
        logger.info("serving %s at %s", profile.serve, self.server.base_url)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> ServeProfileSite:
        return cls(crawler)

    def spider_closed(self, spider: Any) -> None:
        self.server.stop()
