"""`python -m pipelines.build`: run the configured corpus build.

Exit status 0 on success, 1 on a failed build (the error is printed and recorded in the
catalog's `runs` table), 2 on a bad command line or config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.config import ConfigError
from corpus.remote import RemoteRoot
from pipelines.config import SourceSpec, load_config
from pipelines.runner import run_build
from pipelines.summary import format_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.build", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="YAML build config (default: configs/default.yaml)")
    p.add_argument(
        "--input",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="extra input files (.jsonl, .jsonl.gz, .parquet) with at least a 'text' field",
    )
    p.add_argument("--root", help="corpus root: a directory or s3://bucket/prefix (default from config, else ./data)")
    p.add_argument("--workers", type=int, help="worker processes (default from config)")
    p.add_argument("--executor", choices=["local", "ray"], help="where shard tasks run (default: local)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: start a local one with --workers CPUs)")
    p.add_argument("--force", action="store_true", help="recompute every step instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--report",
        action="store_true",
        help="also write <root>/report.html (a few CPU-seconds; else run python -m corpus.report when wanted)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.root:
        cfg.set_root(args.root)
    if args.workers:
        cfg.workers = args.workers
    if args.executor:
        cfg.executor = args.executor
    if args.ray_address:
        cfg.ray_address = args.ray_address
    cfg.sources.extend(SourceSpec(p) for p in args.input)
    command = " ".join(["python -m pipelines.build", *(argv if argv is not None else sys.argv[1:])])
    if cfg.root_uri:
        try:
            remote = RemoteRoot(cfg.root_uri, cfg.root)
            print(f"pulled {remote.uri} -> {remote.mirror}: {remote.pull(not args.quiet)}", file=sys.stderr)
        except Exception as exc:  # credentials, endpoint, bucket: nothing was built
            print(f"error: cannot read {cfg.root_uri}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    try:
        result = run_build(cfg, command=command, force=args.force, progress=not args.quiet)
    except Exception as exc:  # recorded in the catalog by run_build; shown here without a traceback
        print(f"error: build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(format_summary([s.stats for s in result.stages]))
    print(
        f"\nrun {result.run_id}: {result.docs_in} documents in, {result.docs_out} in final shards, "
        f"{result.docs_rejected} rejected (see the 'rejects' view)"
    )
    if args.report:  # on demand: plotting costs seconds whatever the corpus size, and imports matplotlib
        from corpus.report import ReportError, write_report

        try:
            print(f"report: {write_report(cfg.root)}")
        except (ReportError, OSError) as exc:  # the corpus is built; only the report is missing
            print(f"warning: could not write the report: {exc}", file=sys.stderr)
    else:
        later = "" if cfg.root_uri else f"python -m corpus.report --root {cfg.root}, or "
        print(f"report: {later}pass --report to write it with the build")
    if cfg.root_uri:
        try:
            print(f"pushed {remote.mirror} -> {remote.uri}: {remote.push(not args.quiet)}", file=sys.stderr)
        except Exception as exc:  # the build is complete in the mirror; pushing again is enough
            print(f"error: build done in {cfg.root} but not pushed to {cfg.root_uri}: {exc}", file=sys.stderr)
            print(f"  retry with: python -m corpus.remote push {cfg.root_uri}", file=sys.stderr)
            return 1
        print(f"catalog: {cfg.root_uri}/catalog.duckdb (query: python -m corpus.remote sql {cfg.root_uri} 'SQL')")
    else:
        print(f"catalog: {cfg.root / 'catalog.duckdb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
