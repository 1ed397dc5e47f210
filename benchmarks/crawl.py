"""Crawl benchmark: `python benchmarks/crawl.py [--articles 200] [--real DIR ...] [--scrapinghub DIR]`.

Measures, in one run:

1. crawl throughput (pages/s) of an ad-hoc ``scrapy crawl legal_docs -a start_urls=...`` (no
   profile: every page extracted, classified and recorded) against a local server (a separate
   process) serving `crawlers.sample_site` with ``--articles`` articles, politeness delays off;
   next to it a fetch-only Scrapy spider following the same links (no extraction, no output)
   as the ceiling, so the ratio is what extraction + records cost;
2. body-text quality on real pages with ground truth (token precision / recall / F1,
   micro-averaged, `crawlers.extract_eval`) for the spider's extractor and the alternatives
   (trafilatura defaults, recall mode, precision without tables, a plain ``get_text``):
   * ``--real DIR``: pages in the layout of Mozilla Readability's test suite
     (``DIR/<name>/source.html`` + ``expected.html``, the reference article; from a checkout
     of github.com/mozilla/readability: ``--real readability/test/test-pages``), default
     ``bench-data/real-pages`` when present;
   * ``--scrapinghub DIR``: a checkout of github.com/scrapinghub/article-extraction-benchmark
     (``html/*.html.gz`` + ``ground-truth.json``; 181 news pages; published trafilatura F1 0.958);
   * real Chinese legal text: judgment passages and case facts of ``../shared/data/zh_legal_dev.jsonl``
     (CAIL via LawBench) in generated court-portal pages, a third each sent as GBK with the
     charset only in the HTTP header, as UTF-8 under a ``<meta charset="gb2312">`` that lies, and
     as declared UTF-8, decoded the way the spider decodes responses (when the file is present);
   * always: the hand-written legal pages of ``benchmarks/data/extraction_gold`` (what the
     options were first tuned on, so the real pages are the held-out measure).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import trafilatura  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402

from crawlers.extract import TRAFILATURA_OPTIONS, extract_html  # noqa: E402
from crawlers.extract_eval import PRF, token_prf  # noqa: E402
from crawlers.sample_site import make_site  # noqa: E402

GOLD = REPO / "benchmarks" / "data" / "extraction_gold"
DEFAULT_REAL = REPO / "bench-data" / "real-pages"
ZH_LEGAL = REPO.parent / "shared" / "data" / "zh_legal_dev.jsonl"
CRAWL_SETTINGS = {
    "AUTOTHROTTLE_ENABLED": "False",
    "DOWNLOAD_DELAY": "0",
    "CONCURRENT_REQUESTS": "32",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "32",
    "EXTRACTION_WORKERS": "2",
    "LOG_LEVEL": "WARNING",
}
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def serve(directory: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawlers.demo_server", str(directory), "--port", "0", "--no-faults"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, re.search(r"http://[\d.]+:\d+", line).group(0)  # type: ignore[union-attr]


# -- crawls ---------------------------------------------------------------------------------------
def run_adhoc_crawl(base: str, work: Path) -> dict[str, float]:
    root = work / "data"
    cmd = [sys.executable, "-m", "scrapy", "crawl", "legal_docs", "-a", f"start_urls={base}/index.html"]
    cmd += ["-s", f"CORPUS_ROOT={root}"]
    for k, v in CRAWL_SETTINGS.items():
        cmd += ["-s", f"{k}={v}"]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True)
    wall = time.perf_counter() - started
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as conn:
        seconds, responses, docs = conn.execute("SELECT seconds, docs_in, docs_out FROM runs").fetchone()
        kinds = dict(conn.execute("SELECT kind, count(*) FROM crawl_pages GROUP BY kind").fetchall())
    return {"wall_s": wall, "crawl_s": seconds, "responses": responses, "docs": docs, "kinds": kinds}


FETCH_ONLY = """
import sys, json
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings

class FetchOnly(scrapy.Spider):
    name = "fetch_only"
    allowed_domains = ["127.0.0.1"]
    start_urls = [sys.argv[1] + "/index.html"]
    def parse(self, response):
        if not isinstance(response, scrapy.http.HtmlResponse):
            return
        for href in response.css("a::attr(href)").getall():
            if not href.startswith(("mailto:", "javascript:")):
                yield response.follow(href, self.parse)

settings = get_project_settings()
settings.setdict(json.loads(sys.argv[2]), priority="cmdline")
settings.set("ITEM_PIPELINES", {}, priority="cmdline")
settings.set("EXTENSIONS", {}, priority="cmdline")
settings.set("HTTPERROR_ALLOW_ALL", True, priority="cmdline")
process = CrawlerProcess(settings)
crawler = process.create_crawler(FetchOnly)
process.crawl(crawler)
process.start()
stats = crawler.stats.get_stats()
print(json.dumps({"crawl_s": stats["elapsed_time_seconds"], "responses": stats["response_received_count"]}))
"""


def run_fetch_only(base: str, work: Path) -> dict[str, float]:
    script = work / "fetch_only.py"  # a file, not -c: Scrapy inspects callbacks' source code
    script.write_text(FETCH_ONLY, encoding="utf-8")
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), base, json.dumps(CRAWL_SETTINGS)],
        cwd=REPO,
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


# -- extraction quality ---------------------------------------------------------------------------
def trafilatura_with(**options: object) -> Callable[[str], str]:
    def run(html: str) -> str:
        return trafilatura.extract(html, output_format="txt", **options) or ""

    return run


EXTRACTORS: dict[str, Callable[[str], str]] = {
    "extract_html (the spider)": lambda html: extract_html(html, "http://bench.example/doc")["text"],
    "trafilatura, spider options": trafilatura_with(**TRAFILATURA_OPTIONS),
    "trafilatura defaults": trafilatura_with(),
    "trafilatura favor_recall": trafilatura_with(favor_recall=True, include_comments=False),
    "trafilatura precision, no tables": trafilatura_with(**{**TRAFILATURA_OPTIONS, "include_tables": False}),
    "trafilatura precision, no fallback": trafilatura_with(**TRAFILATURA_OPTIONS, fast=True),
    "bs4 get_text (baseline)": lambda html: BeautifulSoup(html, "lxml").get_text("\n", strip=True),
}


def html_text(html: str) -> str:
    return BeautifulSoup(html, "lxml").get_text("\n", strip=True)


def gold_pages() -> Iterator[tuple[str, str, str]]:
    for html_path in sorted(GOLD.glob("*.html")):
        yield html_path.stem, html_path.read_text(encoding="utf-8"), (GOLD / f"{html_path.stem}.txt").read_text("utf-8")


def readability_pages(directory: Path) -> Iterator[tuple[str, str, str]]:
    """Readability's test-page layout: the expected article HTML is the ground truth."""
    for page in sorted(p for p in directory.iterdir() if (p / "source.html").is_file()):
        if (page / "expected.html").is_file():
            source = (page / "source.html").read_text(encoding="utf-8")
            yield page.name, source, html_text((page / "expected.html").read_text(encoding="utf-8"))


def scrapinghub_pages(directory: Path) -> Iterator[tuple[str, str, str]]:
    truth = json.loads((directory / "ground-truth.json").read_text(encoding="utf-8"))
    for key, item in sorted(truth.items()):
        path = directory / "html" / f"{key}.html.gz"
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            yield key[:12], f.read(), item["articleBody"]


ZH_NAV = ["首页", "法院概况", "审判动态", "裁判文书", "诉讼服务", "执行公开", "法治宣传", "联系我们"]


def zh_court_page(title: str, text: str, related: list[str], charset_meta: str | None) -> str:
    sentences = [s for s in re.split(r"(?<=[。；])", text) if s.strip()]
    paragraphs = ["".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
    nav = "".join(f'<li><a href="/{i}.html">{n}</a></li>' for i, n in enumerate(ZH_NAV))
    rel = "".join(f'<li><a href="/ws/{i}.html">{t}</a></li>' for i, t in enumerate(related))
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="zh-CN"><head>{meta}<title>{title}_河东市中级人民法院</title></head><body>'
        f'<div class="top"><a href="/">河东市中级人民法院</a> <a href="/en/">English</a>'
        f' <a href="/wza/">无障碍</a></div><ul class="nav">{nav}</ul>'
        f'<div class="crumb">当前位置：<a href="/">首页</a> &gt; <a href="/ws/">裁判文书</a></div>'
        f'<div class="article"><h1>{title}</h1><div class="info">发布时间：2023-06-01 来源：本院 浏览次数：1024</div>'
        f'{body}<div class="tools"><a href="javascript:window.print()">【打印本页】</a>'
        ' <a href="#">【关闭窗口】</a></div></div>'
        f'<div class="side"><h3>相关文书</h3><ul>{rel}</ul></div>'
        '<div class="foot">版权所有：河东市中级人民法院 地址：河东市人民路1号 邮编：100000 '
        '<a href="http://beian.miit.gov.cn/">京ICP备00000000号</a></div></body></html>'
    )


def zh_legal_pages(limit: int) -> Iterator[tuple[str, str, str, str]]:
    """(name, text as the spider decodes it, text as Scrapy alone decodes it, gold) for real
    passages from shared/data in court pages."""
    from scrapy.http import HtmlResponse

    from crawlers.pages import decode_html

    rows = [json.loads(line) for line in ZH_LEGAL.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["kind"] in ("judgment_passage", "case_facts")][:limit]
    titles = [f"{r['text'][:12]}……一案" for r in rows]
    for i, row in enumerate(rows):
        related = [titles[(i + k) % len(titles)] for k in range(1, 6)]
        variant = ZH_VARIANTS[i % 3]
        meta = {"gbk-header": None, "utf8-lying-meta": "gb2312", "utf8": "utf-8"}[variant]
        html = zh_court_page(titles[i], row["text"], related, meta)
        body = html.encode("gbk", errors="xmlcharrefreplace") if variant == "gbk-header" else html.encode("utf-8")
        ctype = "text/html; charset=GBK" if variant == "gbk-header" else "text/html"
        response = HtmlResponse(f"http://court.example/ws/{i}.html", body=body, headers={"Content-Type": ctype})
        yield f"{variant}/{i}", decode_html(response)[0], response.text, row["text"]


ZH_VARIANTS = ("gbk-header", "utf8-lying-meta", "utf8")


def print_zh_decoding(zh: list[tuple[str, str, str, str]]) -> None:
    print(f"\n{'charset case':<18} {'pages':>5} {'F1 spider decoding':>19} {'F1 Scrapy response.text':>24}")
    for variant in ZH_VARIANTS:
        part = [p for p in zh if p[0].split("/")[0] == variant]
        ours = sum(
            (token_prf(g, extract_html(t, "http://court.example/")["text"]) for _, t, _, g in part), PRF(0, 0, 0)
        )
        scrapy = sum(
            (token_prf(g, extract_html(t, "http://court.example/")["text"]) for _, _, t, g in part), PRF(0, 0, 0)
        )
        print(f"{variant:<18} {len(part):>5} {ours.f1:>19.3f} {scrapy.f1:>24.3f}")


def quality(pages: list[tuple[str, str, str]]) -> dict[str, tuple[PRF, dict[str, float]]]:
    """Per extractor: micro-averaged counts over the pages, and F1 per page."""
    results = {}
    for name, fn in EXTRACTORS.items():
        total, per_page = PRF(0, 0, 0), {}
        for page, html, gold in pages:
            counts = token_prf(gold, fn(html))
            total += counts
            per_page[page] = counts.f1
        results[name] = (total, per_page)
    return results


def print_quality(title: str, pages: list[tuple[str, str, str]], *, per_page: bool) -> None:
    print(f"\n## Body-text quality: {title} ({len(pages)} pages, token-level, micro-averaged)\n")
    print(f"{'extractor':<38} {'precision':>9} {'recall':>7} {'F1':>6}")
    results = quality(pages)
    for name, (total, _) in results.items():
        print(f"{name:<38} {total.precision:>9.3f} {total.recall:>7.3f} {total.f1:>6.3f}")
    if per_page:
        names = list(results)[:3]
        print(f"\nF1 per page: {' / '.join(names)}")
        for page, *_ in pages:
            print(f"  {page:<28} " + "  ".join(f"{results[n][1][page]:.3f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=200, help="articles in the generated site")
    parser.add_argument("--real", type=Path, action="append", help="real pages, Readability test-page layout")
    parser.add_argument("--scrapinghub", type=Path, help="checkout of scrapinghub/article-extraction-benchmark")
    parser.add_argument("--zh-pages", type=int, default=300, help="Chinese legal passages from shared/data")
    parser.add_argument("--skip-crawl", action="store_true", help="only the extraction quality tables")
    args = parser.parse_args()

    if not args.skip_crawl:
        with tempfile.TemporaryDirectory(prefix="crawl-bench-") as tmp:
            work = Path(tmp)
            site = make_site(work / "site", articles=args.articles, per_page=25)
            proc, base = serve(work / "site")
            try:
                fetch = run_fetch_only(base, work)
                adhoc = run_adhoc_crawl(base, work)
            finally:
                proc.terminate()
                proc.wait()
        print(f"\n## Crawl throughput (sample site: {len(site.articles)} documents, their print/AMP copies,")
        print("## listings, 404s; local server; politeness delays off)\n")
        print(f"{'crawler':<46} {'responses':>9} {'docs':>6} {'crawl s':>8} {'pages/s':>8} {'ratio':>6}")
        fetch_rate = fetch["responses"] / fetch["crawl_s"]
        for name, r in (
            ("fetch-only Scrapy spider (ceiling)", {**fetch, "docs": 0}),
            ("scrapy crawl legal_docs -a start_urls (ad hoc)", adhoc),
        ):
            rate = r["responses"] / r["crawl_s"]
            print(
                f"{name:<46} {r['responses']:>9} {r['docs']:>6} {r['crawl_s']:>8.2f} {rate:>8.1f} "
                f"{rate / fetch_rate:>6.2f}"
            )
        print(f"(ad-hoc crawl pages by kind: {adhoc['kinds']}; documents expected: {len(site.articles)})")
        print(
            f"(process wall time incl. startup: fetch-only {fetch['wall_s']:.1f}s, legal_docs {adhoc['wall_s']:.1f}s)"
        )

    real_dirs = args.real or ([DEFAULT_REAL] if DEFAULT_REAL.is_dir() else [])
    for directory in real_dirs:
        print_quality(f"real pages in {directory}", list(readability_pages(directory)), per_page=True)
    if args.scrapinghub:
        print_quality(
            "Scrapinghub article-extraction-benchmark", list(scrapinghub_pages(args.scrapinghub)), per_page=False
        )
    if ZH_LEGAL.is_file():
        zh = list(zh_legal_pages(args.zh_pages))
        title = "real Chinese legal passages (shared/data) in generated court pages"
        print_quality(title, [(name, html, gold) for name, html, _, gold in zh], per_page=False)
        print_zh_decoding(zh)
    if not real_dirs and not args.scrapinghub:
        print("\n(no real pages: pass --real DIR or --scrapinghub DIR, see the docstring)")
    print_quality("hand-written legal pages (tuned on)", list(gold_pages()), per_page=False)


if __name__ == "__main__":
    main()
