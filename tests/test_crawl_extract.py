"""Extraction units: HTML fields, charset handling, PDFs, the time-limited worker pool, Retry-After."""

from __future__ import annotations

import os
import time
from email.utils import formatdate

import pytest
from scrapy.http import HtmlResponse

from crawlers.demo_server import DEMO_SITE
from crawlers.extract import ExtractionError, extract, extract_html, extract_pdf
from crawlers.extraction_pool import ExtractionPool, ExtractionTimeout
from crawlers.middlewares import parse_retry_after
from crawlers.minipdf import make_pdf
from crawlers.profiles import ProfileError, load_profile

SELECTORS = load_profile("demo").selectors


def test_html_fields_from_selectors_and_body_without_boilerplate():
    html = (DEMO_SITE / "cases" / "case-003.html").read_text(encoding="utf-8")
    data = extract_html(html, "http://x/cases/case-003.html", SELECTORS)
    assert data["title"] == "State v. Okonkwo"
    assert data["court"] == "Riverside Court of Criminal Appeal"
    assert data["date"] == "2023-06-21"
    assert data["case_number"] == "Appeal No. 2023-CA-0031"
    assert data["canonical_url"] == "/cases/case-003.html"
    assert data["extractor"] == "trafilatura" and data["lang"] == "en"
    text = data["text"]
    assert "a retrial is ordered before a differently constituted court" in text
    for boilerplate in ("Staff Intranet", "Related judgments", "cookies", "Copyright", "Search judgments", "Print"):
        assert boilerplate not in text


def test_body_selector_and_meta_fallbacks():
    html = """<html lang="en-GB"><head><meta name="citation_date" content="2022/12/01">
    <meta name="citation_court" content="Court of Appeal"></head><body><nav>Home | Login</nav>
    <div id="judgment"><p>The appeal is dismissed. Case No. 2022-AB-17 stands.</p></div></body></html>"""
    data = extract_html(html, "http://x/j", {"body": {"xpath": "//div[@id='judgment']"}})
    assert data["text"] == "The appeal is dismissed. Case No. 2022-AB-17 stands."
    assert data["extractor"] == "selector"
    assert (data["date"], data["court"], data["case_number"], data["lang"]) == (
        "2022-12-01",
        "Court of Appeal",
        "2022-AB-17",
        "en",
    )


@pytest.mark.parametrize("name", ["zh-101.html", "zh-102.gbk.html"])
def test_gbk_pages_decode_to_correct_chinese(name):
    """charset in <meta> (gb2312, which must be read as GB18030: 镕/喆 are not in GB2312) or only in the header."""
    body = (DEMO_SITE / "cases" / name).read_bytes()
    header = "text/html; charset=GBK" if name.endswith(".gbk.html") else "text/html"
    response = HtmlResponse(url=f"http://x/{name}", body=body, headers={"Content-Type": header})
    data = extract("html", response.text, response.url, SELECTORS)
    assert response.encoding == "gb18030"
    assert data["lang"] == "zh" and data["date"] in ("2023-08-15", "2023-10-09")
    if name == "zh-101.html":
        assert data["title"] == "张某诉李某民间借贷纠纷案"
        assert data["case_number"] == "（2023）河01民终1234号"
        assert "证人朱镕与熊喆到庭作证" in data["text"]
        assert "首页" not in data["text"] and "版权所有" not in data["text"]
    else:
        assert data["title"] == "王某与赵某房屋租赁合同纠纷案"
        assert "被告自2022年12月起未支付租金" in data["text"]


def test_pdf_text_and_broken_pdf():
    data = extract_pdf((DEMO_SITE / "documents" / "regulation-2023-07.pdf").read_bytes(), "http://x/r.pdf")
    assert data["title"] == "Riverside Court Fees Regulation 2023"
    assert "Article 3. No fee is payable by a party who receives legal aid." in data["text"]
    assert "Article 5. This regulation enters into force on 1 September 2023." in data["text"]
    assert data["extra"] == {"pdf_pages": 2} and data["date"] == "2023-07-01"
    with pytest.raises(ExtractionError, match="unreadable PDF"):
        extract_pdf((DEMO_SITE / "documents" / "scan-broken.pdf").read_bytes(), "http://x/b.pdf")


def test_pool_kills_a_call_past_the_time_limit_and_recovers():
    pdf = make_pdf([["Order of the court: the application is granted."]])
    with ExtractionPool(workers=1, timeout_s=1.0) as pool:
        started = time.monotonic()
        with pytest.raises(ExtractionTimeout):
            pool.call(time.sleep, 30)
        assert time.monotonic() - started < 10
        assert pool.timeouts == 1 and pool.restarts == 1
        # the replacement worker serves the next page
        assert "application is granted" in pool.call(extract, "pdf", pdf, "http://x/o.pdf", None)["text"]
        with pytest.raises(ExtractionError, match="worker died"):
            pool.call(os._exit, 3)
        with pytest.raises(ExtractionError, match="unreadable PDF"):
            pool.call(extract, "pdf", b"%PDF-1.4 garbage", "http://x/g.pdf", None)


def test_parse_retry_after():
    assert parse_retry_after(b"7") == 7.0
    now = time.time()
    assert 115 <= parse_retry_after(formatdate(now + 120, usegmt=True), now=now) <= 121
    assert parse_retry_after(formatdate(now - 50, usegmt=True), now=now) == 0.0
    assert parse_retry_after(b"soon") is None and parse_retry_after(None) is None


def test_profile_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "court.yaml"
    bad.write_text("start_urls: [https://court.example/]\ndocuments: ['/j/']\nselecters: {}\n")
    with pytest.raises(ProfileError, match=r"court\.yaml: unknown key\(s\) selecters"):
        load_profile(str(bad))
    bad.write_text("start_urls: [https://court.example/]\n")
    with pytest.raises(ProfileError, match="'documents'"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match="known profiles: demo"):
        load_profile("no_such_site")


def test_backoff_middleware_honours_retry_after_and_gives_up_past_the_cap():
    from scrapy import Request
    from scrapy.http import Response
    from scrapy.utils.test import get_crawler

    from crawlers.middlewares import NOT_BEFORE, BackoffRetryMiddleware

    crawler = get_crawler(settings_dict={"RETRY_TIMES": 3, "RETRY_BACKOFF_BASE": 0.5, "RETRY_AFTER_MAX": 60})
    crawler.spider = crawler._create_spider("test")
    mw = BackoffRetryMiddleware.from_crawler(crawler)
    request = Request("http://court.example:8080/j/1")

    now = time.time()
    retry = mw.process_response(request, Response(request.url, status=429, headers={"Retry-After": "5"}))
    assert isinstance(retry, Request) and retry.meta["retry_times"] == 1
    assert 4.9 <= retry.meta[NOT_BEFORE] - now <= 6
    assert mw.host_paused_until["court.example"] >= now + 4.9  # the whole host waits, not just this URL

    again = mw.process_response(retry, Response(request.url, status=500))
    assert again.meta["retry_times"] == 2 and 0.9 <= again.meta[NOT_BEFORE] - time.time() <= 1.1  # 0.5 * 2**1

    too_long = Response(request.url, status=429, headers={"Retry-After": "3600"})
    assert mw.process_response(Request("http://court.example/j/2"), too_long) is too_long  # recorded as HTTP 429
    ok = Response(request.url, status=404)
    assert mw.process_response(request, ok) is ok


def test_bounded_http_cache_evicts_oldest_entries(tmp_path):
    from scrapy import Request
    from scrapy.http import HtmlResponse
    from scrapy.utils.test import get_crawler

    from crawlers.httpcache import BoundedFilesystemCacheStorage

    bound = 40_000
    crawler = get_crawler(settings_dict={"HTTPCACHE_DIR": str(tmp_path), "HTTPCACHE_MAX_BYTES": bound})
    spider = crawler._create_spider("bounded")
    storage = BoundedFilesystemCacheStorage(crawler.settings)
    storage.open_spider(spider)
    body = b"<html><body>" + b"x" * 4000 + b"</body></html>"
    requests = [Request(f"http://court.example/j/{i}") for i in range(30)]
    for request in requests:
        storage.store_response(spider, request, HtmlResponse(request.url, body=body))
        size = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
        assert size <= bound + 6_000  # never more than the bound plus the entry just stored
    assert storage.evicted > 0
    assert storage.retrieve_response(spider, requests[-1]) is not None  # newest kept
    assert storage.retrieve_response(spider, requests[0]) is None  # oldest evicted


def test_decode_html_prefers_valid_utf8_over_a_lying_charset():
    from crawlers.pages import decode_html

    page = '<html><head><meta charset="gb2312"></head><body><p>本院认为，被告应当承担赔偿责任。</p></body></html>'
    lying = HtmlResponse("http://x/a", body=page.encode("utf-8"), headers={"Content-Type": "text/html"})
    assert decode_html(lying) == (page, "utf-8")
    gbk = HtmlResponse("http://x/b", body=page.encode("gbk"), headers={"Content-Type": "text/html"})
    assert decode_html(gbk) == (page, "gb18030")  # the declaration was right: GBK bytes are not UTF-8
    header = HtmlResponse("http://x/c", body=page.encode("gbk"), headers={"Content-Type": "text/html; charset=GBK"})
    assert decode_html(header)[0] == page


def test_page_verdict_listing_failure_or_document():
    from crawlers.pages import page_verdict

    doc = {"text": "The appeal is dismissed with costs. " * 5, "link_line_ratio": 0.0}
    teasers = {"text": "Some text long enough to count here.", "link_line_ratio": 0.6}
    empty = {"text": "Home", "link_line_ratio": 0.0}
    assert page_verdict(doc, expect_document=False) == ("document", "")
    assert page_verdict(teasers, expect_document=False) == ("listing", "main text is mostly link texts")
    assert page_verdict(teasers, expect_document=True) == ("document", "")  # a profile's document: a TOC is fine
    assert page_verdict(empty, expect_document=False) == ("listing", "no main text found")
    assert page_verdict(empty, expect_document=True) == ("failed", "no main text found")


def test_link_line_ratio_tells_teaser_listings_from_articles():
    from parsel import Selector

    from crawlers.extract import link_line_ratio

    html = "".join(f'<h2><a href="/a{i}">Headline {i}</a></h2><p>Summary {i}.</p>' for i in range(6))
    soup = Selector(text=html)
    text = "\n".join(f"Headline {i}\nSummary {i}." for i in range(6))
    assert link_line_ratio(soup, text) == 0.5
    assert link_line_ratio(soup, "\n".join(f"Summary {i}." for i in range(6)) + "\nHeadline 1") == 0.0


def test_adhoc_profiles_and_their_rules(tmp_path):
    from crawlers.profiles import adhoc_profile
    from crawlers.spiders.legal_docs import rules_for

    crawl = adhoc_profile(start_urls="https://court.example/list")
    assert crawl.allowed_domains == ["court.example"] and crawl.listings_are_candidates
    assert crawl.is_candidate("https://court.example/any/page") and not crawl.documents_expected
    callbacks = [(r.callback, r.follow) for r in rules_for(crawl)]
    assert callbacks == [("parse_page", True), ("parse_page", False), ("parse_listing", True), (None, False)]

    narrowed = adhoc_profile(start_urls="https://court.example/list", documents=r"/judgments/\d+")
    assert narrowed.documents_expected and not narrowed.is_candidate("https://court.example/list?page=2")

    urls = tmp_path / "urls.txt"
    urls.write_text("https://court.example/j/1\n", encoding="utf-8")
    listed = adhoc_profile(urls_file=str(urls))
    assert listed.follow == [] and [(r.callback, r.follow) for r in rules_for(listed)] == [
        ("parse_page", False),
        (None, False),
    ]
    demo = [(r.callback, r.follow) for r in rules_for(load_profile("demo"))]
    assert demo == [("parse_listing", True), ("parse_page", False), (None, False)]
    with pytest.raises(ProfileError, match="give one of start_urls, urls_file, sitemap"):
        adhoc_profile(start_urls="https://a.example/", sitemap="https://a.example/sitemap.xml")
    with pytest.raises(ProfileError, match=r"urls_file .*: no such file"):
        adhoc_profile(urls_file=str(tmp_path / "missing.txt"))


def test_known_documents_recognise_url_body_and_text_copies():
    from crawlers.crawl_records import KnownDocuments, text_hash

    known = KnownDocuments()
    known.add("http://x/a", "b" * 64, text_hash("The appeal  is\ndismissed."))
    assert known.duplicate_of("http://x/a", None, None) == ("same canonical URL", "http://x/a")
    assert known.duplicate_of("http://x/b", "b" * 64, None) == ("same raw body", "http://x/a")
    assert known.duplicate_of("http://x/c", "c" * 64, text_hash("The appeal is dismissed.")) == (
        "same text",
        "http://x/a",
    )
    assert known.duplicate_of("http://x/d", "d" * 64, text_hash("Another text.")) is None


def test_an_older_catalogs_crawl_failures_table_moves_into_crawl_pages(tmp_path):
    from corpus.catalog import Catalog
    from corpus.store import CorpusLayout
    from crawlers.crawl_records import ensure_tables

    layout = CorpusLayout.at(tmp_path / "data")
    with Catalog.open(layout) as cat:
        cat.conn.execute(
            "CREATE TABLE crawl_failures (run_id VARCHAR NOT NULL, spider VARCHAR NOT NULL, url VARCHAR NOT NULL, "
            "stage VARCHAR NOT NULL, reason VARCHAR NOT NULL, http_status INTEGER, recorded_at TIMESTAMPTZ NOT NULL)"
        )
        cat.conn.execute(
            "INSERT INTO crawl_failures VALUES ('r1', 'legal_docs', 'http://x/1', 'fetch', 'HTTP 404', 404, now())"
        )
        ensure_tables(cat)
        ensure_tables(cat)  # idempotent
        assert cat.conn.execute("SELECT url, kind, stage, reason FROM crawl_pages").fetchall() == [
            ("http://x/1", "failed", "fetch", "HTTP 404")
        ]
        assert cat.conn.execute("SELECT url, stage, reason, http_status FROM crawl_failures").fetchall() == [
            ("http://x/1", "fetch", "HTTP 404", 404)
        ]


def test_payload_by_content_type():
    from scrapy.http import Response, TextResponse, XmlResponse

    from crawlers.pages import payload_of

    text = TextResponse(
        "http://x/judgment.txt", body=b"Judgment\nThe appeal is dismissed.", headers={"Content-Type": "text/plain"}
    )
    kind, body, _ = payload_of(text)
    assert kind == "text" and extract(kind, body, text.url)["title"] == "Judgment"
    assert extract(kind, body, text.url)["extractor"] == "plain"
    feed = XmlResponse("http://x/feed", body=b"<rss><channel/></rss>", headers={"Content-Type": "application/rss+xml"})
    image = Response("http://x/a.png", body=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert payload_of(feed) is None and payload_of(image) is None
    page = HtmlResponse("http://x/p", body=b"<html><p>x</p></html>", headers={"Content-Type": "application/xhtml+xml"})
    assert payload_of(page)[0] == "html"
