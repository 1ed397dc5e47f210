"""A filesystem HTTP cache with a size bound, for re-running extraction without re-crawling.

Scrapy's `FilesystemCacheStorage` expires entries (HTTPCACHE_EXPIRATION_SECS) but grows without
limit. This subclass keeps the cache directory under HTTPCACHE_MAX_BYTES by evicting the least
recently stored entries whenever a store pushes it over the bound.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from scrapy.extensions.httpcache import FilesystemCacheStorage


def _entry_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


class BoundedFilesystemCacheStorage(FilesystemCacheStorage):
    def __init__(self, settings: Any):
        super().__init__(settings)
        self.max_bytes = settings.getint("HTTPCACHE_MAX_BYTES", 0)
        self._entries: dict[Path, tuple[float, int]] | None = None
        self._total = 0
        self.evicted = 0

    def _scan(self, spider_dir: Path) -> None:
        self._entries = {}
        if spider_dir.exists():
            for meta in spider_dir.glob("*/*/pickled_meta"):
                entry = meta.parent
                self._entries[entry] = (meta.stat().st_mtime, _entry_size(entry))
        self._total = sum(size for _, size in self._entries.values())

    def store_response(self, spider: Any, request: Any, response: Any) -> None:
        super().store_response(spider, request, response)
        if self.max_bytes <= 0:
            return
        entry = Path(self._get_request_path(spider, request))
        spider_dir = entry.parent.parent
        if self._entries is None:
            self._scan(spider_dir)
        assert self._entries is not None
        old = self._entries.get(entry, (0.0, 0))[1]
        size = _entry_size(entry)
        self._entries[entry] = (os.path.getmtime(entry / "pickled_meta"), size)
        self._total += size - old
        if self._total > self.max_bytes:
            for victim, (_, vsize) in sorted(self._entries.items(), key=lambda kv: kv[1][0]):
                if self._total <= self.max_bytes * 0.9:
                    break
                if victim == entry:
                    continue
                shutil.rmtree(victim, ignore_errors=True)
                del self._entries[victim]
                self._total -= vsize
                self.evicted += 1
