"""A catalog held open by another process (a notebook's read-only connection): a build reads it at
the start regardless, writes it once at the end, and when it cannot, says who holds it, in one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SAMPLE, query

import corpus.catalog
from corpus.catalog import Catalog, CatalogLockedError
from corpus.store import CorpusLayout, file_mismatch
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, Normalize

HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); print('ready', flush=True); "
    "time.sleep(120)"
)


@contextmanager
def held_open(catalog: Path) -> Iterator[int]:
    """Another process with a read-only connection to ``catalog``; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(catalog)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _config(root: Path, *steps) -> BuildConfig:
    return BuildConfig(root=root, workers=1, sources=[SourceSpec(SAMPLE)], steps=[Normalize(), *steps])


def test_opening_a_held_catalog_names_the_process_and_what_to_do(tmp_path):
    layout = CorpusLayout.at(tmp_path / "data")
    with Catalog.open(layout):
        pass  # create the file
    with held_open(layout.catalog) as pid, pytest.raises(CatalogLockedError) as err:
        with Catalog.open(layout, timeout_s=0.5):
            pass
    message = str(err.value)
    assert f"process {pid} (" in message and "-c import duckdb" in message
    assert "close that connection" in message and "\n" not in message


def test_a_build_runs_while_a_reader_holds_the_catalog_and_fails_cleanly_only_at_the_end(tmp_path, monkeypatch):
    root = tmp_path / "data"
    run_build(_config(root), progress=False)
    published = query(root, "SELECT path, checksum FROM shards WHERE stage = 'final' ORDER BY path")
    monkeypatch.setattr(corpus.catalog, "LOCK_WAIT_S", 0.5)
    with held_open(root / "catalog.duckdb") as pid:
        with pytest.raises(CatalogLockedError, match=f"held open by process {pid}"):
            run_build(_config(root, ExactDedup()), progress=False)  # read the raw shards, ran every step
        assert list(root.glob("work/02-exact_dedup-*/done/process-*.json"))
    # nothing was swapped in: the catalog and the files still describe the first build
    assert query(root, "SELECT path, checksum FROM shards WHERE stage = 'final' ORDER BY path") == published
    assert [file_mismatch(root / path, None, checksum) for path, checksum in published] == [None] * len(published)
    assert query(root, "SELECT count(*) FROM runs") == [(1,)]
    result = run_build(_config(root, ExactDedup()), progress=False)  # the reader is gone: resumes and publishes
    assert query(root, "SELECT status FROM runs ORDER BY started_at") == [("succeeded",), ("succeeded",)]
    assert result.stages[-1].name == "exact_dedup"
