"""The crawl's own catalog tables, and what earlier crawls already wrote.

``crawl_pages``: one row per page a crawl dealt with: ``document`` (written), ``duplicate`` (same
canonical URL, raw body or text as a written document: ``duplicate_of``), ``listing`` (fetched,
no main text) or ``failed`` (``stage`` fetch or extract). ``crawl_failures`` is the view of the
failed rows (its columns predate ``crawl_pages``). ``crawl_refusals``: requests not made
(robots, offsite, depth). A build leaves these tables alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import xxhash

from corpus.catalog import Catalog

PAGE_COLUMNS = (
    "run_id",
    "spider",
    "url",
    "kind",
    "stage",
    "reason",
    "http_status",
    "content_type",
    "body_sha256",
    "text_hash",
    "duplicate_of",
    "recorded_at",
)
PAGES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("spider", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("content_type", pa.string()),
        pa.field("body_sha256", pa.string()),
        pa.field("text_hash", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
REFUSALS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("spider", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("referer", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
FAILURE_COLUMNS = ("run_id", "spider", "url", "stage", "reason", "http_status", "recorded_at")


def text_hash(text: str) -> str:
    """Hash of the extracted text with whitespace runs collapsed (a print view re-flows lines)."""
    return xxhash.xxh3_128_hexdigest(" ".join(text.split()).encode("utf-8"))


def ensure_tables(cat: Catalog) -> None:
    """Create the crawl tables; an older catalog's ``crawl_failures`` table moves into ``crawl_pages``."""
    cat.ensure_table("crawl_pages", PAGES_SCHEMA)
    cat.ensure_table("crawl_refusals", REFUSALS_SCHEMA)
    if cat.table_kind("crawl_failures") == "table":
        cat.move_rows("crawl_failures", "crawl_pages", FAILURE_COLUMNS, {"kind": "failed"})
    cat.define_view("crawl_failures", "crawl_pages", FAILURE_COLUMNS, kind="failed")


def insert_pages(cat: Catalog, rows: Iterable[tuple[Any, ...]]) -> None:
    cat.append_rows("crawl_pages", list(rows), PAGE_COLUMNS)


def insert_refusals(cat: Catalog, rows: Iterable[tuple[Any, ...]]) -> None:
    cat.append_rows("crawl_refusals", list(rows))


class KnownDocuments:
    """Canonical URLs, raw-body hashes and text hashes of the documents written so far, each
    mapped to the URL of the document that has it, so a second copy is recognised."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}

    def __len__(self) -> int:
        return sum(1 for k in self._first if k.startswith("u:"))

    def add(self, url: str, body_sha256: str | None, text_digest: str | None) -> None:
        for key in (
            f"u:{url}",
            f"b:{body_sha256}" if body_sha256 else None,
            f"t:{text_digest}" if text_digest else None,
        ):
            if key is not None:
                self._first.setdefault(key, url)

    def duplicate_of(self, url: str, body_sha256: str | None, text_digest: str | None) -> tuple[str, str] | None:
        """(reason, first URL) when a written document has this URL, raw body or text."""
        for key, reason in (
            (f"u:{url}", "same canonical URL"),
            (f"b:{body_sha256}", "same raw body"),
            (f"t:{text_digest}", "same text"),
        ):
            if key in self._first:
                return reason, self._first[key]
        return None

    @classmethod
    def from_catalog(cls, cat: Catalog, run_ids: list[str] | None) -> KnownDocuments:
        """Documents of the given crawl runs (None: every crawl run in this corpus)."""
        where: dict[str, Any] = {"kind": "document"} if run_ids is None else {"kind": "document", "run_id": run_ids}
        known = cls()
        for url, body, digest in cat.rows("crawl_pages", ["url", "body_sha256", "text_hash"], **where):
            known.add(url, body, digest)
        return known
