"""Do two source trees build the same corpus? Checksums of the final documents and the rejects.

A refactor of the build must not change what it produces: this runs ``python -m pipelines.build``
from each tree (its own packages first on ``sys.path``) with one config, the same sources and a
fresh temporary root each, then compares, through DuckDB over the Parquet written:

- ``documents``: md5 over the final shards' rows ordered by doc_id, each row md5(doc_id, bucket,
  split, text, meta) (bucket and split come from the Hive layout);
- ``all columns``: the same with every column of the row (to_json of the row);
- ``rejects``: md5 over the rejects' (step, doc_id, reason, dup_of, detail, text) rows ordered by
  step and doc_id.

A tree is any checkout, e.g. ``git worktree add --detach /tmp/eq-<sha> <sha>``::

    python benchmarks/build_equivalence.py --before /tmp/eq-<sha>^ --after /tmp/eq-<sha> \\
        [--config configs/default.yaml] [--work /tmp/eq-work]

The config is read from ``--config`` (default: the after tree's configs/default.yaml); its root is
replaced, and its sources are resolved against the after tree, so both sides read the same files
(a crawl under the default root is not part of it). Exit status 1 when any checksum differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

DOCS = """
SELECT count(*), md5(string_agg(h, '' ORDER BY doc_id)) FROM (
  SELECT doc_id, md5(concat_ws(chr(31), doc_id, bucket, split, text, coalesce(meta, ''))) AS h
  FROM read_parquet('{glob}', hive_partitioning = true))
"""
ALL_COLUMNS = """
SELECT md5(string_agg(h, '' ORDER BY doc_id)) FROM (
  SELECT doc_id, md5(CAST(to_json(t) AS VARCHAR)) AS h FROM read_parquet('{glob}', hive_partitioning = true) t)
"""
REJECTS = """
SELECT count(*), md5(string_agg(h, '' ORDER BY step, doc_id)) FROM (
  SELECT step, doc_id, md5(concat_ws(chr(31), step, doc_id, reason, coalesce(dup_of, ''),
                                     coalesce(detail, ''), coalesce(text, ''))) AS h
  FROM read_parquet('{glob}', union_by_name = true))
"""


def config_for(config: Path, tree: Path, root: Path) -> str:
    """The config with its root replaced and relative source paths made absolute (against ``tree``)."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["root"] = str(root)
    for src in cfg.get("sources") or []:
        if isinstance(src, dict) and "path" in src and not Path(src["path"]).is_absolute():
            src["path"] = str(tree / src["path"])
    return yaml.safe_dump(cfg, sort_keys=False)


def build(tree: Path, config_text: str, root: Path) -> float:
    """Run the build from ``tree`` into ``root``; seconds of wall time."""
    root.mkdir(parents=True)
    config = root.parent / f"{root.name}.yaml"
    config.write_text(config_text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    python = tree / ".venv" / "bin" / "python"
    started = time.perf_counter()
    done = subprocess.run(
        [str(python if python.exists() else sys.executable), "-m", "pipelines.build", "--config", str(config),
         "--quiet"],
        cwd=tree, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"error: the build from {tree} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def checksums(root: Path) -> dict[str, str]:
    """The three checksums of one built root (see the module docstring)."""
    con = duckdb.connect()
    shards = f"{root}/shards/**/*.parquet"
    n, docs = con.execute(DOCS.format(glob=shards)).fetchone()
    (every,) = con.execute(ALL_COLUMNS.format(glob=shards)).fetchone()
    rejected = list((root / "rejects").rglob("*.parquet"))
    nr, rej = con.execute(REJECTS.format(glob=f"{root}/rejects/**/*.parquet")).fetchone() if rejected else (0, "-")
    return {"documents": f"{n} rows {docs}", "all columns": every, "rejects": f"{nr} rows {rej}"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="source tree of the parent commit")
    p.add_argument("--after", type=Path, required=True, help="source tree of the commit")
    p.add_argument("--config", type=Path, help="build config (default: AFTER/configs/default.yaml)")
    p.add_argument("--work", type=Path, help="where the two roots go (default: a temporary directory)")
    args = p.parse_args()
    before, after = args.before.resolve(), args.after.resolve()
    config = args.config or after / "configs" / "default.yaml"
    text = config_for(config, after, Path("ROOT"))
    work = args.work or Path(tempfile.mkdtemp(prefix="build-eq-"))
    results = {}
    for name, tree in (("before", before), ("after", after)):
        root = work / name
        secs = build(tree, text.replace("root: ROOT", f"root: {root}"), root)
        results[name] = checksums(root)
        print(f"{name:<7} {tree}  built in {secs:.0f} s", flush=True)
    same = True
    for key in results["before"]:
        b, a = results["before"][key], results["after"][key]
        same &= a == b
        print(f"{key:<12} {'identical' if a == b else 'DIFFERENT'}  before {b}  after {a}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
