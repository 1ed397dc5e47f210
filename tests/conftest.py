"""Shared fixtures: the bundled sample corpus and helpers to build small corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "legal_sample.jsonl"


@pytest.fixture
def sample_jsonl() -> Path:
    return SAMPLE


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_config(path: Path, root: Path, sources: list[Path], steps: list, **extra) -> Path:
    import yaml

    cfg = {"root": str(root), "workers": 1, "sources": [str(s) for s in sources], "steps": steps, **extra}
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def query(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()
