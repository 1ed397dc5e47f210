"""Chinese PII on Traditional script, measured on real text: `python benchmarks/pii_traditional.py`.

Real Traditional-script court text is not in `../shared/data/` (LawBench's texts are Simplified),
so this converts those real texts with OpenCC (``s2t``, ``s2tw``, ``s2hk``; character for
character, offsets unchanged) and compares the Chinese findings (PERSON, ADDRESS) on each
conversion with those on the original: a finding of the original at the same offsets is agreement,
the rest are misses (only on the original) and extras (only on the conversion). Also counts the
letter rules (`zh_letter`: addressee "涂成您好", signer after 此致) on the originals, for their
precision on real text. Skips cleanly without shared/data.

``--texts court`` (default): the court texts (case facts, judgment passages, NER sentences), whose
differences were read while fixing the lexicon; ``--texts exam``: the 500 exam questions with
their options, never read, as the held-out check.

    flock /work/heavy.lock python benchmarks/pii_traditional.py [--texts court|exam] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ENTITIES = ("PERSON", "ADDRESS")


def _rows(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def real_texts(which: str, limit: int | None) -> list[str]:
    if which == "exam":
        texts = [r["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in r["options"].items())
                 for r in _rows("zh_legal_exam_dev.jsonl")]  # fmt: skip
    else:
        texts = [r["text"] for name in ("zh_legal_dev.jsonl", "zh_legal_ner_dev.jsonl") for r in _rows(name)]
    return texts[:limit]


def spans(texts: list[str]) -> list[set[tuple[str, int, int]]]:
    from pipelines.pii.zh import zh_findings

    return [{(f.entity, f.start, f.end) for f in fs if f.entity in ENTITIES} for fs in zh_findings(texts)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", choices=["court", "exam"], default="court")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not there")
        return 0
    from pipelines.chinese_script import converter
    from pipelines.pii.zh import rule_findings

    texts = real_texts(args.texts, args.limit)
    base = spans(texts)
    letters = [(t, t[f.start : f.end]) for t in texts for f in rule_findings(t) if f.recognizer == "zh_letter"]
    chars = sum(map(len, texts))
    print(f"{args.texts}: {len(texts)} real texts, {chars:,} characters; zh_letter findings: {len(letters)}")
    for text, name in letters[:20]:
        print(f"   {name!r}: {text[:80]!r}")
    print(f"{'script':<8} {'entity':<8} {'original':>9} {'agree':>7} {'missed':>7} {'extra':>7} {'agreement':>10}")
    for config in ("s2t", "s2tw", "s2hk"):
        convert = converter(config).convert
        converted = [convert(t) for t in texts]
        same_length = [len(a) == len(b) for a, b in zip(texts, converted, strict=True)]
        conv = spans(converted)
        for entity in ENTITIES:
            orig = agree = missed = extra = 0
            for ok, a, b in zip(same_length, base, conv, strict=True):
                if not ok:
                    continue
                a = {s for s in a if s[0] == entity}
                b = {s for s in b if s[0] == entity}
                orig, agree, missed, extra = orig + len(a), agree + len(a & b), missed + len(a - b), extra + len(b - a)
            rate = agree / orig if orig else 1.0
            print(f"{config:<8} {entity:<8} {orig:>9} {agree:>7} {missed:>7} {extra:>7} {rate:>10.3f}")
        print(f"{config:<8} texts whose length changed (left out): {same_length.count(False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
