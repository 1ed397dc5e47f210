"""Site profiles: what to crawl on one site, as YAML under ``crawlers/sites/``.

A profile names the start URLs and allowed domains, regexes for the links to follow (listings,
pagination) and for document links, and optional CSS/XPath selectors for title, date, court,
case number and body. Keys are checked so a typo is an error naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    selectors: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # Scrapy settings for this site (priority "spider")
    serve: str | None = None  # directory (relative to the profile) served on loopback: demo sites
    source: str = "<args>"

    def is_document(self, url: str) -> bool:
        return any(p.search(url) for p in self.documents) and not self.is_denied(url)

    def should_follow(self, url: str) -> bool:
        return any(p.search(url) for p in self.follow) and not self.is_denied(url)

    def is_denied(self, url: str) -> bool:
        return any(p.search(url) for p in self.deny)


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
        selectors=selectors,
        settings=_settings(raw.get("settings"), where),
        serve=raw.get("serve"),
        source=where,
    )
    if not profile.start_urls and not profile.sitemap_urls:
        raise ProfileError(f"{where}: a profile needs 'start_urls' or 'sitemap_urls'")
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


def adhoc_profile(
    start_urls: str, allowed_domains: str | None, follow: str | None, documents: str | None
) -> SiteProfile:
    """A profile from ``-a start_urls=... -a allowed_domains=...``: follow and keep every in-domain page
    unless ``-a follow=REGEX`` / ``-a documents=REGEX`` narrow it."""
    from urllib.parse import urlparse

    urls = [u.strip() for u in start_urls.split(",") if u.strip()]
    domains = (
        [d.strip() for d in allowed_domains.split(",") if d.strip()]
        if allowed_domains
        else sorted({urlparse(u).hostname or "" for u in urls} - {""})
    )
    return profile_from_dict(
        {
            "name": "adhoc",
            "start_urls": urls,
            "allowed_domains": domains,
            "follow": follow or ".",
            "documents": documents or ".",
            "follow_links_in_documents": True,
        },
        "<spider arguments>",
    )
