"""The response cache: SQLite under ``<root>/state/synth/cache.sqlite``.

Keyed by a hash of everything that decides a response: endpoint model, rendered messages,
generation parameters (including the per-attempt seed), the response format and schema. Every
response that arrived is stored, valid or not, and committed at once, so

* a rerun of the same job sends no requests and rebuilds byte-identical rows and rejects;
* a job killed mid-way resumes by rerunning it: finished requests are hits, only the rest go out.

SQLite (WAL) because it is one file, safe against a crash mid-write, and in the standard library.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DDL = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CachedResponse:
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    created_at: float  # unix seconds of the original response; rows reuse it, so reruns are identical


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], response_format: Any) -> str:
    """sha256 over the canonical JSON of what was asked."""
    body = {"model": model, "messages": messages, "params": params, "response_format": response_format}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(DDL)

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT content, finish_reason, prompt_tokens, completion_tokens, created_at "
                "FROM responses WHERE key = ?",
                (key,),
            ).fetchone()
        return CachedResponse(*row) if row else None

    def put(self, key: str, model: str, response: CachedResponse) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    response.content,
                    response.finish_reason,
                    response.prompt_tokens,
                    response.completion_tokens,
                    response.created_at or time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
