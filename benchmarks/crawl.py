"""Crawl benchmark: `python benchmarks/crawl.py [--pages 400] [--repeat 3]`.

Measures, in one run:

1. crawl throughput (pages/s) of `scrapy crawl legal_docs` against a local server (a separate
   process) serving a generated legal site of ``--pages`` detail pages plus listings, with the
   politeness delays off (they would measure the delay, not the crawler); next to it, a
   fetch-only Scrapy spider on the same site (no extraction, no Parquet/catalog writes) as the
   ceiling, so the ratio is what extraction + output cost;
2. extraction docs/s on those pages: trafilatura (precision mode, what the spider uses), our full
   `extract_html` (trafilatura + bs4 structured fields), and a plain `BeautifulSoup.get_text()`;
3. extraction quality on the hand-written ground truth in `benchmarks/data/extraction_gold/`:
   token-level precision / recall / F1 of the body text (bag of tokens; words for Latin script,
   single characters for CJK), micro-averaged over documents.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import trafilatura  # noqa: E402
import yaml  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402

from crawlers.extract import extract_html  # noqa: E402

GOLD = REPO / "benchmarks" / "data" / "extraction_gold"
PER_LISTING = 25
CRAWL_SETTINGS = {
    "AUTOTHROTTLE_ENABLED": "False",
    "DOWNLOAD_DELAY": "0",
    "CONCURRENT_REQUESTS": "32",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "32",
    "EXTRACTION_WORKERS": "2",
    "LOG_LEVEL": "WARNING",
}


# -- the generated site -------------------------------------------------------------------------
def make_site(directory: Path, pages: int, seed: int = 0) -> list[str]:
    """Detail pages in the gold set's layouts with fresh paragraphs; listings of 25 with pagination."""
    rng = random.Random(seed)
    layouts = sorted(GOLD.glob("en_*.html"))
    vocab = re.findall(
        r"[a-z]+", " ".join(p.read_text(encoding="utf-8") for p in sorted(GOLD.glob("en_*.txt"))).lower()
    )
    (directory / "doc").mkdir(parents=True, exist_ok=True)
    htmls = []
    for i in range(pages):
        layout = layouts[i % len(layouts)]
        gold = (GOLD / f"{layout.stem}.txt").read_text(encoding="utf-8").strip().splitlines()
        html = layout.read_text(encoding="utf-8")
        for line in gold:  # replace each gold paragraph with a new one of similar length
            words = [rng.choice(vocab) for _ in range(max(8, len(line.split())))]
            html = html.replace(line, " ".join(words).capitalize() + ".", 1)
        (directory / "doc" / f"{i}.html").write_text(html, encoding="utf-8")
        htmls.append(html)
    n_listings = (pages + PER_LISTING - 1) // PER_LISTING
    for k in range(n_listings):
        links = "".join(
            f'<li><a href="/doc/{i}.html">Decision {i}</a></li>'
            for i in range(k * PER_LISTING, min(pages, (k + 1) * PER_LISTING))
        )
        nxt = f'<a href="/list-{k + 1}.html">Next</a>' if k + 1 < n_listings else ""
        (directory / f"list-{k}.html").write_text(
            f"<html><body><h1>Decisions page {k}</h1><ul>{links}</ul>{nxt}</body></html>", encoding="utf-8"
        )
    (directory / "robots.txt").write_text("User-agent: *\nDisallow: /admin/\n", encoding="utf-8")
    return htmls


def serve(directory: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawlers.demo_server", str(directory), "--port", "0", "--no-faults"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, re.search(r"http://[\d.]+:\d+", line).group(0)  # type: ignore[union-attr]


# -- crawls ---------------------------------------------------------------------------------------
def run_crawl(base: str, work: Path) -> dict[str, float]:
    profile = {
        "name": "bench",
        "start_urls": [f"{base}/list-0.html"],
        "allowed_domains": ["127.0.0.1"],
        "follow": [r"/list-\d+\.html$"],
        "documents": [r"/doc/\d+\.html$"],
    }
    site = work / "bench.yaml"
    site.write_text(yaml.safe_dump(profile), encoding="utf-8")
    root = work / "data"
    cmd = [sys.executable, "-m", "scrapy", "crawl", "legal_docs", "-a", f"site={site}", "-s", f"CORPUS_ROOT={root}"]
    for k, v in CRAWL_SETTINGS.items():
        cmd += ["-s", f"{k}={v}"]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    wall = time.perf_counter() - started
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as conn:
        seconds, responses, docs = conn.execute("SELECT seconds, docs_in, docs_out FROM runs").fetchone()
    return {"wall_s": wall, "crawl_s": seconds, "responses": responses, "docs": docs}


FETCH_ONLY = """
import sys, time, json, re
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings

class FetchOnly(scrapy.Spider):
    name = "fetch_only"
    allowed_domains = ["127.0.0.1"]
    start_urls = [sys.argv[1] + "/list-0.html"]
    def parse(self, response):
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, self.parse if "list-" in href else self.noop)
    def noop(self, response):
        self.crawler.stats.inc_value("bench/docs")

settings = get_project_settings()
settings.setdict(json.loads(sys.argv[2]), priority="cmdline")
settings.set("ITEM_PIPELINES", {}, priority="cmdline")
process = CrawlerProcess(settings)
crawler = process.create_crawler(FetchOnly)
process.crawl(crawler)
process.start()
stats = crawler.stats.get_stats()
print(json.dumps({"crawl_s": stats["elapsed_time_seconds"], "responses": stats["response_received_count"],
                  "docs": stats.get("bench/docs", 0)}))
"""


def run_fetch_only(base: str, work: Path) -> dict[str, float]:
    script = work / "fetch_only.py"  # a file, not -c: Scrapy inspects callbacks' source code
    script.write_text(FETCH_ONLY, encoding="utf-8")
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), base, json.dumps(CRAWL_SETTINGS)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


# -- extraction -----------------------------------------------------------------------------------
def bs4_text(html: str) -> str:
    return BeautifulSoup(html, "lxml").get_text("\n", strip=True)


def trafilatura_precision(html: str) -> str:
    return trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=False) or ""


def trafilatura_default(html: str) -> str:
    return trafilatura.extract(html) or ""


def ours(html: str) -> str:
    return extract_html(html, "http://bench.example/doc")["text"]


EXTRACTORS = {
    "bs4 get_text (baseline)": bs4_text,
    "trafilatura precision (spider)": trafilatura_precision,
    "extract_html (trafilatura + bs4 fields)": ours,
    "trafilatura default": trafilatura_default,
}


def docs_per_second(fn, htmls: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for html in htmls:
            fn(html)
        best = min(best, time.perf_counter() - started)
    return len(htmls) / best


def tokens(text: str) -> Counter[str]:
    return Counter(re.findall(r"[\u4e00-\u9fff]|[a-z0-9]+", text.lower()))


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def quality(fn) -> tuple[tuple[float, float, float], dict[str, float]]:
    """Micro-averaged (P, R, F1) over the gold set, and F1 per document."""
    tp = fp = fn_ = 0
    per_doc = {}
    for html_path in sorted(GOLD.glob("*.html")):
        gold = tokens((GOLD / f"{html_path.stem}.txt").read_text(encoding="utf-8"))
        got = tokens(fn(html_path.read_text(encoding="utf-8")))
        overlap = sum((gold & got).values())
        counts = (overlap, sum(got.values()) - overlap, sum(gold.values()) - overlap)
        per_doc[html_path.stem] = prf(*counts)[2]
        tp, fp, fn_ = tp + counts[0], fp + counts[1], fn_ + counts[2]
    return prf(tp, fp, fn_), per_doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=400, help="detail pages in the generated site")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats for extraction (best of)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="crawl-bench-") as tmp:
        work = Path(tmp)
        htmls = make_site(work / "site", args.pages)
        proc, base = serve(work / "site")
        try:
            fetch = run_fetch_only(base, work)
            ours_crawl = run_crawl(base, work)
        finally:
            proc.terminate()
            proc.wait()

    print(f"\n## Crawl throughput ({args.pages} detail pages + listings, local server, politeness delays off)\n")
    print(f"{'crawler':<44} {'responses':>9} {'docs':>6} {'crawl s':>8} {'pages/s':>8} {'ratio':>6}")
    fetch_rate = fetch["responses"] / fetch["crawl_s"]
    for name, r in (
        ("fetch-only Scrapy spider (ceiling)", fetch),
        ("scrapy crawl legal_docs (extract + Parquet)", ours_crawl),
    ):
        rate = r["responses"] / r["crawl_s"]
        print(
            f"{name:<44} {r['responses']:>9} {r['docs']:>6} {r['crawl_s']:>8.2f} {rate:>8.1f} {rate / fetch_rate:>6.2f}"
        )
    print(
        f"(process wall time incl. startup: fetch-only {fetch['wall_s']:.1f}s, legal_docs {ours_crawl['wall_s']:.1f}s)"
    )

    sample = htmls[: min(len(htmls), 200)]
    print(f"\n## Extraction speed ({len(sample)} generated pages, one process, best of {args.repeat})\n")
    print(f"{'extractor':<42} {'docs/s':>8} {'vs bs4':>7}")
    base_rate = None
    for name, fn in EXTRACTORS.items():
        rate = docs_per_second(fn, sample, args.repeat)
        base_rate = base_rate or rate
        print(f"{name:<42} {rate:>8.1f} {rate / base_rate:>7.2f}")

    n_gold = len(list(GOLD.glob("*.html")))
    print(f"\n## Body-text quality ({n_gold} hand-labelled pages, token-level, micro-averaged)\n")
    print(f"{'extractor':<42} {'precision':>9} {'recall':>7} {'F1':>6}")
    per_doc = {}
    for name, fn in EXTRACTORS.items():
        (p, r, f1), per_doc[name] = quality(fn)
        print(f"{name:<42} {p:>9.3f} {r:>7.3f} {f1:>6.3f}")
    names = list(EXTRACTORS)
    print(f"\nF1 per page: {' / '.join(names)}")
    for doc in per_doc[names[0]]:
        print(f"  {doc:<26} " + "  ".join(f"{per_doc[n][doc]:.3f}" for n in names))


if __name__ == "__main__":
    main()
