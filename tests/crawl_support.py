"""Helpers for the crawl tests: a fixture site server, a profile pointing at it, a crawl runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, query

from crawlers.demo_server import DEMO_SITE, SiteServer

DEMO_PROFILE = REPO / "crawlers" / "sites" / "demo.yaml"
# Fast, deterministic settings for loopback crawls (politeness is for real sites).
FAST = {
    "AUTOTHROTTLE_ENABLED": "False",
    "DOWNLOAD_DELAY": "0",
    "RETRY_BACKOFF_BASE": "0.2",
    "EXTRACTION_WORKERS": "1",
    "LOG_LEVEL": "INFO",
}
DOC_PATHS = [
    "/cases/case-001.html",
    "/cases/case-002.html",
    "/cases/case-003.html",
    "/cases/case-004.html",
    "/cases/case-005.html",
    "/cases/busy.html",
    "/cases/flaky.html",
    "/cases/zh-101.html",
    "/cases/zh-102.gbk.html",
    "/documents/regulation-2023-07.pdf",
]


def fixture_server(**kwargs) -> SiteServer:
    return SiteServer(DEMO_SITE, **kwargs).start()


def profile_for(server: SiteServer, tmp_path: Path) -> Path:
    """The demo profile with absolute start URLs on ``server`` (and no self-served site)."""
    raw = yaml.safe_load(DEMO_PROFILE.read_text(encoding="utf-8"))
    raw.pop("serve")
    raw["start_urls"] = [server.base_url + u for u in raw["start_urls"]]
    raw["sitemap_urls"] = [server.base_url + u for u in raw["sitemap_urls"]]
    path = tmp_path / "fixture_site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def crawl(
    root: Path,
    *args: str,
    spider: str = "legal_docs",
    settings: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``scrapy crawl`` as a user runs it: from the repository root, in a subprocess."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", spider, *args, "-s", f"CORPUS_ROOT={root}"]
    for key, value in {**FAST, **(settings or {})}.items():
        cmd += ["-s", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def documents(root: Path) -> dict[str, dict]:
    """url -> row (with parsed meta) of every raw crawl document in the catalog."""
    rows = query(root, "SELECT url, title, text, lang, source, meta FROM raw_documents ORDER BY url")
    return {
        url: {"title": title, "text": text, "lang": lang, "source": source, "meta": json.loads(meta)}
        for url, title, text, lang, source, meta in rows
    }


def paths_of(urls, base: str) -> set[str]:
    return {u.removeprefix(base) for u in urls}
