"""Turning a fetched page into document fields: main text, title and legal metadata.

Pure functions of (payload, url, selectors) so they can run in an isolated worker process
(see `crawlers.extraction_pool`) under a time limit. The body comes from profile selectors
when given, else from trafilatura tuned for precision (legal text must not carry navigation
or "related cases" boxes into the corpus); structured fields (title, date, court, case number)
come from selectors, then common meta tags, then patterns in the text.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import trafilatura
from parsel import Selector

# Meta tags courts, gazettes and CMSes commonly use for each field, in order of trust.
META_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("citation_title", "dc.title", "og:title"),
    "date": ("citation_date", "citation_publication_date", "dc.date", "article:published_time", "date"),
    "court": ("citation_court", "court", "dc.creator", "dc.publisher"),
    "case_number": ("citation_docket_number", "case_number", "docket"),
}
DATE_PATTERNS = (
    re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"),
    re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日"),
    re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b"),
)
CASE_NUMBER_PATTERNS = (
    re.compile(r"[（(]\d{4}[）)][\u4e00-\u9fff\d]{1,12}?\d+号"),  # （2023）京01民终123号
    re.compile(r"\b(?i:case|docket|appeal)\s+(?i:no)\.?\s*:?\s*([A-Z0-9][A-Z0-9\-/.]{2,30}[A-Z0-9])"),
)
MIN_BODY_CHARS = 20
# How trafilatura finds the main text (benchmarks/crawl.py compares the alternatives on real pages):
# precision, because navigation or "related cases" boxes in a legal corpus are worse than a lost
# paragraph; tables kept (fee schedules, sentencing tables); its own fallbacks (readability,
# jusText) stay on for pages its main heuristic misses.
TRAFILATURA_OPTIONS: dict[str, Any] = {
    "favor_precision": True,
    "include_comments": False,
    "include_tables": True,
    "deduplicate": False,
}


class ExtractionError(ValueError):
    """The payload could not be turned into a document; the message says why (it is recorded)."""


@dataclass
class Extracted:
    """What a page yielded. ``text`` is empty when no main content was found."""

    text: str
    title: str | None = None
    date: str | None = None
    court: str | None = None
    case_number: str | None = None
    canonical_url: str | None = None
    lang: str | None = None
    link_line_ratio: float = 0.0  # share of the text's lines that are the text of a link on the page
    extractor: str = "trafilatura"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = re.sub(r"\s+", " ", value).strip()
    return value or None


def _texts(node: Selector, sep: str) -> str:
    return sep.join(t.strip() for t in node.xpath(".//text()").getall() if t.strip())


def select_text(page: Selector, spec: str | dict[str, str] | None) -> str | None:
    """Text of the first match of a CSS (``{"css": ...}`` or a bare string) or XPath selector."""
    if not spec:
        return None
    if isinstance(spec, str):
        spec = {"css": spec}
    if "css" in spec:
        found = page.css(spec["css"])
        return _texts(found[0], "\n") if found else None
    if "xpath" in spec:
        found = page.xpath(spec["xpath"])
        if not found:
            return None
        first = found[0].root
        return str(first) if isinstance(first, str) else first.text_content()
    raise ExtractionError(f"selector {spec!r} has neither 'css' nor 'xpath'")


def normalise_date(value: str | None) -> str | None:
    """ISO date (YYYY-MM-DD) from the first date-like substring, or None."""
    if not value:
        return None
    for pattern in DATE_PATTERNS:
        m = pattern.search(value)
        if m:
            y, mo, d = (int(g) for g in m.groups())
            if 1 <= mo <= 12 and 1 <= d <= 31:
                return f"{y:04d}-{mo:02d}-{d:02d}"
    return None


def find_case_number(text: str) -> str | None:
    for pattern in CASE_NUMBER_PATTERNS:
        m = pattern.search(text)
        if m:
            return _clean(m.group(m.lastindex or 0))
    return None


def meta_tags(page: Selector) -> dict[str, str]:
    """``<meta name|property=... content=...>`` as a dict with lower-cased keys (first one wins)."""
    found: dict[str, str] = {}
    for tag in page.xpath("//meta[@content]"):
        key = tag.attrib.get("name") or tag.attrib.get("property")
        if key:
            found.setdefault(key.lower(), tag.attrib["content"])
    return found


def _meta(metas: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if metas.get(name):
            return _clean(metas[name])
    return None


def without_title_line(text: str, heading: str | None) -> str:
    """The body without a first line that repeats the page's ``<h1>``: the title has its own
    column, and a body that starts with it counts the title twice (benchmarks' ground truth,
    e.g. the Scrapinghub article bodies, leave it out too)."""
    first, _, rest = text.partition("\n")
    if heading and " ".join(first.split()) == " ".join(heading.split()) and rest.strip():
        return rest.strip()
    return text


def link_line_ratio(page: Selector, text: str) -> float:
    """Share of ``text``'s lines that are exactly the text of a link on the page.

    A listing's extracted "main text" is its teaser headlines (links) with a summary line or a
    "Read more" link each; an article's lines are paragraphs. With 3 link lines or fewer the
    ratio is 0, so an article that mentions a few link texts stays an article."""
    anchors = {" ".join("".join(a.xpath(".//text()").getall()).split()) for a in page.xpath("//a[@href]")} - {""}
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    linked = sum(1 for line in lines if line in anchors)
    return linked / len(lines) if linked > 3 else 0.0


def _lang(page: Selector) -> str | None:
    value = page.xpath("/html/@lang").get()
    if not value:
        return None
    return value.split("-")[0].split("_")[0].lower() or None


def extract_html(html: str, url: str, selectors: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fields of one HTML page (already decoded to str by Scrapy's charset handling)."""
    selectors = selectors or {}
    if not html.strip():
        raise ExtractionError("empty document")
    try:
        page = Selector(text=html)  # one lxml parse for the fields; trafilatura parses (and prunes) its own copy
    except ValueError as exc:
        raise ExtractionError(f"unparseable HTML: {exc}") from exc
    metas = meta_tags(page)
    h1 = page.xpath("//h1")
    heading = _texts(h1[0], " ") if h1 else None

    body = select_text(page, selectors.get("body"))
    extractor = "selector"
    if body is None:
        extractor = "trafilatura"
        body = trafilatura.extract(html, url=url, output_format="txt", **TRAFILATURA_OPTIONS)
    text = without_title_line((body or "").strip(), heading)

    title = select_text(page, selectors.get("title")) or _meta(metas, META_NAMES["title"]) or heading
    if title is None and page.xpath("//title"):
        title = _texts(page.xpath("//title")[0], " ")
    raw_date = select_text(page, selectors.get("date")) or _meta(metas, META_NAMES["date"])
    if raw_date is None:
        raw_date = page.xpath("//time/@datetime").get()
    court = select_text(page, selectors.get("court")) or _meta(metas, META_NAMES["court"])
    case_number = select_text(page, selectors.get("case_number")) or _meta(metas, META_NAMES["case_number"])
    if case_number is None:
        case_number = find_case_number(f"{title or ''}\n{text}")
    canonical = page.xpath("//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href").get()
    declared = canonical.strip() if canonical is not None else metas.get("og:url")

    return Extracted(
        text=text,
        title=_clean(title),
        date=normalise_date(raw_date) or normalise_date(text[:2000]),
        court=_clean(court),
        case_number=_clean(case_number),
        canonical_url=declared or None,
        lang=_lang(page),
        link_line_ratio=link_line_ratio(page, text),
        extractor=extractor,
    ).to_dict()


def extract_pdf(data: bytes, url: str) -> dict[str, Any]:
    """Text of a PDF, page by page (pypdf); an encrypted or corrupt file is an ExtractionError."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractionError("encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata or {}
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError(f"unreadable PDF: {type(exc).__name__}: {exc}") from exc
    text = "\n\n".join(p for p in pages if p)
    title = _clean(str(info.get("/Title"))) if info.get("/Title") else None
    if title is None and text:
        title = _clean(text.splitlines()[0])
    return Extracted(
        text=text,
        title=title,
        date=normalise_date(text[:2000]),
        case_number=find_case_number(text[:5000]),
        extractor="pypdf",
        extra={"pdf_pages": len(pages)},
    ).to_dict()


def extract(kind: str, payload: str | bytes, url: str, selectors: dict[str, Any] | None = None) -> dict[str, Any]:
    """Entry point the worker pool calls: ``kind`` is 'html', 'text' (a plain-text page: the
    body as it is, its first line as title) or 'pdf'."""
    if kind == "html":
        assert isinstance(payload, str)
        return extract_html(payload, url, selectors)
    if kind == "text":
        assert isinstance(payload, str)
        text = payload.strip()
        first = text.splitlines()[0] if text else None
        return Extracted(
            text=text,
            title=_clean(first),
            date=normalise_date(text[:2000]),
            case_number=find_case_number(text[:5000]),
            extractor="plain",
        ).to_dict()
    if kind == "pdf":
        assert isinstance(payload, bytes)
        return extract_pdf(payload, url)
    raise ExtractionError(f"unsupported document kind {kind!r}")
