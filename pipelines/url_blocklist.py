"""URL and domain blocklists, matched on a shard's ``url`` column.

A list file has one rule a line (``#`` comments, ``[category]`` sections, an optional
``<TAB>category`` after the rule, like the flagged-word lists)::

    [gambling]
    casino.example          # the domain and every subdomain (www., m., a.b.casino.example)
    news.example/ads/       # a URL prefix: that host or a subdomain, path starting with /ads/
    re:^https?://[^/]*\\.bet\\d+\\.   # a regular expression searched in the whole URL

Domains are compared in lower case, without a trailing dot and in their ASCII (IDNA) form, so
``Casino.Example.`` and ``https://ＣＡＳＩＮＯ.example`` (after NFKC) are the same host;
``notcasino.example`` is not a subdomain of ``casino.example``. Matching costs one set lookup
per label of each distinct host of the shard, plus one Polars regex pass per ``re:`` rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.flagged_words import ListError, check_category, list_entries

HOST_RE = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)"
PATH_RE = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//[^/?#]*(.*)$"


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII labels."""
    host = unicodedata.normalize("NFKC", host).strip().lower().rstrip(".")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


@dataclass(frozen=True)
class Rule:
    text: str  # as written
    category: str
    origin: str  # file:line


@dataclass
class UrlBlocklist:
    domains: dict[str, Rule] = field(default_factory=dict)  # host suffix -> rule
    prefixes: dict[str, list[tuple[str, Rule]]] = field(default_factory=dict)  # host suffix -> [(path prefix, rule)]
    patterns: list[tuple[str, Rule]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.domains or self.prefixes or self.patterns)

    @property
    def categories(self) -> list[str]:
        rules = [*self.domains.values(), *(r for v in self.prefixes.values() for _, r in v)]
        return sorted({r.category for r in rules} | {r.category for _, r in self.patterns})

    def add(self, line: str, category: str, origin: str) -> None:
        if line.startswith("re:"):
            pattern = line[3:]
            try:
                re.compile(pattern)
                pl.Series([""]).str.contains(pattern)  # the same pattern must compile for Polars' engine
            except Exception as exc:
                raise ListError(f"{origin}: bad regular expression {pattern!r}: {exc}") from None
            self.patterns.append((pattern, Rule(line, category, origin)))
            return
        rest = line.split("://", 1)[-1]
        host, slash, path = rest.partition("/")
        host = normalize_host(host.split(":", 1)[0])
        if not host or " " in host or "*" in host:
            raise ListError(f"{origin}: expected a domain, domain/path or re:REGEX, got {line!r}")
        host = host.removeprefix(".")  # ".example.com" means the same as "example.com"
        if slash:
            self.prefixes.setdefault(host, []).append(("/" + path, Rule(line, category, origin)))
        else:
            self.domains.setdefault(host, Rule(line, category, origin))

    def match_host(self, host: str, path: str) -> Rule | None:
        """The rule that blocks this host and path, or None (the most specific domain first)."""
        labels = host.split(".")
        for k in range(len(labels)):
            suffix = ".".join(labels[k:])
            for prefix, rule in self.prefixes.get(suffix, ()):
                if path.startswith(prefix):
                    return rule
            if suffix in self.domains:
                return self.domains[suffix]
        return None

    def match(self, urls: pl.Series) -> list[Rule | None]:
        """The blocking rule of every URL (None: not blocked; a null URL is never blocked)."""
        urls = urls.cast(pl.String)
        out: list[Rule | None] = [None] * len(urls)
        if self.empty or len(urls) == 0:
            return out
        if self.domains or self.prefixes:
            frame = pl.DataFrame({"url": urls}).with_columns(
                host=pl.col("url").str.extract(HOST_RE, 1), path=pl.col("url").str.extract(PATH_RE, 1)
            )
            # per host, once: its normal form when a rule names one of its suffixes, else None
            # (most hosts are named by no rule: their URLs' paths are never looked at)
            listed: dict[str, str | None] = {}
            for i, (host, path) in enumerate(frame.select("host", "path").iter_rows()):
                if not host:
                    continue
                if host not in listed:
                    norm = normalize_host(host)
                    labels = norm.split(".")
                    suffixes = (".".join(labels[k:]) for k in range(len(labels)))
                    listed[host] = norm if any(x in self.domains or x in self.prefixes for x in suffixes) else None
                if (norm := listed[host]) is not None:
                    out[i] = self.match_host(norm, path or "")
        for pattern, rule in self.patterns:
            hit = urls.str.contains(pattern).fill_null(False).to_numpy()
            for i in hit.nonzero()[0].tolist():
                out[i] = out[i] or rule
        return out


def load_blocklists(paths: Sequence[str | Path]) -> UrlBlocklist:
    out = UrlBlocklist()
    for p in paths:
        for where, raw, category in list_entries(Path(p), "URL blocklist"):
            rule, _, cat = raw.partition("\t")
            rule = rule.strip()
            if not rule.startswith("re:"):
                rule = rule.split(" #", 1)[0].strip()
            out.add(rule, check_category(cat.strip(), where) if cat.strip() else category, where)
    return out


__all__ = ["Rule", "UrlBlocklist", "load_blocklists", "normalize_host"]
