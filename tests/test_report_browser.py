"""The reports in headless Chromium: they load offline, log no errors, fetch nothing, and every
plot renders with a non-zero size. Needs the Debian packages chromium and chromium-driver."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from report_browser import PageLoad, find_binaries, load_page
from report_corpus import build_once, write_metrics

from corpus.report import write_report
from training.report import write_training_report

SCREENSHOT_DIR_ENV = "CORPUSFORGE_SCREENSHOTS"


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    if find_binaries() is None:
        pytest.fail("headless Chromium is required: apt-get install chromium chromium-driver", pytrace=False)


@pytest.fixture(scope="session")
def full_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), "full")


def keep_screenshot(path: Path) -> None:
    """Copy screenshots somewhere a person can look at them (set CORPUSFORGE_SCREENSHOTS=dir)."""
    import os

    target = os.environ.get(SCREENSHOT_DIR_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def assert_clean_load(html_path: Path, screenshot: Path) -> PageLoad:
    page = load_page(html_path, screenshot)
    keep_screenshot(screenshot)
    assert page.ready_state == "complete"
    assert page.console_errors == [], page.console_errors
    assert page.requests == [], page.requests  # nothing fetched: no CDN, no fonts, no images
    expected = len(re.findall(r"data-plot=", html_path.read_text(encoding="utf-8")))
    assert len(page.plots) == expected > 0
    for plot in page.plots:
        assert plot["has_svg"] and plot["width"] > 100 and plot["height"] > 50, plot
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    return page


def test_corpus_report_in_chromium(full_corpus: Path, tmp_path: Path) -> None:
    html = write_report(full_corpus, tmp_path / "report.html")
    page = assert_clean_load(html, tmp_path / "corpus_report.png")
    # Chinese is drawn with the page's embedded CJK font, not as boxes of a Latin font (#16.14)
    cjk = [f for f in page.cjk_fonts if f["isCustomFont"]]
    assert cjk and cjk[0]["glyphCount"] > 10, page.cjk_fonts


def test_training_report_in_chromium(tmp_path: Path) -> None:
    html = write_training_report(write_metrics(tmp_path / "run"))
    assert_clean_load(html, tmp_path / "training_report.png")


def test_harness_sees_errors_and_requests(tmp_path: Path) -> None:
    """The checks above are not vacuous: a page that logs an error and fetches an image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<script>console.error("boom")</script><img src="http://127.0.0.1:9/x.png"></body></html>'
    )
    page = load_page(bad, tmp_path / "bad.png")
    assert any("boom" in e["message"] for e in page.console_errors)
    assert "http://127.0.0.1:9/x.png" in page.requests
