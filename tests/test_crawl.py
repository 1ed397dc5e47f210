"""Real crawls (`scrapy crawl` subprocesses) of the demo legal site served on 127.0.0.1.

The server's request log is the ground truth for what was fetched; the catalog for what was
written, refused and recorded as failed.
"""

from __future__ import annotations

from conftest import query, run_cli
from crawl_support import DOC_PATHS, crawl, documents, fixture_server, paths_of, profile_for


def pages_reason(root, path: str) -> str:
    [(reason,)] = query(root, f"SELECT reason FROM crawl_pages WHERE url LIKE '%{path}'")
    return reason


def test_full_crawl_fetches_refuses_retries_and_extracts_exactly(tmp_path):
    root = tmp_path / "data"
    with fixture_server() as server:
        crawl(root, "-a", f"site={profile_for(server, tmp_path)}")
        base = server.base_url
        fetched = server.paths()

    # fetched: robots.txt once, the three listing pages, every document link; the 500 and the 429 page twice
    assert fetched == {
        "/robots.txt": 1,
        "/cases/index.html": 1,
        "/cases/page-2.html": 1,
        "/cases/page-3.html": 1,
        **{p: 1 for p in DOC_PATHS},
        "/cases/flaky.html": 2,
        "/cases/busy.html": 2,
        "/cases/case-001.html?utm_source=listing": 1,
        "/cases/broken.html": 1,
        "/cases/case-006.html": 1,  # 404: recorded, not retried
        "/documents/scan-broken.pdf": 1,
    }
    # never fetched: robots-disallowed, not matched by the profile (about, home), off-domain
    assert not any(
        p.startswith(("/private/", "/cases/sealed/")) or p in ("/about.html", "/index.html") for p in fetched
    )
    # the 429 answer said Retry-After: 1 and the retry waited for it
    t429, t200 = server.times("/cases/busy.html")
    assert t200 - t429 >= 0.95

    docs = documents(root)
    assert paths_of(docs, base) == set(DOC_PATHS)
    assert {d["source"] for d in docs.values()} == {"crawl:legal_docs"}
    retried = {p for p, d in docs.items() if d["meta"]["retries"]}
    assert paths_of(retried, base) == {"/cases/flaky.html", "/cases/busy.html"}

    case = docs[base + "/cases/case-004.html"]
    assert case["title"] == "Brennan Holdings v. City of Riverside" and case["lang"] == "en"
    assert case["text"].endswith("No order as to costs.")
    for nav in ("Judgments", "Staff Intranet", "Related judgments", "Accept all cookies", "Riverside Judicial Council"):
        assert nav not in case["text"]
    meta = case["meta"]
    assert meta["http_status"] == 200 and meta["content_type"] == "text/html" and meta["depth"] == 2
    assert (meta["court"], meta["date"], meta["case_number"]) == (
        "Riverside Administrative Tribunal",
        "2023-09-08",
        "Case No. 2023-AD-0415",
    )
    assert len(meta["body_sha256"]) == 64 and meta["fetched_at"].endswith("+00:00")

    pdf = docs[base + "/documents/regulation-2023-07.pdf"]
    assert pdf["meta"]["extractor"] == "pypdf" and pdf["meta"]["content_type"] == "application/pdf"
    assert "Article 2. The fee for issuing a civil claim is 2 percent of the amount claimed" in pdf["text"]

    zh = docs[base + "/cases/zh-101.html"]
    assert zh["title"] == "张某诉李某民间借贷纠纷案" and zh["lang"] == "zh"
    assert "证人朱镕与熊喆到庭作证" in zh["text"] and zh["meta"]["encoding"] == "gb18030"
    assert zh["meta"]["case_number"] == "（2023）河01民终1234号"
    assert "房屋租赁合同" in docs[base + "/cases/zh-102.gbk.html"]["title"]

    refusals = {(u.removeprefix(base), r) for u, r in query(root, "SELECT url, reason FROM crawl_refusals")}
    assert refusals == {
        ("/cases/sealed/case-fa-0007.html", "robots"),
        ("https://www.supremecourt.example/opinions", "offsite"),
        ("http://law.example.org/", "offsite"),
    }
    pages = {
        (u.removeprefix(base), kind, reason, (dup or "").removeprefix(base))
        for u, kind, reason, dup in query(root, "SELECT url, kind, reason, duplicate_of FROM crawl_pages")
        if kind != "document"
    }
    assert pages == {
        *(
            (p, "listing", "matches follow, not documents", "")
            for p in ("/cases/index.html", "/cases/page-2.html", "/cases/page-3.html")
        ),
        # ?utm_source=listing declares the same canonical URL
        ("/cases/case-001.html?utm_source=listing", "duplicate", "same canonical URL", "/cases/case-001.html"),
        ("/cases/broken.html", "failed", "no main text found", ""),
        ("/documents/scan-broken.pdf", "failed", pages_reason(root, "/documents/scan-broken.pdf"), ""),
        ("/cases/case-006.html", "failed", "HTTP 404", ""),
    }
    [(n_docs,)] = query(root, "SELECT count(*) FROM crawl_pages WHERE kind = 'document'")
    assert n_docs == len(DOC_PATHS)
    failures = {
        (u.removeprefix(base), s, r.split(":")[0])
        for u, s, r in query(root, "SELECT url, stage, reason FROM crawl_failures")
    }
    assert failures == {
        ("/cases/broken.html", "extract", "no main text found"),
        ("/documents/scan-broken.pdf", "extract", "error"),
        ("/cases/case-006.html", "fetch", "HTTP 404"),
    }

    [(run_id, kind, status, docs_out, rejected)] = query(
        root, "SELECT run_id, kind, status, docs_out, docs_rejected FROM runs"
    )
    assert (kind, status, docs_out, rejected) == ("crawl", "succeeded", len(DOC_PATHS), 3)
    shards = query(root, "SELECT path, stage, run_id, rows FROM shards")
    assert [(s[1], s[2], s[3]) for s in shards] == [("raw", run_id, len(DOC_PATHS))]
    assert shards[0][0] == f"raw/crawl/legal_docs-{run_id}/part-00000-00000.parquet"


def test_depth_limit_refuses_deeper_links(tmp_path):
    root = tmp_path / "data"
    with fixture_server() as server:
        crawl(root, "-a", f"site={profile_for(server, tmp_path)}", settings={"DEPTH_LIMIT": "1"})
        fetched = set(server.paths())
        base = server.base_url
    depth1 = {"/cases/case-001.html", "/cases/case-002.html", "/cases/case-003.html"}
    assert fetched == {"/robots.txt", "/cases/index.html", "/cases/page-2.html", *depth1}
    assert paths_of(documents(root), base) == depth1
    refused = {u.removeprefix(base) for (u,) in query(root, "SELECT url FROM crawl_refusals WHERE reason = 'depth'")}
    assert refused == {
        "/cases/case-004.html",
        "/cases/case-005.html",
        "/cases/busy.html",
        "/documents/regulation-2023-07.pdf",
        "/cases/page-3.html",
    }


def test_resume_with_jobdir_neither_refetches_nor_loses_pages(tmp_path):
    root, jobdir = tmp_path / "data", tmp_path / "job"
    settings = {"JOBDIR": str(jobdir), "CONCURRENT_REQUESTS": "1"}
    with fixture_server() as server:
        site = profile_for(server, tmp_path)
        crawl(root, "-a", f"site={site}", settings={**settings, "CLOSESPIDER_PAGECOUNT": "6"})
        first = documents(root)
        crawl(root, "-a", f"site={site}", settings=settings)
        fetched = server.paths(status=200)
        base = server.base_url

    assert 0 < len(first) < len(DOC_PATHS)  # really stopped mid-way
    runs = query(root, "SELECT status, docs_out FROM runs ORDER BY started_at")
    assert [r[0] for r in runs] == ["interrupted", "succeeded"]
    rows = query(root, "SELECT url FROM raw_documents")
    assert sorted(u for (u,) in rows) == sorted(base + p for p in DOC_PATHS)  # union: every page exactly once
    assert sum(r[1] for r in runs) == len(DOC_PATHS)
    # no page was downloaded twice across the two sessions (robots.txt is re-read per session)
    assert {p: n for p, n in fetched.items() if n > 1} == {"/robots.txt": 2}


def test_sitemap_spider(tmp_path):
    root = tmp_path / "data"
    with fixture_server() as server:
        crawl(root, "-a", f"site={profile_for(server, tmp_path)}", spider="legal_sitemap")
        base = server.base_url
    assert paths_of(documents(root), base) == {
        *(f"/cases/case-00{i}.html" for i in range(1, 6)),
        "/cases/zh-101.html",
        "/documents/regulation-2023-07.pdf",
    }
    assert query(root, "SELECT url, reason FROM crawl_refusals") == [
        (base + "/cases/sealed/case-fa-0007.html", "robots")
    ]
    assert query(root, "SELECT DISTINCT source FROM raw_documents") == [("crawl:legal_sitemap",)]


def test_http_cache_serves_a_rerun_without_fetching(tmp_path):
    cache = tmp_path / "cache"
    with fixture_server(throttle_once={}) as server:
        site = profile_for(server, tmp_path)
        settings = {"HTTPCACHE_ENABLED": "True", "HTTPCACHE_DIR": str(cache)}
        crawl(tmp_path / "a", "-a", f"site={site}", settings=settings)
        before = sum(server.paths().values())
        crawl(tmp_path / "b", "-a", f"site={site}", settings=settings)
        assert sum(server.paths().values()) == before  # everything came from the cache
    assert len(documents(tmp_path / "b")) == len(DOC_PATHS)


def test_demo_crawl_without_arguments_then_build_picks_it_up(tmp_path):
    """`scrapy crawl legal_docs` (demo site on loopback), then `python -m pipelines.build` with no flags."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    crawl(workdir / "data", settings={"DEMO_SITE_PORT": "0", "EXTRACTION_WORKERS": "2"})
    result = run_cli("-m", "pipelines.build", "--quiet", cwd=workdir)  # no configs/ here: catalog raw shards only
    assert result.returncode == 0, result.stderr
    root = workdir / "data"
    [(n,)] = query(root, "SELECT count(*) FROM documents WHERE source = 'crawl:legal_docs'")
    [(rejected,)] = query(root, "SELECT count(*) FROM rejects")
    assert n + rejected == len(DOC_PATHS) and n >= len(DOC_PATHS) - 1
    assert query(root, "SELECT count(*) FROM crawl_failures") == [(3,)]  # crawl tables survive the build
