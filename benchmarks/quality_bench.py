"""Quality filtering on real text vs datatrove, per core: `python benchmarks/quality_bench.py [--mb 16]`.

In one run, on the *held-out* half of the real reference sets (built by
``benchmarks/quality_refs.py``; calibration saw only the other half):

1. keep rates of good legal/news text per language and length band (< 300, 300-3,000,
   > 3,000 characters) and junk removal per junk kind, for datatrove's Gopher quality + Gopher
   repetition + C4 + FineWeb filters (defaults, a document leaving at its first failing filter),
   corpusforge as it is at ``--baseline`` (main: today's rules, loaded from git), corpusforge
   with script defaults only, and with the calibrated per-language thresholds
   (``--thresholds configs/quality``);
2. throughput, CPU seconds of one core (Polars pinned to one thread): datatrove's filters, our
   signals + rules, and the quality step's language id before (lingua on every document, every
   candidate, high accuracy, 500 characters) and now (script first, lingua on what is left, low
   accuracy, 300 characters), with their agreement;
3. the reasons that removed good documents, so a regression shows which rule to look at.

datatrove is a benchmark-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # per-core numbers: must precede the polars import

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.steps.normalize import Normalize
from quality.language import LanguageIdentifier
from quality.rules import BAND_LABELS, band_expr, configure_rules, evaluate
from quality.signals import compute_signals
from quality.thresholds import load_dir

MB = 1e6
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """CPU and wall seconds of a block."""

    def __enter__(self) -> Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def load(refs: Path, split: str) -> pl.DataFrame:
    frames = []
    for name, label in (("zh_good", "good"), ("en_good", "good"), ("junk", "junk")):
        path = refs / f"{name}.{split}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; build the reference sets first: python benchmarks/quality_refs.py")
        frame = pl.read_ndjson(path, infer_schema_length=None).select(
            "id",
            "text",
            pl.col("lang").cast(pl.String),
            "kind",
            pl.col("source").cast(pl.String) if "source" in pl.read_ndjson(path, n_rows=1).columns else pl.lit(None),
            pl.lit(label).alias("label"),
        )
        frames.append(frame)
    return pl.concat(frames, how="vertical_relaxed")


def run_datatrove(texts: list[str]) -> tuple[Clock, list[bool]]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    for f in filters:  # warm-up: tokenizer loading
        f.filter(Document(text="Warm up the tokenizers. " * 20, id="w"))
    kept = []
    with Clock() as clock:
        for i, text in enumerate(texts):
            doc = Document(text=text, id=str(i))
            ok = True
            for f in filters:
                res = f.filter(doc)
                if res is not True and not (isinstance(res, tuple) and res[0]):
                    ok = False
                    break
            kept.append(ok)
    return clock, kept


def run_ours(texts: pl.Series, langs: pl.Series, rules: tuple) -> tuple[Clock, pl.DataFrame]:
    compute_signals(texts.head(50))  # warm-up (regex compilation, dictionary load)
    with Clock() as clock:
        sig = compute_signals(texts).with_columns(langs.alias("lang"))
        verdict = evaluate(sig, rules)
    return clock, verdict


def run_lid(texts: pl.Series, lid: LanguageIdentifier) -> tuple[Clock, pl.Series]:
    lid.identify(texts.head(20))  # warm-up: builds the detector(s) it needs
    with Clock() as clock:
        out = lid.identify(texts).get_column("lang")
    return clock, out


def load_baseline(ref: str) -> tuple[Any, Any]:
    """``quality.signals`` and ``quality.rules`` as they are at git ``ref`` (today's main), imported
    under another package name, so before and after run side by side on the same documents."""
    tmp = Path(tempfile.mkdtemp(prefix="quality-baseline-"))
    pkg = tmp / "quality_baseline"
    pkg.mkdir()
    for name in ("__init__", "patterns", "signals", "rules", "segment"):
        try:
            src = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{ref}:quality/{name}.py"], check=True, capture_output=True, text=True
            ).stdout
        except subprocess.CalledProcessError:
            continue  # a module that did not exist yet
        (pkg / f"{name}.py").write_text(src.replace("from quality", "from quality_baseline"), encoding="utf-8")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("quality_baseline.signals"), importlib.import_module("quality_baseline.rules")


def load_baseline_thresholds(ref: str, base_rules: Any) -> dict[str, dict[str, Any]]:
    """The per-language threshold files as they are at git ``ref``, as ``base_rules`` thresholds."""
    from quality.thresholds import parse

    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{ref}:configs/quality"], capture_output=True, text=True
    ).stdout.split()
    out: dict[str, dict[str, Any]] = {}
    for name in (n for n in names if n.endswith(".yaml")):
        where = f"{ref}:configs/quality/{name}"
        text = subprocess.run(["git", "-C", str(ROOT), "show", where], check=True, capture_output=True, text=True)
        lang, rules = parse(yaml.safe_load(text.stdout), where)
        new = base_rules.LangThresholds
        out[lang] = {k: new(lang, lt.short, lt.medium, lt.long, lt.good) for k, lt in rules.items()}
    return out


def band_table(df: pl.DataFrame, columns: list[str], split: str = "held-out") -> None:
    good = df.filter(pl.col("label") == "good").with_columns(band_expr(pl.col("text").str.len_chars()).alias("band"))
    print(f"{f'good text kept ({split})':<34}{'docs':>6}" + "".join(f"{c:>14}" for c in columns))
    for lang in sorted(good.get_column("lang").unique().to_list()):
        for band in ("short", "medium", "long", None):
            sub = good.filter(pl.col("lang") == lang)
            if band is not None:
                sub = sub.filter(pl.col("band") == band)
            if sub.height == 0:
                continue
            label = f"{lang} {BAND_LABELS[band]}" if band else f"{lang} all"
            print(f"{label:<34}{sub.height:>6}" + "".join(f"{sub[c].mean():>14.3f}" for c in columns))
    if "source" in good.columns and good.get_column("source").n_unique() > 1:
        print()
        print(f"{f'good text kept, by source ({split})':<34}{'docs':>6}" + "".join(f"{c:>14}" for c in columns))
        for (lang, source, band), sub in sorted(
            good.group_by("lang", "source", "band"),
            key=lambda kv: (kv[0][0], str(kv[0][1]), ["short", "medium", "long"].index(kv[0][2])),
        ):
            label = f"{lang} {source} {BAND_LABELS[band]}"
            print(f"{label:<34}{sub.height:>6}" + "".join(f"{sub[c].mean():>14.3f}" for c in columns))
    junk = df.filter(pl.col("label") == "junk")
    print()
    print(f"{f'junk removed ({split})':<34}{'docs':>6}" + "".join(f"{c:>14}" for c in columns))
    for kind in sorted(junk.get_column("kind").unique().to_list()):
        sub = junk.filter(pl.col("kind") == kind)
        print(f"{kind:<34}{sub.height:>6}" + "".join(f"{1 - sub[c].mean():>14.3f}" for c in columns))
    print(f"{'all junk':<34}{junk.height:>6}" + "".join(f"{1 - junk[c].mean():>14.3f}" for c in columns))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", type=Path, default=ROOT / "bench-data" / "quality", help="reference sets folder")
    p.add_argument("--thresholds", type=Path, default=ROOT / "configs" / "quality", help="calibrated thresholds")
    p.add_argument("--split", default="heldout", choices=["heldout", "calib"])
    p.add_argument("--skip-datatrove", action="store_true")
    p.add_argument("--mb", type=float, default=16.0, help="MB for the throughput runs (the held-out set repeated)")
    p.add_argument("--baseline", default="main", help="git ref whose quality rules run as 'before' ('' to skip)")
    p.add_argument(
        "--rates-only",
        action="store_true",
        help="keep/removal rates of the calibrated rules and script defaults only (no baseline, datatrove, throughput)",
    )
    args = p.parse_args(argv)
    if args.rates_only:
        return rates_only(args)

    df = load(args.refs, args.split)
    df = df.with_columns(Normalize().normalize(df.get_column("text")).alias("text"))  # as a build does first
    texts = df.get_column("text")
    mb = float(texts.str.len_bytes().sum()) / MB
    print(f"{args.split} references: {df.height} documents, {mb:.2f} MB; polars threads: {pl.thread_pool_size()}")

    # language as the step sees it: the file's label where it has one, else detected (new identifier)
    lid_new = LanguageIdentifier()
    lid_old = LanguageIdentifier(max_chars=500, lingua_chars=500, low_accuracy=False, use_script=False)
    new_clock, new_langs = run_lid(texts, lid_new)
    old_clock, old_langs = run_lid(texts, lid_old)
    langs = pl.select(pl.coalesce(df.get_column("lang"), new_langs)).to_series()

    _, default_verdict = run_ours(texts, langs, configure_rules())
    calibrated = configure_rules(calibrated=load_dir(args.thresholds))
    _, cal_verdict = run_ours(texts, langs, calibrated)
    # throughput: the same documents repeated to --mb (fixed costs per call, e.g. building the
    # dictionary matcher, then weigh as they do on a work shard)
    reps = max(1, round(args.mb / mb))
    big_texts, big_langs = pl.concat([texts] * reps), pl.concat([langs] * reps)
    big_mb = mb * reps
    cal_clock, _ = run_ours(big_texts, big_langs, calibrated)
    columns = ["ours_defaults", "ours_calibrated"]
    base_clock = None
    if args.baseline:
        base_signals, base_rules = load_baseline(args.baseline)
        base_verdict = base_rules.evaluate(base_signals.compute_signals(texts), base_rules.configure_rules())
        with Clock() as base_clock:
            base_rules.evaluate(base_signals.compute_signals(big_texts), base_rules.configure_rules())
        df = df.with_columns(base_verdict.get_column("reason").is_null().alias(args.baseline))
        columns.insert(0, args.baseline)
        base_cal = load_baseline_thresholds(args.baseline, base_rules)
        if base_cal:  # the baseline's own calibrated files: the figures before this change
            base_sig = base_signals.compute_signals(texts).with_columns(langs.alias("lang"))
            cal_verdict_base = base_rules.evaluate(base_sig, base_rules.configure_rules(calibrated=base_cal))
            name = f"{args.baseline}_calibrated"
            df = df.with_columns(cal_verdict_base.get_column("reason").is_null().alias(name))
            columns.insert(1, name)
    df = df.with_columns(
        default_verdict.get_column("reason").is_null().alias("ours_defaults"),
        cal_verdict.get_column("reason").is_null().alias("ours_calibrated"),
    )
    if not args.skip_datatrove:
        dt_clock, dt_kept = run_datatrove(texts.to_list())
        df = df.with_columns(pl.Series("datatrove", dt_kept))
        columns.insert(0, "datatrove")

    print()
    band_table(df, columns)

    print()
    print(f"throughput on {big_mb:.1f} MB (the held-out set x {reps}); language id and datatrove on {mb:.2f} MB")
    print(f"{'throughput, one core':<50}{'cpu s':>8}{'MB/s/core':>11}{'ratio':>7}{'wall s':>8}")
    rows = [("corpusforge signals + calibrated rules", cal_clock, None)]
    if base_clock is not None:
        rows.insert(0, (f"corpusforge signals + rules at {args.baseline}", base_clock, None))
    if not args.skip_datatrove:
        rows.insert(0, ("datatrove Gopher+GopherRep+C4+FineWeb", dt_clock, None))
        rows = [(n, c, dt_clock.cpu / mb) for n, c, _ in rows]
    rows += [
        ("language id before (lingua, every doc)", old_clock, None),
        ("language id now (script first, lingua low-acc.)", new_clock, old_clock.cpu / mb),
    ]
    if base_clock is not None:
        before = base_clock.cpu / big_mb + old_clock.cpu / mb
        now = cal_clock.cpu / big_mb + new_clock.cpu / mb
        rows += [
            (f"quality step at {args.baseline}: rules + lingua (per MB)", _per_mb(before), None),
            ("quality step now: rules + script/lingua (per MB)", _per_mb(now), before),
        ]
    sizes = {
        "corpusforge signals + calibrated rules": big_mb,
        f"corpusforge signals + rules at {args.baseline}": big_mb,
        f"quality step at {args.baseline}: rules + lingua (per MB)": 1.0,
        "quality step now: rules + script/lingua (per MB)": 1.0,
    }
    for name, c, base in rows:
        size = sizes.get(name, mb)
        per_mb = c.cpu / size
        ratio = f"{base / per_mb:>7.1f}" if base else f"{'':>7}"
        print(f"{name:<50}{c.cpu:>8.2f}{size / c.cpu:>11.2f}{ratio}{c.wall:>8.2f}")
    agree = pl.DataFrame({"old": old_langs, "new": new_langs})
    same = agree.filter(pl.col("old").eq_missing(pl.col("new"))).height
    by_script = lid_new.decide_by_script(lid_new.script_shares(texts)).get_column("needs_model")
    print(
        f"language id agreement with the old labels: {same}/{agree.height} = {same / agree.height:.4f}; "
        f"decided by script alone: {1 - by_script.mean():.3f} of documents"
    )
    diff = agree.with_columns(df.get_column("label")).filter(~pl.col("old").eq_missing(pl.col("new")))
    if diff.height:
        print(
            "  disagreements (old -> new, label: docs):",
            ", ".join(
                f"{o}->{n} ({lab}): {c}"
                for o, n, lab, c in diff.group_by("old", "new", "label")
                .len()
                .sort("len", descending=True)
                .head(8)
                .iter_rows()
            ),
        )

    removed = df.with_columns(cal_verdict.get_column("reason")).filter(
        (pl.col("label") == "good") & pl.col("reason").is_not_null()
    )
    if removed.height:
        print()
        print("good documents removed by the calibrated rules (reason: docs):")
        for reason, n in removed.group_by("reason").len().sort("len", descending=True).iter_rows():
            print(f"  {reason}: {n}")
    return 0


def rates_only(args: argparse.Namespace) -> int:
    """Keep rates per language, band and source and junk removal for ``--thresholds`` (and script
    defaults), with the rules (and values vs thresholds, summarised) that removed good documents."""
    df = load(args.refs, args.split)
    df = df.with_columns(Normalize().normalize(df.get_column("text")).alias("text"))
    texts = df.get_column("text")
    langs = pl.select(pl.coalesce(df.get_column("lang"), LanguageIdentifier().identify(texts).get_column("lang")))
    langs = langs.to_series()
    print(f"{args.split} references: {df.height} documents; thresholds {args.thresholds}")
    sig = compute_signals(texts).with_columns(langs.alias("lang"))
    cal = evaluate(sig, configure_rules(calibrated=load_dir(args.thresholds)))
    default = evaluate(sig, configure_rules())
    df = df.with_columns(
        default.get_column("reason").is_null().alias("ours_defaults"),
        cal.get_column("reason").is_null().alias("ours_calibrated"),
        cal.get_column("reason"),
    )
    band_table(df, ["ours_defaults", "ours_calibrated"], "held-out" if args.split == "heldout" else "tune half")
    removed = df.filter((pl.col("label") == "good") & pl.col("reason").is_not_null()).with_columns(
        band_expr(pl.col("text").str.len_chars()).alias("band")
    )
    if removed.height:
        print()
        print("good documents removed by the calibrated rules (lang, band, source, reason: docs):")
        for lang, band, source, reason, n in (
            removed.group_by("lang", "band", "source", "reason").len().sort("len", descending=True).iter_rows()
        ):
            print(f"  {lang} {BAND_LABELS[band]} {source} {reason}: {n}")
    return 0


def _per_mb(cpu_per_mb: float) -> Clock:
    """A clock standing for one MB of the step, so the table prints its MB/s."""
    c = Clock()
    c.cpu, c.wall = cpu_per_mb, float("nan")
    return c


if __name__ == "__main__":
    sys.exit(main())
