"""Item pipeline: crawled documents -> raw Parquet shards in the corpus store + catalog records.

Each crawl is a catalog run (kind 'crawl'); its documents go to
``<CORPUS_ROOT>/raw/crawl/<spider>-<run_id>/part-SSSSS-NNNNN.parquet`` in the foundation's
document schema (``source = crawl:<spider>``), written atomically by `ShardWriter` and registered
as 'raw' shards, which every later ``python -m pipelines.build`` reads. Rows are committed in
segments (every CRAWL_FLUSH_ITEMS documents or CRAWL_FLUSH_SECONDS) so a long crawl's output
becomes durable as it goes; CRAWL_SHARD_MB bounds the size of one file.

Failed pages and declined links become rows of the catalog tables ``crawl_failures`` and
``crawl_refusals``. With ``-s JOBDIR=...`` the run ids of earlier sessions of the same job are
kept in the spider state, and their URLs are never written again, so a resumed crawl cannot
duplicate a document even when a page is reachable under two URLs.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from scrapy import Spider, signals
from scrapy.exceptions import DropItem

from corpus.catalog import Catalog, ShardRecord
from corpus.schema import BASE_SCHEMA, encode_meta, make_doc_id, utc_now
from corpus.store import CorpusLayout, ShardWriter
from crawlers.items import CrawlFailureItem, CrawlRefusalItem, LegalDocumentItem

MB = 1024 * 1024
STATE_KEY = "corpusforge_runs"
TABLES_DDL = """
CREATE TABLE IF NOT EXISTS crawl_failures (
    run_id VARCHAR NOT NULL, spider VARCHAR NOT NULL, url VARCHAR NOT NULL, stage VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, http_status INTEGER, recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS crawl_refusals (
    run_id VARCHAR NOT NULL, spider VARCHAR NOT NULL, url VARCHAR NOT NULL, reason VARCHAR NOT NULL,
    referer VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
);
"""
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


class CorpusWriterPipeline:
    def __init__(self, crawler: Any) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.layout = CorpusLayout.at(s.get("CORPUS_ROOT", "data"))
        self.shard_bytes = int(s.getfloat("CRAWL_SHARD_MB", 128) * MB)
        self.flush_items = s.getint("CRAWL_FLUSH_ITEMS", 500)
        self.flush_seconds = s.getfloat("CRAWL_FLUSH_SECONDS", 60.0)
        self.run_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.failures: list[tuple[Any, ...]] = []
        self.refusals: list[tuple[Any, ...]] = []
        self.written_urls: set[str] = set()
        self.segment = 0
        self.docs_written = 0
        self.failures_total = 0
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
                )
            },
        }
        with Catalog.open(self.layout) as cat:
            cat.conn.execute(TABLES_DDL)
            self.run_id = cat.start_run("crawl", command=" ".join(sys.argv), config=config, config_hash=None)
        self.directory = self.layout.raw_dir("crawl", f"{spider.name}-{self.run_id}")
        spider.logger.info("crawl run %s writing to %s", self.run_id, self.directory)

    def spider_opened(self, spider: Spider) -> None:
        """After SpiderState has loaded JOBDIR state: remember earlier sessions' URLs."""
        state = getattr(spider, "state", None)
        if state is None:
            return
        earlier = list(state.get(STATE_KEY, []))
        if earlier:
            self.written_urls = self._urls_of_runs(earlier)
            spider.logger.info(
                "resuming job: %d documents already written by runs %s", len(self.written_urls), ", ".join(earlier)
            )
        state[STATE_KEY] = [*earlier, self.run_id]

    def _urls_of_runs(self, run_ids: list[str]) -> set[str]:
        with Catalog.open(self.layout, read_only=True) as cat:
            paths = [
                str(self.layout.root / p)
                for (p,) in cat.conn.execute(
                    "SELECT path FROM shards WHERE stage = 'raw' AND run_id IN (SELECT unnest(?::VARCHAR[]))", [run_ids]
                ).fetchall()
            ]
            if not paths:
                return set()
            rows = cat.conn.execute("SELECT url FROM read_parquet(?)", [paths]).fetchall()
        return {u for (u,) in rows}

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        assert self.run_id is not None
        now = utc_now()
        if isinstance(item, LegalDocumentItem):
            if item["url"] in self.written_urls:
                self.refusals.append((item["url"], "duplicate", item.get("fetched_url"), now))
                self.crawler.stats.inc_value("corpusforge/refused/duplicate")
                raise DropItem(f"duplicate of an already written document: {item['url']}", log_level="DEBUG")
            self.written_urls.add(item["url"])
            self.rows.append(document_row(item, self.source, self.run_id))
        elif isinstance(item, CrawlFailureItem):
            self.failures.append((item["url"], item["stage"], item["reason"], item.get("http_status"), now))
            self.failures_total += 1
        elif isinstance(item, CrawlRefusalItem):
            self.refusals.append((item["url"], item["reason"], item.get("referer"), now))
        else:
            raise DropItem(f"unexpected item type {type(item).__name__}")
        if len(self.rows) >= self.flush_items or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()
        return item

    def close_spider(self, spider: Spider | None = None) -> None:
        self.flush()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.run_id is None:
            return
        stats = self.crawler.stats
        with Catalog.open(self.layout) as cat:
            cat.finish_run(
                self.run_id,
                status="succeeded" if reason == "finished" else "interrupted",
                error=None if reason == "finished" else f"closed: {reason} (resume with the same -s JOBDIR)",
                docs_in=stats.get_value("response_received_count", 0),
                docs_out=self.docs_written,
                docs_rejected=self.failures_total,
            )
            cat.conn.execute(
                "UPDATE runs SET config = json_merge_patch(config, ?) WHERE run_id = ?",
                [json.dumps({"close_reason": reason}), self.run_id],
            )

    # -- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit buffered rows as a new shard segment, and failure/refusal rows, in one catalog visit."""
        self.last_flush = time.monotonic()
        if not (self.rows or self.failures or self.refusals) or self.run_id is None:
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
        with Catalog.open(self.layout) as cat:
            cat.conn.execute("BEGIN")
            cat.register_shards(self.run_id, records)
            if self.failures:
                cat.conn.executemany(
                    "INSERT INTO crawl_failures VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(self.run_id, self.spider_name, *f) for f in self.failures],
                )
            if self.refusals:
                cat.conn.executemany(
                    "INSERT INTO crawl_refusals VALUES (?, ?, ?, ?, ?, ?)",
                    [(self.run_id, self.spider_name, *r) for r in self.refusals],
                )
            cat.conn.execute("COMMIT")
            cat.refresh_views()
        self.docs_written += len(self.rows)
        self.rows, self.failures, self.refusals = [], [], []
