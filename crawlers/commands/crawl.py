"""`scrapy crawl`, exiting non-zero when the corpus pipeline judged the crawl a failure.

Scrapy's own command exits 0 whenever the spider ran, even if it wrote nothing. The corpus
pipeline puts its verdict in the crawl stats (``corpusforge/failed``: the one-line reason, e.g.
0 documents from 206 fetched pages); this command prints it and exits 1.
"""

from __future__ import annotations

import sys
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawl

FAILED_STAT = "corpusforge/failed"


class Command(ScrapyCrawl):
    def _create_crawler(self, *args: Any, **kwargs: Any) -> Any:
        self.crawler = super()._create_crawler(*args, **kwargs)
        return self.crawler

    def run(self, args: list[str], opts: Any) -> None:
        super().run(args, opts)
        crawler = getattr(self, "crawler", None)
        failed = crawler.stats.get_value(FAILED_STAT) if crawler is not None and crawler.stats else None
        if failed:
            print(f"crawl failed: {failed}", file=sys.stderr)
            self.exitcode = 1
