"""What spiders yield: a document, a page that is not one, a failed page, or a declined request.

The pipeline (`crawlers.pipelines.CorpusWriterPipeline`) writes documents as raw Parquet rows,
every fetched page (document, listing, duplicate, failed) as a row of the catalog table
``crawl_pages`` and every declined request as a row of ``crawl_refusals``, so nothing a crawl
saw disappears without a trace.
"""

from __future__ import annotations

import scrapy


class LegalDocumentItem(scrapy.Item):
    url = scrapy.Field()  # canonical URL when the page declares one on the same site
    fetched_url = scrapy.Field()
    title = scrapy.Field()
    text = scrapy.Field()
    lang = scrapy.Field()
    date = scrapy.Field()  # ISO date of the judgment / publication, when found
    court = scrapy.Field()
    case_number = scrapy.Field()
    http_status = scrapy.Field()
    content_type = scrapy.Field()
    encoding = scrapy.Field()
    fetched_at = scrapy.Field()  # ISO-8601 UTC
    body_sha256 = scrapy.Field()
    extractor = scrapy.Field()  # trafilatura | selector | pypdf
    depth = scrapy.Field()
    retries = scrapy.Field()
    referer = scrapy.Field()
    site = scrapy.Field()
    extra = scrapy.Field()


class CrawlPageItem(scrapy.Item):
    """A fetched page that is not a document: a listing, tag or index page (``reason`` says why)."""

    url = scrapy.Field()
    kind = scrapy.Field()  # listing
    reason = scrapy.Field()
    http_status = scrapy.Field()
    content_type = scrapy.Field()
    body_sha256 = scrapy.Field()


class CrawlFailureItem(scrapy.Item):
    """A page that was wanted but produced no document (HTTP error, timeout, extraction failure)."""

    url = scrapy.Field()
    stage = scrapy.Field()  # fetch | extract
    reason = scrapy.Field()
    http_status = scrapy.Field()


class CrawlRefusalItem(scrapy.Item):
    """A request the crawl chose not to make (robots, offsite, depth)."""

    url = scrapy.Field()
    reason = scrapy.Field()
    referer = scrapy.Field()
