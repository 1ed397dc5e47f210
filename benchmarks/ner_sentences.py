"""How many sentences the NER models tag in a build with N workers: per-process caches vs once per build.

    python benchmarks/ner_sentences.py [--mb 40] [--pieces 18]

spaCy's and LAC's tags depend on the sentence alone, so each process caches them; with N
workers, each worker tags the distinct candidate sentences of the pieces it gets, and a sentence
that recurs across pieces given to different workers (court boilerplate, templates) is tagged
by each of them. `pii_redact` now tags each distinct sentence once per build
(`pipelines/pii/sentence_tags.py`). This counts, on `benchmarks/build.py`'s mixed zh/en corpus
cut in ``--pieces`` row ranges (the 40 MB build's process tasks) dealt round-robin, the
sentences a build of N workers would tag either way: counts, not timings, so they hold on any
machine.
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

from pipelines.pii.sentence_tags import ner_sentences


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
    pieces = [set(ner_sentences(texts[a:b], langs[a:b]).iter_rows()) for a, b in pairwise(bounds)]
    once = len(set().union(*pieces))
    print(f"{mb:.1f} MB, {len(rows)} documents, {args.pieces} pieces: {once} distinct NER candidate sentences")
    print(f"{'workers':>7}  {'per-process caches':>18}  {'once per build':>14}")
    for n in (1, 2, 4, 8, 16):
        tagged = sum(len(set().union(*pieces[w::n])) for w in range(n))
        print(f"{n:>7}  {tagged:>10} ({tagged / once:.2f}x)  {once:>14}")


if __name__ == "__main__":
    main()
