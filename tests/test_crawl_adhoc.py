"""Ad-hoc crawls of a site without a profile (`-a start_urls`, `-a urls_file`, `-a sitemap`).

Real `scrapy crawl` subprocesses against the generated multi-level site of
`crawlers.sample_site` served on 127.0.0.1: paginated teaser listings, articles in heavy
boilerplate with relative links to missing pages, print and AMP copies declaring the article
canonical, ``?page=1`` / ``?utm_source=`` variants, a PDF, GBK and lying-charset Chinese pages.
"""

from __future__ import annotations

import pytest
from conftest import query
from crawl_support import crawl, documents, paths_of

from crawlers.demo_server import SiteServer
from crawlers.extract_eval import PRF, token_prf
from crawlers.sample_site import make_site


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sample-site")
    site = make_site(directory / "site")
    with SiteServer(directory / "site", fail_once=frozenset(), throttle_once={}) as server:
        yield site, server


def pages(root, base: str, kind: str) -> dict[str, tuple[str, str]]:
    rows = query(root, f"SELECT url, reason, duplicate_of FROM crawl_pages WHERE kind = '{kind}'")
    return {u.removeprefix(base): (r, (d or "").removeprefix(base)) for u, r, d in rows}


def test_start_urls_alone_writes_exactly_the_articles(sample, tmp_path):
    site, server = sample
    base, root = server.base_url, tmp_path / "data"
    crawl(root, "-a", f"start_urls={base}/index.html")

    docs = documents(root)
    assert len(docs) == len(site.articles) == 27  # 24 articles, a PDF, 2 Chinese pages
    assert paths_of(docs, base) == set(site.articles)  # each under its canonical URL, once
    assert {p: r for p, (r, _) in pages(root, base, "listing").items()} == {
        "/index.html": "no main text found",
        "/tags/courts/": "no main text found",
        "/news/": "main text is mostly link texts",
        "/news/page/2/": "main text is mostly link texts",
        "/news/page/3/": "main text is mostly link texts",
    }
    assert set(pages(root, base, "failed")) == site.missing  # the 404s, each once
    assert {r for r, _ in pages(root, base, "failed").values()} == {"HTTP 404"}
    duplicates = pages(root, base, "duplicate")
    # print and AMP copies, and the URL variants (whichever of a variant and the plain URL came second)
    assert len(duplicates) == len(site.duplicates)
    assert {d for _, d in duplicates.values()} <= set(site.articles)
    assert {p for p in duplicates if "print" in p or p.startswith("/amp/")} == {
        p for p in site.duplicates if "print" in p or p.startswith("/amp/")
    }
    assert {reason for reason, _ in duplicates.values()} == {"same canonical URL"}
    offsite = query(root, "SELECT DISTINCT url FROM crawl_refusals WHERE reason = 'offsite'")
    assert offsite and all(u.startswith("https://social.example/") for (u,) in offsite)

    micro = PRF(0, 0, 0)
    for path, gold in site.articles.items():
        counts = token_prf(gold, docs[base + path]["text"])
        assert counts.f1 >= 0.8, (path, counts, docs[base + path]["text"][:500])
        micro += counts
    assert micro.f1 >= 0.9, micro
    zh = docs[base + "/zh/judgment-388.html"]  # UTF-8 bytes under <meta charset="gb2312">
    assert zh["meta"]["encoding"] == "utf-8" and "物业服务人" in zh["text"] and zh["lang"] == "zh"
    gbk = docs[base + "/zh/notice-2023-41.gbk.html"]  # GBK, charset only in the HTTP header
    assert gbk["meta"]["encoding"] == "gb18030" and "行政复议" in gbk["text"]

    [(status, docs_out)] = query(root, "SELECT status, docs_out FROM runs")
    assert (status, docs_out) == ("succeeded", len(site.articles))

    # a re-crawl into the same corpus writes nothing again, and is not a failure
    crawl(root, "-a", f"start_urls={base}/index.html")
    [(status, docs_out)] = query(root, "SELECT status, docs_out FROM runs ORDER BY started_at DESC LIMIT 1")
    assert (status, docs_out) == ("succeeded", 0)
    assert len(documents(root)) == len(site.articles)


def test_a_crawl_that_writes_nothing_fails_with_its_reasons(sample, tmp_path):
    _, server = sample
    root = tmp_path / "data"
    # documents=REGEX that no page matches: every page is a listing, as in the bug report
    args = ("-a", f"start_urls={server.base_url}/index.html", "-a", "documents=/no-such-section/")
    result = crawl(root, *args, check=False)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("crawl failed: 0 documents written")
    assert "fetched pages; top reasons: " in message and "listing 'matches follow, not documents'" in message
    [(status, error, docs_out)] = query(root, "SELECT status, error, docs_out FROM runs")
    assert status == "failed" and error in message and docs_out == 0

    ok = crawl(tmp_path / "off", *args, settings={"CORPUS_MIN_DOCUMENTS": "0"})  # the check switched off
    assert "crawl failed" not in ok.stderr


def test_urls_file_crawls_exactly_the_listed_pages(sample, tmp_path):
    site, server = sample
    base, root = server.base_url, tmp_path / "data"
    wanted = sorted(site.articles)[:3]
    urls = tmp_path / "urls.txt"
    urls.write_text("# three articles\n\n" + "\n".join(base + p for p in wanted) + "\n", encoding="utf-8")
    before = sum(server.paths().values())
    crawl(root, "-a", f"urls_file={urls}")
    assert paths_of(documents(root), base) == set(wanted)
    assert sum(server.paths().values()) - before == len(wanted) + 1  # and robots.txt: no links followed

    urls.write_text(f"{base}/a.html\nnot a url\n", encoding="utf-8")
    bad = crawl(tmp_path / "bad", "-a", f"urls_file={urls}", check=False)
    assert bad.returncode != 0 and f"urls_file {urls}:2: not an http(s) URL: 'not a url'" in bad.stderr


def test_sitemap_mode_crawls_the_listed_pages(sample, tmp_path):
    site, server = sample
    base, root = server.base_url, tmp_path / "data"
    crawl(root, "-a", f"sitemap={base}/robots.txt")  # robots.txt names the sitemap
    assert paths_of(documents(root), base) == set(site.articles)
    [(n,)] = query(root, "SELECT count(*) FROM crawl_pages WHERE kind <> 'document'")
    assert n == 0  # nothing but the listed pages was fetched
