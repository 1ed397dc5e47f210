"""Accuracy of minhash_dedup on generated pairs with known true Jaccard (English and Chinese).

    PYTHONPATH=. python benchmarks/dedup_accuracy.py [--pairs 1500] [--threshold 0.8]

Every pair is a base document and an edited copy (sentences inserted/deleted/reordered,
boilerplate header/footer, whitespace/punctuation/case noise). The true Jaccard is computed
exactly on the pair's shingle sets. All documents go through the same functions the step runs
(shingle -> signature -> bands -> per-band candidate edges -> verification -> components); a
pair counts as detected when both documents land in one cluster.

A second table measures Traditional/Simplified copies (``--script-pairs``): real mainland court
text (``../shared/data/zh_legal_dev.jsonl``, case facts and judgment passages) against its Hong
Kong, Taiwan and Taiwan-with-phrases renderings by OpenCC (s2hk, s2tw, s2twp), plus a light edit;
recall with the text shingled as it is and with the step's ``chinese_script: simplified``
(`pipelines.chinese_script.to_script`), and the cross-pair merges (unrelated texts put together).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.dedup import lsh
from pipelines.dedup.gen import Vocabulary, document, edit, join
from pipelines.dedup.minhash import band_hashes, jaccard_estimate, optimal_bands, signatures
from pipelines.dedup.shingle import shingle_texts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_pairs(n: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = random.Random(seed)
    vocab = Vocabulary.english(rng)
    texts, langs, lang_of_pair = [], [], []
    for i in range(n):
        lang = "en" if i % 2 == 0 else "zh"
        sentences = document(rng, lang, vocab)
        strength = rng.choice((0.0, 0.02, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6))
        texts += [join(sentences, lang), edit(rng, sentences, lang, vocab, strength)]
        langs += [lang, lang]
        lang_of_pair.append(lang)
    return texts, langs, np.array(lang_of_pair)


def true_jaccard(sh, n_pairs: int) -> np.ndarray:
    out = np.empty(n_pairs)
    for p in range(n_pairs):
        a, b = np.unique(sh.of(2 * p)), np.unique(sh.of(2 * p + 1))
        inter = len(np.intersect1d(a, b, assume_unique=True))
        out[p] = inter / (len(a) + len(b) - inter)
    return out


def detect(sig: np.ndarray, bands: int, rows: int, threshold: float, verify: bool) -> np.ndarray:
    n = len(sig)
    bh = band_hashes(sig, bands, rows)
    idx = pl.Series("idx", np.arange(n, dtype=np.uint32))
    edges = lsh.merge_edges([lsh.band_edges(pl.DataFrame([idx, pl.Series("h", bh[:, k])])) for k in range(bands)])
    src, dst = edges.get_column("src").to_numpy(), edges.get_column("dst").to_numpy()
    if verify and len(src):
        keep = jaccard_estimate(sig[src], sig[dst]) >= threshold
        src, dst = src[keep], dst[keep]
    return lsh.components(n, src, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1500)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--cjk-ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--script-pairs", type=int, default=1000, help="Traditional copies of real texts (0: skip)")
    args = ap.parse_args()
    started = time.perf_counter()
    texts, langs, pair_lang = make_pairs(args.pairs, args.seed)
    sh = shingle_texts(pl.Series(texts), pl.Series(langs), ngram=args.ngram, cjk_ngram=args.cjk_ngram)
    jac = true_jaccard(sh, args.pairs)
    sig = signatures(sh, args.num_perm)
    bands, rows = optimal_bands(args.threshold, args.num_perm)
    print(
        f"{args.pairs} pairs, num_perm={args.num_perm}, threshold={args.threshold}, bands x rows={bands}x{rows}, "
        f"ngram={args.ngram}, cjk_ngram={args.cjk_ngram}"
    )
    print(
        f"{'verify':>6} {'lang':>4} {'recall J>=0.9':>16} {'of which J<0.95':>18} {'detected 0.6-0.9':>18}"
        f" {'FP rate J<0.6':>16}"
        f" {'cross-pair merges':>18}"
    )
    for verify in (True, False):
        labels = detect(sig, bands, rows, args.threshold, verify)
        same = labels[0::2] == labels[1::2]
        # documents of different pairs that ended up together (all generated bases are unrelated)
        sizes = np.bincount(labels)
        cross = int(((sizes[labels] > 2) | ((sizes[labels] == 2) & ~np.repeat(same, 2))).sum())
        for lang in ("en", "zh", "all"):
            m = np.ones(args.pairs, bool) if lang == "all" else pair_lang == lang
            hi, mid, lo = m & (jac >= 0.9), m & (jac >= 0.6) & (jac < 0.9), m & (jac < 0.6)
            edge = hi & (jac < 0.95)
            print(
                f"{verify!s:>6} {lang:>4} {same[hi].mean():>9.3f} (n={hi.sum():>4}) {same[edge].mean():>11.3f}"
                f" (n={edge.sum():>4}) {same[mid].mean():>11.3f}"
                f" (n={mid.sum():>4}) {same[lo].mean():>9.3f} (n={lo.sum():>4})"
                f" {cross if lang == 'all' else '':>18}"
            )
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.script_pairs:
        script_pairs(args)


def script_pairs(args: argparse.Namespace) -> None:
    """Recall on Simplified texts paired with their Traditional renderings (see the docstring)."""
    from pipelines.chinese_script import converter, to_script

    path = SHARED / "zh_legal_dev.jsonl"
    if not path.exists():
        print(f"script pairs: skipped ({path} not found)")
        return
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    bases = [r["text"] for r in rows if r["kind"] != "exam_question" and len(r["text"]) >= 100][: args.script_pairs]
    rng = random.Random(args.seed)
    texts, kinds = [], []
    for i, base in enumerate(bases):
        config = ("s2hk", "s2tw", "s2twp")[i % 3]
        copy = converter(config).convert(base)
        if i % 2:  # half of them also lightly edited: a sentence dropped, a header added
            sentences = copy.split("。")
            if len(sentences) > 3:
                del sentences[rng.randrange(len(sentences) - 1)]
            copy = "轉載自法律資料庫。" + "。".join(sentences)
        texts += [base, copy]
        kinds.append(config)
    kinds_arr = np.array(kinds)
    bands, rows_ = optimal_bands(args.threshold, args.num_perm)
    print(f"\nTraditional copies of {len(bases)} real court texts, threshold {args.threshold}")
    converted = to_script(pl.Series(texts), "simplified")[0]
    langs = pl.Series(["zh"] * len(texts))
    jac = true_jaccard(shingle_texts(converted, langs, ngram=args.ngram, cjk_ngram=args.cjk_ngram), len(bases))
    print(
        f"true Jaccard once converted >= 0.9: {(jac >= 0.9).sum()} pairs, 0.6-0.9: {((jac >= 0.6) & (jac < 0.9)).sum()}"
    )
    print(
        f"{'shingled as':>26} {'s2hk':>7} {'s2tw':>7} {'s2twp':>7} {'J>=0.9':>7} {'0.6-0.9':>8} {'all':>7}"
        f" {'cross-pair merges':>18}"
    )
    for label, series in (("text as it is", pl.Series(texts)), ("chinese_script=simplified", converted)):
        sh = shingle_texts(series, langs, ngram=args.ngram, cjk_ngram=args.cjk_ngram)
        labels = detect(signatures(sh, args.num_perm), bands, rows_, args.threshold, True)
        same = labels[0::2] == labels[1::2]
        sizes = np.bincount(labels)
        cross = int(((sizes[labels] > 2) | ((sizes[labels] == 2) & ~np.repeat(same, 2))).sum())
        hi = jac >= 0.9
        cells = " ".join(f"{same[hi & (kinds_arr == k)].mean():>7.3f}" for k in ("s2hk", "s2tw", "s2twp"))
        mid = (jac >= 0.6) & (jac < 0.9)
        print(f"{label:>26} {cells} {same[hi].mean():>7.3f} {same[mid].mean():>8.3f} {same.mean():>7.3f} {cross:>18}")
    print("(s2hk/s2tw/s2twp columns: pairs with J >= 0.9 once converted; cross-pair merges: real court texts")
    print(" that are near duplicates of each other, found with or without conversion)")


if __name__ == "__main__":
    main()
