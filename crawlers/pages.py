"""From a fetched response and its extracted fields to what the crawl records.

`payload_of` decides how a response is extracted (PDF bytes, decoded HTML, or unsupported);
`page_verdict` decides whether the extracted fields are a document or a page without main text
(a listing, a tag or index page); `document_item` / `listing_item` / `failure_item` build the
items the pipeline writes. Spiders only glue these to Scrapy callbacks.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse

from scrapy.http import Response, TextResponse

from crawlers.extract import MIN_BODY_CHARS
from crawlers.items import CrawlFailureItem, CrawlPageItem, LegalDocumentItem

# A candidate page (ad-hoc crawl) whose extracted lines are to this share the texts of its own
# links is a listing: an index of teaser headlines, not a document.
MAX_LINK_LINE_RATIO = 0.3


def content_type(response: Response) -> str:
    return response.headers.get(b"Content-Type", b"").decode("latin-1")


def decode_html(response: TextResponse) -> tuple[str, str]:
    """The page's text and the encoding it was read with.

    Scrapy takes the charset from the HTTP header, a BOM, then ``<meta>`` (GB2312/GBK labels
    read as GB18030). Declarations lie, typically a CMS template saying gb2312 or ISO-8859-1
    over UTF-8 bytes; a body with non-ASCII bytes that is valid UTF-8 is read as UTF-8, since
    GBK or Latin-1 text of any length practically never is."""
    body = response.body
    if response.encoding not in ("utf-8", "utf8") and not body.isascii():
        try:
            return body.decode("utf-8").removeprefix("\ufeff"), "utf-8"
        except UnicodeDecodeError:
            pass
    return response.text, response.encoding


HTML_TYPES = {"", "text/html", "application/xhtml+xml"}


def payload_of(response: Response) -> tuple[str, str | bytes, str | None] | None:
    """('pdf', bytes, None), ('html' | 'text', str, encoding) for an extractable response, None for
    other content (images, feeds, sitemaps, archives: not documents)."""
    mime = content_type(response).split(";")[0].strip().lower()
    if mime == "application/pdf" or response.body[:5] == b"%PDF-":
        return "pdf", response.body, None
    if isinstance(response, TextResponse) and mime in HTML_TYPES | {"text/plain"}:
        return ("text" if mime == "text/plain" else "html"), *decode_html(response)
    return None


def page_verdict(data: dict[str, Any], *, expect_document: bool) -> tuple[str, str]:
    """('document', '') or (kind, reason) for a page that is not a document.

    A page the profile names as a document but that has no main text is a ``failed`` page (the
    site or the profile is broken); a candidate of an ad-hoc crawl without main text, or whose
    text is mostly its own link texts, is a ``listing``.
    """
    text = data["text"].strip()
    if len(text) < MIN_BODY_CHARS:
        return ("failed" if expect_document else "listing"), "no main text found"
    if not expect_document and data.get("link_line_ratio", 0.0) >= MAX_LINK_LINE_RATIO:
        return "listing", "main text is mostly link texts"
    return "document", ""


def canonical_url(response: Response, declared: str | None) -> str:
    """The page's declared canonical URL (``<link rel=canonical>``, ``og:url``) when it is on the
    same host, else the fetched URL; fragments dropped."""
    url = urldefrag(response.url).url
    if declared:
        canonical = urldefrag(urljoin(response.url, declared)).url
        if urlparse(canonical).scheme in ("http", "https") and urlparse(canonical).netloc == urlparse(url).netloc:
            return canonical
    return url


def body_sha256(response: Response) -> str:
    return hashlib.sha256(response.body).hexdigest()


def _referer(response: Response) -> str | None:
    if response.request is None:
        return None
    return (response.request.headers.get(b"Referer") or b"").decode("latin-1") or None


def document_item(response: Response, data: dict[str, Any], encoding: str | None, site: str) -> LegalDocumentItem:
    return LegalDocumentItem(
        url=canonical_url(response, data.get("canonical_url")),
        fetched_url=response.url,
        title=data.get("title"),
        text=data["text"],
        lang=data.get("lang"),
        date=data.get("date"),
        court=data.get("court"),
        case_number=data.get("case_number"),
        http_status=response.status,
        content_type=content_type(response) or None,
        encoding=encoding,
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        body_sha256=body_sha256(response),
        extractor=data.get("extractor"),
        depth=response.meta.get("depth", 0),
        retries=response.request.meta.get("retry_times", 0) if response.request else 0,
        referer=_referer(response),
        site=site,
        extra=data.get("extra") or {},
    )


def listing_item(response: Response, reason: str) -> CrawlPageItem:
    return CrawlPageItem(
        url=response.url,
        kind="listing",
        reason=reason,
        http_status=response.status,
        content_type=content_type(response) or None,
        body_sha256=body_sha256(response),
    )


def failure_item(url: str, stage: str, reason: str, status: int | None) -> CrawlFailureItem:
    return CrawlFailureItem(url=url, stage=stage, reason=reason, http_status=status)
