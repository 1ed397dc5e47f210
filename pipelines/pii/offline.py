"""Keep presidio's tldextract off the network.

presidio's e-mail recognizer calls ``tldextract.extract``, whose default extractor downloads the
public suffix list on first use (and caches it in the home directory). On a build machine without
network that first call hangs for the fetch timeout; we replace the module's default extractor by
one that reads only the suffix-list snapshot bundled inside the tldextract wheel.
"""

from __future__ import annotations

from functools import cache

import tldextract
import tldextract.tldextract as _tld


@cache
def offline_extractor() -> tldextract.TLDExtract:
    """An extractor with no URLs to fetch and no disk cache: the bundled snapshot only."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def use_bundled_suffix_list() -> None:
    """Point ``tldextract.extract`` (as called by presidio) at the offline extractor. Idempotent."""
    _tld.TLD_EXTRACTOR = offline_extractor()


use_bundled_suffix_list()
