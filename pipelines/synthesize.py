"""`python -m pipelines.synthesize`: generate Q&A, instruction and summary rows from corpus documents.

Exit status 0 on success, 1 on a failed job (recorded in the catalog's `runs` table; rerunning
resumes from the response cache), 2 on a bad command line or config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.config import ConfigError
from corpus.remote import is_remote, mirrored
from pipelines.synth.client import SynthError
from pipelines.synth.config import load_config
from pipelines.synth.job import format_result, run_job

DEFAULT_CONFIG = Path("configs/synth.yaml")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.synthesize", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML job config (default: %(default)s)")
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config key, e.g. --set seeds.sample=10 --set endpoint.base_url=http://host:8000/v1",
    )
    p.add_argument("--root", help="corpus root (default from config)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"root={args.root}"] if args.root else [])
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = " ".join(["python -m pipelines.synthesize", *(argv if argv is not None else sys.argv[1:])])
    try:
        if is_remote(cfg.root):
            with mirrored(cfg.root, progress=not args.quiet) as local:
                cfg.root = str(local)
                result = run_job(cfg, command=command, progress=not args.quiet)
        else:
            result = run_job(cfg, command=command, progress=not args.quiet)
    except (SynthError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished requests are cached)", file=sys.stderr)
        return 1
    print(format_result(result, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
