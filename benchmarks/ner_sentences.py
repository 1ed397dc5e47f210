"""How many sentences the NER models tag in a build with N workers: per-process caches vs once per build.

    python benchmarks/ner_sentences.py [--mb 40] [--pieces 18]

spaCy's and LAC's tags depend on the sentence alone, so each process caches them; with N
workers, each worker tags the distinct candidate sentences of the pieces it gets, and a sentence
that recurs across pieces given to different workers (court boilerplate, templates) is tagged
by each of them. This counts, on `benchmarks/build.py`'s mixed zh/en corpus cut in ``--pieces``
row ranges (the 40 MB build's `pii_redact` tasks) dealt round-robin, the sentences a build of N
workers tags, against the distinct ones (what a build tagging each sentence once would tag):
counts, not timings, so they hold on any machine (docs/SCALING.md: a once-per-build version was
built and measured in the twelfth session, and not kept).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build import generate

from pipelines.pii.engine import candidate_spans
from pipelines.pii.zh import candidate_pieces


def ner_sentences(texts: list[str], langs: list[str | None]) -> set[tuple[str, str]]:
    """The distinct (lang, sentence) pairs the NER models look up for ``texts`` (the keys of the
    spaCy and LAC sentence caches)."""
    en = [t for t, lang in zip(texts, langs, strict=True) if lang == "en"]
    zh = [t for t, lang in zip(texts, langs, strict=True) if lang == "zh"]
    out = {("en", t[s:e]) for t, spans in zip(en, candidate_spans(en), strict=True) for s, e in spans}
    return out | {("zh", zh[i][s:e]) for i, s, e in candidate_pieces(zh)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=40.0)
    p.add_argument("--pieces", type=int, default=18)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files, mb = generate(Path(tmp), args.mb)
        rows = [r for f in files for r in pq.read_table(f, columns=["text", "lang"]).to_pylist()]
    texts = [r["text"] for r in rows]
    langs = [r["lang"] if r["lang"] in ("en", "zh") else None for r in rows]
    bounds = [len(rows) * k // args.pieces for k in range(args.pieces + 1)]
    pieces = [ner_sentences(texts[a:b], langs[a:b]) for a, b in pairwise(bounds)]
    once = len(set().union(*pieces))
    print(f"{mb:.1f} MB, {len(rows)} documents, {args.pieces} pieces: {once} distinct NER candidate sentences")
    print(f"{'workers':>7}  {'tagged (per-process caches)':>27}  {'distinct':>8}")
    for n in (1, 2, 4, 8, 16):
        tagged = sum(len(set().union(*pieces[w::n])) for w in range(n))
        print(f"{n:>7}  {tagged:>19} ({tagged / once:.2f}x)  {once:>8}")


if __name__ == "__main__":
    main()
