"""Corpus roots on object storage, against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from corpus.remote import RemoteRoot, open_remote_catalog
from tests.conftest import SAMPLE, query, run_cli, write_config

BUCKET = "corpus-bucket"
STEPS = ["normalize", "exact_dedup", {"split": {"validation_ratio": 0.2}}]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fsspec.AbstractFileSystem:
    for k, v in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CORPUSFORGE_MIRRORS": str(tmp_path / "mirrors"),
    }.items():
        monkeypatch.setenv(k, v)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return fs


def _small_input(tmp_path: Path) -> Path:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:120]
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_build_on_s3_equals_local_build_and_is_queryable_in_place(s3, tmp_path: Path) -> None:
    src = _small_input(tmp_path)
    local_root = tmp_path / "local"
    cfg = write_config(tmp_path / "local.yaml", local_root, [src], STEPS)
    assert run_cli("-m", "pipelines.build", "--config", str(cfg), "--quiet").returncode == 0
    want = query(local_root, "SELECT path, rows, checksum FROM shards WHERE stage = 'final' ORDER BY path")

    uri = f"s3://{BUCKET}/legal"
    built = run_cli("-m", "pipelines.build", "--config", str(cfg), "--root", uri, "--quiet", "--report")
    assert built.returncode == 0, built.stderr
    objects = {p.split("/legal/", 1)[1] for p in s3.find(f"{BUCKET}/legal")}
    assert "catalog.duckdb" in objects and "report.html" in objects
    assert not any(o.startswith(("work/", ".")) or "/." in o for o in objects)  # scratch stays local
    assert {p for p, _, _ in want} <= objects

    conn = open_remote_catalog(uri)
    got = conn.execute("SELECT path, rows, checksum FROM shards WHERE stage = 'final' ORDER BY path").fetchall()
    assert got == want  # byte-identical final shards
    n_local = query(local_root, "SELECT count(*), sum(length(text)) FROM documents")
    assert conn.execute("SELECT count(*), sum(length(text)) FROM documents").fetchall() == n_local
    files = conn.execute("SELECT DISTINCT filename FROM read_parquet(?)", [[f"{uri}/{p}" for p, _, _ in want]])
    assert all(f.startswith("s3://") for (f,) in files.fetchall())  # read from the store, not a mirror

    cli = run_cli("-m", "corpus.remote", "sql", uri, "SELECT split, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[0] == "split\tn" and len(cli.stdout.splitlines()) == 3


def test_another_machine_resumes_from_the_store(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _small_input(tmp_path)
    uri = f"s3://{BUCKET}/shared"
    cfg = write_config(tmp_path / "b.yaml", tmp_path / "unused", [src], STEPS)
    assert run_cli("-m", "pipelines.build", "--config", str(cfg), "--root", uri, "--quiet", "--report").returncode == 0
    first = open_remote_catalog(uri).execute("SELECT path, checksum FROM shards ORDER BY path").fetchall()

    # a second machine: empty mirror; the raw import is found in the store (same checksum), the
    # build recomputes its scratch and publishes the same bytes; nothing changed needs uploading
    monkeypatch.setenv("CORPUSFORGE_MIRRORS", str(tmp_path / "machine2"))
    again = run_cli("-m", "pipelines.build", "--config", str(cfg), "--root", uri)
    assert again.returncode == 0, again.stderr
    assert open_remote_catalog(uri).execute("SELECT path, checksum FROM shards ORDER BY path").fetchall() == first
    pulled = next(line for line in again.stderr.splitlines() if line.startswith("pulled"))
    assert "0 deleted" in pulled and " 0 files copied" not in pulled
    runs = open_remote_catalog(uri).execute("SELECT count(*) FROM runs WHERE kind = 'build'").fetchone()
    assert runs == (2,)  # the run history travelled with the catalog

    # a file deleted in the mirror is deleted in the store on push; pull brings it back elsewhere
    mirror = RemoteRoot(uri).mirror
    report = mirror / "report.html"
    report.unlink()
    assert RemoteRoot(uri).push(progress=False).deleted == 1
    assert not s3.exists(f"{BUCKET}/shared/report.html")
    manifest = json.loads((mirror / ".remote-manifest.json").read_text())
    assert "report.html" not in manifest and "catalog.duckdb" in manifest
