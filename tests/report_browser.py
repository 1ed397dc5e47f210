"""Open an HTML file in headless Chromium (selenium + chromedriver) and report what happened.

Test helper for the report tests: console messages, every network request the page made, the
rendered size of each plot, and a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@dataclass
class PageLoad:
    ready_state: str
    title: str
    console: list[dict]
    requests: list[str]
    plots: list[dict]
    screenshot: Path
    cjk_fonts: list[dict]  # fonts Chromium used for the first element with Chinese text (CDP), [] if none

    @property
    def console_errors(self) -> list[dict]:
        return [e for e in self.console if e.get("level") in ("SEVERE", "ERROR")]


def find_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) from PATH or the Debian locations; None when not installed."""
    browser = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver")
    if driver is None and Path("/usr/bin/chromedriver").exists():
        driver = "/usr/bin/chromedriver"
    return (browser, driver) if browser and driver else None


def load_page(html: Path, screenshot: Path, width: int = 1280, height: int = 900) -> PageLoad:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    browser, driver_bin = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_bin))
    try:
        driver.set_page_load_timeout(60)
        url = html.resolve().as_uri()
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        plots = driver.execute_script(
            """return Array.from(document.querySelectorAll('[data-plot]')).map(el => {
                 const svg = el.querySelector('svg');
                 const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                 return {name: el.dataset.plot, has_svg: !!svg, width: r.width, height: r.height};
               });"""
        )
        ready = driver.execute_script("return document.readyState")
        title = driver.title
        console = driver.get_log("browser")  # the page's own messages, read before the font probe:
        # CSS.enable makes Chromium (>= 150) re-read the inline stylesheets' source, the file: page
        # itself, and log that load as an "Unsafe attempt", which is the probe's doing, not the page's
        cjk_fonts = _fonts_of_first_cjk_text(driver)
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                requests.append(message["params"]["request"]["url"])
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        # data: URIs (the embedded font) are part of the page, not fetched from anywhere
        fetched = [r for r in requests if r != url and not r.startswith("data:")]
        return PageLoad(ready, title, console, fetched, plots, screenshot, cjk_fonts)
    finally:
        driver.quit()


def _fonts_of_first_cjk_text(driver) -> list[dict]:  # type: ignore[no-untyped-def]
    """The platform fonts that rendered the first table cell or paragraph holding Han characters
    (``CSS.getPlatformFontsForNode``: family name, whether it is a page's @font-face, glyph count)."""
    marked = driver.execute_script(
        """const el = Array.from(document.querySelectorAll('td, p')).find(e => /[\u4e00-\u9fff]/.test(e.textContent));
           if (!el) return false; el.setAttribute('data-cjk-probe', '1'); return true;"""
    )
    if not marked:
        return []
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": "[data-cjk-probe]"})["nodeId"]
    return driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
