"""Item pipeline: crawled documents -> raw Parquet shards in the corpus store + catalog records.

Each crawl is a catalog run (kind 'crawl'); its documents go to
``<CORPUS_ROOT>/raw/crawl/<spider>-<run_id>/part-SSSSS-NNNNN.parquet`` in the foundation's
document schema (``source = crawl:<spider>``), written atomically by `ShardWriter` and registered
as 'raw' shards, which every later ``python -m pipelines.build`` reads. Rows are committed in
segments (every CRAWL_FLUSH_ITEMS documents or CRAWL_FLUSH_SECONDS) so a long crawl's output
becomes durable as it goes; CRAWL_SHARD_MB bounds the size of one file.

Every page becomes a row of ``crawl_pages`` (document / duplicate / listing / failed) and every
declined request a row of ``crawl_refusals`` (`crawlers.crawl_records`). A document whose
canonical URL, raw body or text was already written (this run, or any earlier crawl into this
corpus unless CRAWL_SKIP_KNOWN=False, and always the earlier sessions of the same JOBDIR) is a
``duplicate`` page, not a second document.

At the end, a crawl that fetched more than CORPUS_MIN_DOCUMENTS_PAGES pages but yielded fewer
than CORPUS_MIN_DOCUMENTS documents (new or already known) is a failed run: the catalog run says
why (pages fetched, documents written, the top reasons) and `scrapy crawl` exits 1.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from scrapy import Spider, signals
from scrapy.exceptions import DropItem

from corpus.catalog import Catalog, Run, ShardRecord
from corpus.schema import BASE_SCHEMA, encode_meta, make_doc_id, utc_now
from corpus.store import CorpusLayout, ShardWriter
from crawlers.commands.crawl import FAILED_STAT
from crawlers.crawl_records import KnownDocuments, ensure_tables, insert_pages, insert_refusals, text_hash
from crawlers.items import CrawlFailureItem, CrawlPageItem, CrawlRefusalItem, LegalDocumentItem

MB = 1024 * 1024
STATE_KEY = "corpusforge_runs"
META_KEYS = (
    "http_status",
    "content_type",
    "encoding",
    "fetched_at",
    "fetched_url",
    "body_sha256",
    "court",
    "date",
    "case_number",
    "extractor",
    "depth",
    "retries",
    "referer",
    "site",
)


def _created_at(date: str | None, fetched_at: str | None) -> datetime | None:
    """The document's own date when the page gives one, else the fetch time (as docs/ARCHITECTURE.md says)."""
    for value in (date, fetched_at):
        if value:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def document_row(item: LegalDocumentItem, source: str, run_id: str) -> dict[str, Any]:
    """One row of the base document schema; crawl facts go to ``meta``."""
    meta = {k: item.get(k) for k in META_KEYS if item.get(k) is not None}
    meta.update(item.get("extra") or {})
    meta["crawl_run"] = run_id
    return {
        "doc_id": make_doc_id(source, item["url"], item["text"]),
        "source": source,
        "url": item["url"],
        "title": item.get("title"),
        "text": item["text"],
        "lang": item.get("lang"),
        "created_at": _created_at(item.get("date"), item.get("fetched_at")),
        "meta": encode_meta(meta),
    }


def verdict(pages: Counter[tuple[str, str]], responses: int, min_documents: int, after_pages: int) -> str | None:
    """The one-line reason a crawl failed, or None: fewer than ``min_documents`` documents (new or
    known) from more than ``after_pages`` fetched pages."""
    productive = sum(n for (kind, _), n in pages.items() if kind in ("document", "duplicate"))
    if min_documents <= 0 or responses <= after_pages or productive >= min_documents:
        return None
    written = sum(n for (kind, _), n in pages.items() if kind == "document")
    others = Counter({key: n for key, n in pages.items() if key[0] not in ("document", "duplicate")})
    top = "; ".join(f"{kind} '{reason}' x{n}" for (kind, reason), n in others.most_common(3)) or "none recorded"
    return (
        f"{written} documents written ({productive} incl. known duplicates, {min_documents} required) "
        f"from {responses} fetched pages; top reasons: {top}. See crawl_pages in the catalog; "
        "narrow the crawl with -a documents=REGEX / -a follow=REGEX or use a site profile "
        "(-s CORPUS_MIN_DOCUMENTS=0 disables this check)"
    )


class CorpusWriterPipeline:
    def __init__(self, crawler: Any) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.layout = CorpusLayout.at(s.get("CORPUS_ROOT", "data"))
        self.shard_bytes = int(s.getfloat("CRAWL_SHARD_MB", 128) * MB)
        self.flush_items = s.getint("CRAWL_FLUSH_ITEMS", 500)
        self.flush_seconds = s.getfloat("CRAWL_FLUSH_SECONDS", 60.0)
        self.skip_known = s.getbool("CRAWL_SKIP_KNOWN", True)
        self.min_documents = s.getint("CORPUS_MIN_DOCUMENTS", 1)
        self.min_documents_pages = s.getint("CORPUS_MIN_DOCUMENTS_PAGES", 10)
        self.run_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.pages: list[tuple[Any, ...]] = []
        self.refusals: list[tuple[Any, ...]] = []
        self.known = KnownDocuments()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (kind, reason) of every page this run
        self.segment = 0
        self.docs_written = 0
        self.last_flush = time.monotonic()
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> CorpusWriterPipeline:
        return cls(crawler)

    # -- lifecycle --------------------------------------------------------------------------
    def open_spider(self, spider: Spider | None = None) -> None:
        spider = spider or self.crawler.spider
        self.spider_name = spider.name
        self.source = f"crawl:{spider.name}"
        s = self.crawler.settings
        config = {
            "spider": spider.name,
            "site": getattr(spider, "site", None),
            "corpus_root": str(self.layout.root),
            "jobdir": s.get("JOBDIR"),
            "settings": {
                k: s.get(k)
                for k in (
                    "DEPTH_LIMIT",
                    "CLOSESPIDER_PAGECOUNT",
                    "CLOSESPIDER_ITEMCOUNT",
                    "ROBOTSTXT_OBEY",
                    "USER_AGENT",
                    "CRAWL_SKIP_KNOWN",
                    "CORPUS_MIN_DOCUMENTS",
                )
            },
        }
        self.run = Run.start(self.layout, "crawl", command=" ".join(sys.argv), config=config)
        self.run_id = self.run.run_id
        with self.run.catalog() as cat:
            ensure_tables(cat)
            if self.skip_known:
                self.known = KnownDocuments.from_catalog(cat, None)
        self.directory = self.layout.raw_dir("crawl", f"{spider.name}-{self.run_id}")
        spider.logger.info("crawl run %s writing to %s", self.run_id, self.directory)
        if len(self.known):
            spider.logger.info("%d documents already in the corpus will not be written again", len(self.known))

    def spider_opened(self, spider: Spider) -> None:
        """After SpiderState has loaded JOBDIR state: earlier sessions' documents are known."""
        state = getattr(spider, "state", None)
        if state is None:
            return
        earlier = list(state.get(STATE_KEY, []))
        if earlier and not self.skip_known:
            with Catalog.open(self.layout, read_only=True) as cat:
                self.known = KnownDocuments.from_catalog(cat, earlier)
        if earlier:
            spider.logger.info("resuming job after runs %s", ", ".join(earlier))
        state[STATE_KEY] = [*earlier, self.run_id]

    def _page(self, url: str, kind: str, reason: str | None, *, stage: str | None = None, **facts: Any) -> None:
        self.outcomes[(kind, reason or "")] += 1
        self.pages.append(
            (
                self.run_id,
                self.spider_name,
                url,
                kind,
                stage,
                reason,
                facts.get("http_status"),
                facts.get("content_type"),
                facts.get("body_sha256"),
                facts.get("text_hash"),
                facts.get("duplicate_of"),
                utc_now(),
            )
        )

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        assert self.run_id is not None
        if isinstance(item, LegalDocumentItem):
            self._document(item)
        elif isinstance(item, CrawlPageItem):
            facts = {k: item.get(k) for k in ("http_status", "content_type", "body_sha256")}
            self._page(item["url"], item["kind"], item.get("reason"), **facts)
        elif isinstance(item, CrawlFailureItem):
            self._page(item["url"], "failed", item["reason"], stage=item["stage"], http_status=item.get("http_status"))
        elif isinstance(item, CrawlRefusalItem):
            self.refusals.append(
                (self.run_id, self.spider_name, item["url"], item["reason"], item.get("referer"), utc_now())
            )
        else:
            raise DropItem(f"unexpected item type {type(item).__name__}")
        if len(self.rows) >= self.flush_items or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()
        return item

    def _document(self, item: LegalDocumentItem) -> None:
        digest = text_hash(item["text"])
        facts = {
            "http_status": item.get("http_status"),
            "content_type": item.get("content_type"),
            "body_sha256": item.get("body_sha256"),
            "text_hash": digest,
        }
        duplicate = self.known.duplicate_of(item["url"], item.get("body_sha256"), digest)
        if duplicate is not None:
            reason, first = duplicate
            self.crawler.stats.inc_value("corpusforge/duplicates")
            self._page(item["fetched_url"], "duplicate", reason, duplicate_of=first, **facts)
            raise DropItem(f"{item['fetched_url']}: {reason} as {first}", log_level="DEBUG")
        self.known.add(item["url"], item.get("body_sha256"), digest)
        self.rows.append(document_row(item, self.source, self.run_id))
        self._page(item["url"], "document", None, **facts)

    def close_spider(self, spider: Spider | None = None) -> None:
        self.flush()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.run_id is None:
            return
        stats = self.crawler.stats
        responses = stats.get_value("response_received_count", 0)
        failed = verdict(self.outcomes, responses, self.min_documents, self.min_documents_pages)
        if failed:
            status, error = "failed", failed
            stats.set_value(FAILED_STAT, failed)
            spider.logger.error("crawl failed: %s", failed)
        elif reason == "finished":
            status, error = "succeeded", None
        else:
            status, error = "interrupted", f"closed: {reason} (resume with the same -s JOBDIR)"
        self.run.finish(
            status,
            error=error,
            docs_in=responses,
            docs_out=self.docs_written,
            docs_rejected=sum(n for (kind, _), n in self.outcomes.items() if kind == "failed"),
            config={"close_reason": reason},
        )

    # -- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit buffered rows as a new shard segment, with their page and refusal rows, in one catalog visit."""
        self.last_flush = time.monotonic()
        if not (self.rows or self.pages or self.refusals) or self.run_id is None:
            return
        records: list[ShardRecord] = []
        if self.rows:
            writer = ShardWriter(
                self.directory, BASE_SCHEMA, target_bytes=self.shard_bytes, prefix=f"part-{self.segment:05d}"
            )
            writer.write(pa.Table.from_pylist(self.rows, schema=BASE_SCHEMA))
            paths = writer.close()
            records = [ShardRecord.of(p, "raw", n, self.layout.root) for p, n in zip(paths, writer.rows, strict=True)]
            self.segment += 1
        with self.run.catalog() as cat:
            cat.register_shards(self.run_id, records)
            if self.pages:
                insert_pages(cat, self.pages)
            if self.refusals:
                insert_refusals(cat, self.refusals)
            cat.refresh_views()
        self.docs_written += len(self.rows)
        self.rows, self.pages, self.refusals = [], [], []
