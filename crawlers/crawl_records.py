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
DDL = """
CREATE TABLE IF NOT EXISTS crawl_pages (
    run_id VARCHAR NOT NULL, spider VARCHAR NOT NULL, url VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    stage VARCHAR, reason VARCHAR, http_status INTEGER, content_type VARCHAR, body_sha256 VARCHAR,
    text_hash VARCHAR, duplicate_of VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS crawl_refusals (
    run_id VARCHAR NOT NULL, spider VARCHAR NOT NULL, url VARCHAR NOT NULL, reason VARCHAR NOT NULL,
    referer VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
);
"""
FAILURES_VIEW = """
CREATE OR REPLACE VIEW crawl_failures AS
SELECT run_id, spider, url, stage, reason, http_status, recorded_at FROM crawl_pages WHERE kind = 'failed'
"""


def text_hash(text: str) -> str:
    """Hash of the extracted text with whitespace runs collapsed (a print view re-flows lines)."""
    return xxhash.xxh3_128_hexdigest(" ".join(text.split()).encode("utf-8"))


def ensure_tables(cat: Catalog) -> None:
    """Create the crawl tables; an older catalog's ``crawl_failures`` table moves into ``crawl_pages``."""
    cat.conn.execute(DDL)
    [(kind,)] = cat.conn.execute(
        "SELECT coalesce(max(table_type), '') FROM information_schema.tables WHERE table_name = 'crawl_failures'"
    ).fetchall()
    if kind == "BASE TABLE":
        cat.conn.execute("BEGIN")
        cat.conn.execute(
            "INSERT INTO crawl_pages (run_id, spider, url, kind, stage, reason, http_status, recorded_at) "
            "SELECT run_id, spider, url, 'failed', stage, reason, http_status, recorded_at FROM crawl_failures"
        )
        cat.conn.execute("DROP TABLE crawl_failures")
        cat.conn.execute("COMMIT")
    cat.conn.execute(FAILURES_VIEW)


def insert_pages(cat: Catalog, rows: Iterable[tuple[Any, ...]]) -> None:
    cat.conn.executemany(
        f"INSERT INTO crawl_pages ({', '.join(PAGE_COLUMNS)}) VALUES ({', '.join('?' * len(PAGE_COLUMNS))})",
        list(rows),
    )


def insert_refusals(cat: Catalog, rows: Iterable[tuple[Any, ...]]) -> None:
    cat.conn.executemany("INSERT INTO crawl_refusals VALUES (?, ?, ?, ?, ?, ?)", list(rows))


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
        sql = "SELECT url, body_sha256, text_hash FROM crawl_pages WHERE kind = 'document'"
        params: list[Any] = []
        if run_ids is not None:
            sql += " AND run_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(run_ids)
        known = cls()
        for url, body, digest in cat.conn.execute(sql, params).fetchall():
            known.add(url, body, digest)
        return known
