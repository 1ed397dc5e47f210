"""Quality signals vs datatrove, per core: `python benchmarks/quality_bench.py [--mb 4] [--ppl-docs 16]`.

In one run, on the same documents (the sample generator's English + Chinese legal text with its
junk, boilerplate, PII and duplicates, several seeds, plus the labelled fixtures):

1. corpusforge heuristic signals + rules (`quality.signals`, `quality.rules`) with Polars pinned
   to one thread (POLARS_MAX_THREADS=1, set before Polars is imported) -> MB/s per core;
2. datatrove's GopherQualityFilter -> GopherRepetitionFilter -> C4QualityFilter ->
   FineWebQualityFilter, default parameters, one process, a document leaving at its first failing
   filter (as in a datatrove pipeline) -> MB/s per core;
3. keep rates per document kind for both, so speed is read next to what each keeps;
4. lingua language identification MB/s and perplexity tokens/s under SmolLM2-135M on this device.

Times are CPU seconds of this process (``time.process_time``): with one Polars thread and one
datatrove process that is the per-core cost, and it is not inflated when other jobs share the
machine. Wall seconds are printed next to them.

datatrove is a benchmark-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # per-core numbers: must precede the polars import

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.sample import SampleGenerator
from quality.rules import configure_rules, evaluate
from quality.signals import compute_signals

MB = 1e6
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "quality_fixtures.jsonl"


def corpus(target_mb: float) -> pl.DataFrame:
    """Sample-generator documents (several seeds) + labelled fixtures, with a coarse kind label."""
    rows, total, seed = [], 0.0, 0
    while total < target_mb:
        for doc in SampleGenerator(seed).generate():
            if not doc["text"].strip():
                continue  # ingest drops empty texts before any step sees them
            kind = doc["meta"]["kind"]
            rows.append({"text": doc["text"], "kind": kind, "lang": doc["lang"] or "?"})
            total += len(doc["text"].encode()) / MB
        seed += 1
    for fx in map(json.loads, FIXTURES.read_text(encoding="utf-8").splitlines()):
        rows.append({"text": fx["text"], "kind": f"fixture_{fx['label']}", "lang": fx["lang"]})
    return pl.DataFrame(rows)


def group(kind: str, lang: str) -> str:
    if kind in ("legal", "fixture_good"):
        return f"good legal/news ({lang})"
    if kind.startswith("junk") or kind == "fixture_junk":
        return "junk (nav/seo/lorem/code)"
    return "other (dups, pii, boilerplate, mojibake, short)"


class Clock:
    """CPU and wall seconds of a block."""

    def __enter__(self) -> Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def run_ours(texts: pl.Series) -> tuple[Clock, list[bool]]:
    rules = configure_rules()
    compute_signals(texts.head(50))  # warm-up (regex compilation)
    with Clock() as clock:
        verdict = evaluate(compute_signals(texts), rules)
    return clock, verdict.get_column("reason").is_null().to_list()


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


def run_language(texts: pl.Series) -> Clock:
    from quality.language import LanguageIdentifier

    lid = LanguageIdentifier(max_chars=500)
    lid.identify(texts.head(20))
    with Clock() as clock:
        lid.identify(texts)
    return clock


def run_perplexity(texts: list[str], max_tokens: int) -> tuple[Clock, int, str]:
    from quality.perplexity import PerplexityConfig, PerplexityScorer

    scorer = PerplexityScorer(PerplexityConfig(max_tokens=max_tokens, window=512, stride=384))
    scorer.score(texts[:2])
    with Clock() as clock:
        _, counts = scorer.score(texts)
    return clock, sum(counts), str(scorer.device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=4.0, help="MB of text to score (default 4)")
    p.add_argument("--ppl-docs", type=int, default=16, help="documents for the perplexity run (0: skip)")
    p.add_argument("--ppl-tokens", type=int, default=256, help="tokens scored per document")
    args = p.parse_args(argv)

    df = corpus(args.mb)
    texts = df.get_column("text")
    mb = float(texts.str.len_bytes().sum()) / MB
    print(f"corpus: {df.height} documents, {mb:.2f} MB of text; polars threads: {pl.thread_pool_size()}")

    ours, ours_kept = run_ours(texts)
    dt, dt_kept = run_datatrove(texts.to_list())
    lid = run_language(texts)
    print()
    print(f"{'heuristic filters, one core':<42}{'cpu s':>8}{'MB/s/core':>11}{'ratio':>7}{'wall s':>8}")
    rows = [
        ("datatrove Gopher+GopherRep+C4+FineWeb", dt, dt.cpu),
        ("corpusforge signals + rules (Polars)", ours, dt.cpu),
        ("(lingua language id, 500 chars/doc)", lid, None),
    ]
    for name, c, base in rows:
        ratio = f"{base / c.cpu:>7.1f}" if base else f"{'':>7}"
        print(f"{name:<42}{c.cpu:>8.2f}{mb / c.cpu:>11.2f}{ratio}{c.wall:>8.2f}")

    kept = df.with_columns(
        pl.struct("kind", "lang")
        .map_elements(lambda r: group(r["kind"], r["lang"]), return_dtype=pl.String)
        .alias("group"),
        pl.Series("ours", ours_kept),
        pl.Series("datatrove", dt_kept),
    )
    table = kept.group_by("group").agg(pl.len().alias("docs"), pl.col("datatrove").sum(), pl.col("ours").sum())
    print()
    print(f"{'documents kept':<50}{'docs':>6}{'datatrove':>11}{'ours':>7}")
    for g, n, d, o in table.sort("group").iter_rows():
        print(f"{g:<50}{n:>6}{d:>11}{o:>7}")

    if args.ppl_docs:
        good = df.filter(pl.col("kind") == "legal").get_column("text").head(args.ppl_docs).to_list()
        c, tokens, device = run_perplexity(good, args.ppl_tokens)
        threads = __import__("torch").get_num_threads()
        print()
        print(
            f"perplexity (SmolLM2-135M, {device}, {len(good)} docs x <= {args.ppl_tokens} tokens, "
            f"{threads} torch threads): {tokens} tokens, wall {c.wall:.2f} s = {tokens / c.wall:.0f} tokens/s, "
            f"cpu {c.cpu:.2f} s = {tokens / c.cpu:.0f} tokens/cpu-s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
