"""Site profiles: what to crawl on one site, as YAML under ``crawlers/sites/``.

A profile names the start URLs and allowed domains, regexes for the links to follow (listings,
pagination) and for document links, and optional CSS/XPath selectors for title, date, court,
case number and body. Keys are checked so a typo is an error naming the file and the key.
The spider turns a profile into Scrapy ``Rule``s (`crawlers.spiders.legal_docs.rules_for`).

Spider arguments (``-a start_urls=`` / ``-a urls_file=`` / ``-a sitemap=``) make an ad-hoc
profile (`adhoc_profile`) for a site nobody has described: there every fetched page is a
candidate document and a source of links, and a page without main text is a listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import yaml

SITES_DIR = Path(__file__).parent / "sites"
SELECTOR_FIELDS = {"title", "date", "court", "case_number", "body"}
KEYS = {
    "name",
    "description",
    "start_urls",
    "allowed_domains",
    "sitemap_urls",
    "follow",
    "documents",
    "deny",
    "restrict_css",
    "follow_links_in_documents",
    "listings_are_candidates",
    "documents_expected",
    "selectors",
    "settings",
    "serve",
}


class ProfileError(ValueError):
    """A site profile is missing, malformed or inconsistent; the message names the file."""


@dataclass
class SiteProfile:
    name: str
    start_urls: list[str]
    allowed_domains: list[str] = field(default_factory=list)
    sitemap_urls: list[str] = field(default_factory=list)
    follow: list[re.Pattern[str]] = field(default_factory=list)
    documents: list[re.Pattern[str]] = field(default_factory=list)
    deny: list[re.Pattern[str]] = field(default_factory=list)
    restrict_css: list[str] = field(default_factory=list)
    follow_links_in_documents: bool = False
    # a page matching both `follow` and `documents` is a listing *and* a candidate document
    # (default: `follow` wins, so a profile can use a broad `documents` regex)
    listings_are_candidates: bool = False
    # a `documents` page without main text is a failure (True), or just a listing (False: ad hoc)
    documents_expected: bool = True
    selectors: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # Scrapy settings for this site (priority "spider")
    serve: str | None = None  # directory (relative to the profile) served on loopback: demo sites
    source: str = "<args>"

    def is_document(self, url: str) -> bool:
        return any(p.search(url) for p in self.documents) and not self.is_denied(url)

    def is_candidate(self, url: str) -> bool:
        """Whether a fetched page at ``url`` is extracted as a (candidate) document."""
        return self.is_document(url) and (self.listings_are_candidates or not self.should_follow(url))

    def should_follow(self, url: str) -> bool:
        return any(p.search(url) for p in self.follow) and not self.is_denied(url)

    def is_denied(self, url: str) -> bool:
        return any(p.search(url) for p in self.deny)

    def served_at(self, base_url: str) -> SiteProfile:
        """This profile with its relative start/sitemap URLs resolved against the server of ``serve``."""

        def absolute(url: str) -> str:
            return url if urlparse(url).scheme else urljoin(base_url + "/", url.lstrip("/"))

        return replace(
            self,
            start_urls=[absolute(u) for u in self.start_urls],
            sitemap_urls=[absolute(u) for u in self.sitemap_urls],
        )

    def check_absolute(self) -> None:
        """Relative URLs only make sense for a served (demo) site; say so instead of failing in Scrapy."""
        for url in [*self.start_urls, *self.sitemap_urls]:
            if not urlparse(url).scheme:
                hint = "" if self.serve else " (relative URLs need 'serve' in the profile)"
                raise ProfileError(f"{self.source}: URL {url!r} is not absolute{hint}")


def _patterns(value: Any, key: str, where: str) -> list[re.Pattern[str]]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ProfileError(f"{where}: {key!r} must be a regex or a list of regexes")
    try:
        return [re.compile(v) for v in items]
    except re.error as exc:
        raise ProfileError(f"{where}: {key!r} has an invalid regex: {exc}") from exc


def _strings(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ProfileError(f"{where}: {key!r} must be a string or a list of strings")
    return list(items)


def _settings(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isupper() for k in value):
        raise ProfileError(f"{where}: 'settings' must map Scrapy setting names (UPPER_CASE) to values")
    return dict(value)


def profile_from_dict(raw: dict[str, Any], where: str) -> SiteProfile:
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    selectors = raw.get("selectors") or {}
    if not isinstance(selectors, dict) or set(selectors) - SELECTOR_FIELDS:
        raise ProfileError(f"{where}: 'selectors' keys must be among {', '.join(sorted(SELECTOR_FIELDS))}")
    for key, spec in selectors.items():
        if not (isinstance(spec, str) or (isinstance(spec, dict) and len(spec) == 1 and set(spec) <= {"css", "xpath"})):
            raise ProfileError(f"{where}: selectors.{key} must be a CSS string or {{css: ...}} / {{xpath: ...}}")
    profile = SiteProfile(
        name=str(raw.get("name") or Path(where).stem),
        start_urls=_strings(raw.get("start_urls"), "start_urls", where),
        allowed_domains=_strings(raw.get("allowed_domains"), "allowed_domains", where),
        sitemap_urls=_strings(raw.get("sitemap_urls"), "sitemap_urls", where),
        follow=_patterns(raw.get("follow"), "follow", where),
        documents=_patterns(raw.get("documents"), "documents", where),
        deny=_patterns(raw.get("deny"), "deny", where),
        restrict_css=_strings(raw.get("restrict_css"), "restrict_css", where),
        follow_links_in_documents=bool(raw.get("follow_links_in_documents", False)),
        listings_are_candidates=bool(raw.get("listings_are_candidates", False)),
        documents_expected=bool(raw.get("documents_expected", True)),
        selectors=selectors,
        settings=_settings(raw.get("settings"), where),
        serve=raw.get("serve"),
        source=where,
    )
    if not profile.start_urls and not profile.sitemap_urls:
        raise ProfileError(f"{where}: a profile needs 'start_urls' or 'sitemap_urls'")
    if profile.listings_are_candidates and not profile.follow:
        raise ProfileError(f"{where}: 'listings_are_candidates' needs 'follow' regexes")
    if not profile.documents:
        raise ProfileError(f"{where}: 'documents' (regexes of document URLs) is required")
    return profile


def load_profile(name_or_path: str) -> SiteProfile:
    """A profile by name (``crawlers/sites/NAME.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SITES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SITES_DIR.glob("*.yaml")))
        raise ProfileError(f"site profile {name_or_path!r} not found ({path}); known profiles: {known}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: top level must be a mapping")
    profile = profile_from_dict(raw, str(path))
    if profile.serve:
        serve_dir = (path.parent / profile.serve).resolve()
        if not serve_dir.is_dir():
            raise ProfileError(f"{path}: 'serve' directory {serve_dir} does not exist")
        profile.serve = str(serve_dir)
    return profile


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def read_urls_file(path: str) -> list[str]:
    """URLs of ``-a urls_file=PATH``: one a line; blank lines and ``#`` comments are skipped."""
    file = Path(path)
    if not file.is_file():
        raise ProfileError(f"urls_file {path}: no such file")
    urls = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if urlparse(line).scheme not in ("http", "https") or not urlparse(line).hostname:
            raise ProfileError(f"urls_file {path}:{n}: not an http(s) URL: {line!r}")
        urls.append(line)
    if not urls:
        raise ProfileError(f"urls_file {path}: no URLs in the file")
    return urls


def adhoc_profile(
    *,
    start_urls: str | None = None,
    urls_file: str | None = None,
    sitemap: str | None = None,
    allowed_domains: str | None = None,
    follow: str | None = None,
    documents: str | None = None,
) -> SiteProfile:
    """A profile from spider arguments, for a site without a profile.

    ``start_urls``: every fetched page is a candidate document and a source of links, unless
    ``follow`` / ``documents`` (regexes) narrow which pages are followed / extracted; a candidate
    without main text is recorded as a listing. ``urls_file`` and ``sitemap``: exactly the listed
    URLs are candidates and no links are followed (unless ``follow`` is given). Allowed domains
    default to the hosts of the given URLs.
    """
    given = [name for name, v in (("start_urls", start_urls), ("urls_file", urls_file), ("sitemap", sitemap)) if v]
    if len(given) != 1:
        raise ProfileError(f"<spider arguments>: give one of start_urls, urls_file, sitemap (got {given or 'none'})")
    urls = _split(start_urls) if start_urls else read_urls_file(urls_file) if urls_file else []
    sitemaps = _split(sitemap) if sitemap else []
    domains = (
        _split(allowed_domains)
        if allowed_domains
        else sorted({urlparse(u).hostname or "" for u in urls + sitemaps} - {""})
    )
    crawl_links = bool(start_urls) or bool(follow)
    return profile_from_dict(
        {
            "name": "adhoc",
            "start_urls": urls,
            "sitemap_urls": sitemaps,
            "allowed_domains": domains,
            "follow": (follow or ".") if crawl_links else None,
            "documents": documents or ".",
            "listings_are_candidates": crawl_links,
            "documents_expected": documents is not None,
        },
        "<spider arguments>",
    )
