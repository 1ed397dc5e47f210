"""Corpus roots on object storage: ``s3://bucket/prefix`` (or any fsspec URL).

The object store is the system of record; a job works on a local mirror of it. Before a job
the mirror is brought level with the store (`RemoteRoot.pull`), the job runs unchanged on local
disk (atomic renames, the DuckDB catalog file and ``work/`` need a POSIX filesystem, which S3
is not), and afterwards the changes go back (`RemoteRoot.push`): data files first, then
``catalog.duckdb``, then deletions, so a reader of the store never sees a catalog that names a
missing shard. ``work/`` (scratch, resumable) and hidden temporaries stay local.

Only changed files travel: a manifest in the mirror remembers, per file, the local size and
mtime and the remote identity (ETag, else mtime) at the last sync.

Reading a remote corpus needs no mirror at all: `open_remote_catalog` downloads the catalog
file and points its views at the shards in the store, read by DuckDB through the fsspec
filesystem registered on the connection (DuckDB's own httpfs extension cannot be installed
offline). Credentials and endpoint come from the usual environment: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for S3-compatible stores (MinIO, Ceph, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import fsspec
from tqdm import tqdm

MANIFEST = ".remote-manifest.json"
LAST = ("catalog.duckdb", "report.html")  # pushed after the data they describe
LOCAL_ONLY = ("work",)


def is_remote(root: str | os.PathLike[str]) -> bool:
    return isinstance(root, str) and re.match(r"^[a-z][a-z0-9+.-]*://", root) is not None


def default_mirror(uri: str) -> Path:
    """``$CORPUSFORGE_MIRRORS`` (default ``~/.cache/corpusforge/roots``)/<name>-<hash of the URI>."""
    base = Path(os.environ.get("CORPUSFORGE_MIRRORS") or Path.home() / ".cache" / "corpusforge" / "roots")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", uri.split("://", 1)[1]).strip("_")[-60:]
    return base / f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def _synced(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] not in LOCAL_ONLY and not any(p.startswith(".") or p.endswith(".tmp") for p in parts)


@dataclass
class SyncStats:
    copied: int = 0
    deleted: int = 0
    bytes: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        mb = self.bytes / 1e6
        return f"{self.copied} files copied ({mb:.1f} MB), {self.deleted} deleted, {self.unchanged} unchanged"


class RemoteRoot:
    def __init__(self, uri: str, mirror: Path | None = None) -> None:
        if not is_remote(uri):
            raise ValueError(f"{uri!r} is not a URL (expected e.g. s3://bucket/prefix)")
        self.uri = uri.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.uri)
        self.base = self.base.rstrip("/")
        self.mirror = mirror or default_mirror(self.uri)
        self._manifest_path = self.mirror / MANIFEST

    # -- listing ----------------------------------------------------------------------------
    def _remote_files(self) -> dict[str, dict[str, Any]]:
        self.fs.invalidate_cache()  # s3fs caches listings; another machine may have pushed since
        if not self.fs.exists(self.base):
            return {}
        found = self.fs.find(self.base, detail=True)
        out = {}
        for path, info in found.items():
            rel = path[len(self.base) :].lstrip("/") if path.startswith(self.base) else None
            if rel and info.get("type", "file") == "file" and _synced(rel):
                out[rel] = info
        return out

    def _local_files(self) -> dict[str, os.stat_result]:
        out = {}
        if not self.mirror.exists():
            return out
        for path in self.mirror.rglob("*"):
            rel = path.relative_to(self.mirror).as_posix()
            if path.is_file() and _synced(rel):
                out[rel] = path.stat()
        return out

    @staticmethod
    def _identity(info: dict[str, Any]) -> str:
        tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
        return f"{info.get('size')}:{tag}"

    def _load_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self._manifest_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _save_manifest(self, manifest: dict[str, dict[str, Any]]) -> None:
        self.mirror.mkdir(parents=True, exist_ok=True)
        tmp = self._manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, sort_keys=True))
        os.replace(tmp, self._manifest_path)

    @staticmethod
    def _local_id(st: os.stat_result) -> str:
        return f"{st.st_size}:{st.st_mtime_ns}"

    def _url(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    # -- sync -------------------------------------------------------------------------------
    def pull(self, progress: bool = True) -> SyncStats:
        """Make the mirror equal to the store (``work/`` kept): download new or changed files,
        delete mirror files the store no longer has."""
        stats = SyncStats()
        manifest = self._load_manifest()
        remote = self._remote_files()
        local = self._local_files()
        todo = []
        for rel, info in remote.items():
            entry = manifest.get(rel)
            st = local.get(rel)
            if entry and st and entry["remote"] == self._identity(info) and entry["local"] == self._local_id(st):
                stats.unchanged += 1
            else:
                todo.append(rel)
        for rel in tqdm(todo, desc=f"pull {self.uri}", unit="file", disable=not progress or not todo):
            dest = self.mirror / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            self.fs.get_file(self._url(rel), str(tmp))
            os.replace(tmp, dest)
            manifest[rel] = {"remote": self._identity(remote[rel]), "local": self._local_id(dest.stat())}
            stats.copied += 1
            stats.bytes += dest.stat().st_size
        for rel in sorted(set(local) - set(remote)):
            (self.mirror / rel).unlink()
            manifest.pop(rel, None)
            stats.deleted += 1
        for rel in list(manifest):
            if rel not in remote:
                manifest.pop(rel)
        self._save_manifest(manifest)
        return stats

    def push(self, progress: bool = True) -> SyncStats:
        """Make the store equal to the mirror: changed data files, then the catalog, then deletions."""
        stats = SyncStats()
        manifest = self._load_manifest()
        local = self._local_files()
        remote = self._remote_files()
        changed = []
        for rel, st in local.items():
            entry = manifest.get(rel)
            info = remote.get(rel)
            if entry and info and entry["local"] == self._local_id(st) and entry["remote"] == self._identity(info):
                stats.unchanged += 1
            else:
                changed.append(rel)
        changed.sort(key=lambda r: (r in LAST, r))
        for rel in tqdm(changed, desc=f"push {self.uri}", unit="file", disable=not progress or not changed):
            self.fs.put_file(str(self.mirror / rel), self._url(rel))
            info = self.fs.info(self._url(rel))
            manifest[rel] = {"remote": self._identity(info), "local": self._local_id((self.mirror / rel).stat())}
            stats.copied += 1
            stats.bytes += local[rel].st_size
        for rel in sorted(set(remote) - set(local)):
            self.fs.rm_file(self._url(rel))
            manifest.pop(rel, None)
            stats.deleted += 1
        self._save_manifest(manifest)
        return stats


@contextmanager
def mirrored(root: str, *, mirror: Path | None = None, push: bool = True, progress: bool = True) -> Iterator[Path]:
    """``with mirrored("s3://b/p") as local:`` run a job on ``local``; pushed back on success."""
    remote = RemoteRoot(root, mirror)
    stats = remote.pull(progress)
    if progress:
        print(f"pulled {remote.uri} -> {remote.mirror}: {stats}", flush=True)
    yield remote.mirror
    if push:
        stats = remote.push(progress)
        if progress:
            print(f"pushed {remote.mirror} -> {remote.uri}: {stats}", flush=True)


def open_remote_catalog(uri: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on a copy of the store's catalog whose ``documents``, ``raw_documents``
    and ``rejects`` views read the shards in the store (through fsspec), not a mirror."""
    from corpus.catalog import Catalog
    from corpus.store import CorpusLayout

    remote = RemoteRoot(uri)
    tmp = Path(tempfile.mkdtemp(prefix="corpusforge-catalog-"))
    try:
        remote.fs.get_file(remote._url("catalog.duckdb"), str(tmp / "catalog.duckdb"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no catalog.duckdb (is this a corpus root?)") from None
    conn = duckdb.connect(str(tmp / "catalog.duckdb"))
    conn.register_filesystem(remote.fs)
    protocol = remote.fs.protocol if isinstance(remote.fs.protocol, str) else remote.fs.protocol[0]
    Catalog(conn, CorpusLayout.at(tmp), shard_base=f"{protocol}://{remote.base}").refresh_views()
    return conn


def open_catalog(root: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the catalog of a local root, or `open_remote_catalog` for a URL."""
    if is_remote(root):
        return open_remote_catalog(root)
    path = Path(root) / "catalog.duckdb"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no catalog (build the corpus first: python -m pipelines.build)")
    return duckdb.connect(str(path), read_only=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m corpus.remote pull|push URL`` or ``python -m corpus.remote sql ROOT "SELECT ..."``
    (ROOT a local corpus root or a URL)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m corpus.remote", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["pull", "push", "sql"])
    p.add_argument("url", help="corpus root URL, e.g. s3://bucket/prefix (for sql also a local root, e.g. data)")
    p.add_argument("query", nargs="?", help="SQL for 'sql' (views documents, raw_documents, rejects; all tables)")
    args = p.parse_args(argv)
    if args.action == "sql":
        if not args.query:
            p.error("sql needs a query")
        try:
            conn = open_catalog(args.url)
            cur = conn.execute(args.query)
        except (FileNotFoundError, duckdb.Error) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
        print("\t".join(d[0] for d in cur.description))
        for row in cur.fetchall():
            print("\t".join("" if v is None else str(v) for v in row))
        return 0
    if not is_remote(args.url):
        print(
            f"error: {args.action} needs a URL (e.g. s3://bucket/prefix); {args.url!r} is a local path", file=sys.stderr
        )
        return 2
    remote = RemoteRoot(args.url)
    stats = remote.pull() if args.action == "pull" else remote.push()
    print(f"{args.action} {remote.uri} <-> {remote.mirror}: {stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
