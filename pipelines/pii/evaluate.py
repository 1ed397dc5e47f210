"""Per-type precision/recall of the PII analyzer on the Faker set, and the leak check.

``python -m pipelines.pii.evaluate [--docs N] [--no-ner]`` prints a table. A gold span counts
as found when a finding of the same type overlaps it; a finding is correct when it overlaps a
gold span of its type (near-misses in the templates are unlabelled, so flagging them costs
precision). The leak check redacts every document and then (1) searches the output for every
labelled structured value and (2) runs the audit scanner `scan_structured` over it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

from pipelines.pii.engine import analyze_texts
from pipelines.pii.entities import NER_ENTITIES
from pipelines.pii.evalset import LabelledDoc, generate
from pipelines.pii.recognizers import Finding
from pipelines.pii.redact import redact_text
from pipelines.pii.scan import scan_structured


@dataclass
class Report:
    tp: Counter[tuple[str, str]]  # (lang, entity) -> gold spans found
    gold: Counter[tuple[str, str]]
    correct: Counter[tuple[str, str]]  # findings that overlap a gold span of their type
    predicted: Counter[tuple[str, str]]
    leaked_values: int
    rescan_findings: int

    def recall(self, lang: str, entity: str) -> float:
        g = self.gold[(lang, entity)]
        return self.tp[(lang, entity)] / g if g else float("nan")

    def precision(self, lang: str, entity: str) -> float:
        p = self.predicted[(lang, entity)]
        return self.correct[(lang, entity)] / p if p else float("nan")

    def rows(self) -> list[tuple[str, str, int, int, float, float]]:
        keys = sorted(set(self.gold) | set(self.predicted))
        return [
            (lang, e, self.gold[(lang, e)], self.predicted[(lang, e)], self.precision(lang, e), self.recall(lang, e))
            for lang, e in keys
        ]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(docs: list[LabelledDoc], found: list[list[Finding]], redacted: list[str]) -> Report:
    tp: Counter[tuple[str, str]] = Counter()
    gold: Counter[tuple[str, str]] = Counter()
    correct: Counter[tuple[str, str]] = Counter()
    predicted: Counter[tuple[str, str]] = Counter()
    leaked = 0
    for doc, fs, out in zip(docs, found, redacted, strict=True):
        for entity, s, e in doc.spans:
            gold[(doc.lang, entity)] += 1
            tp[(doc.lang, entity)] += any(f.entity == entity and _overlaps((s, e), (f.start, f.end)) for f in fs)
            if entity not in NER_ENTITIES and doc.text[s:e] in out:
                leaked += 1
        for f in fs:
            predicted[(doc.lang, f.entity)] += 1
            correct[(doc.lang, f.entity)] += any(
                f.entity == entity and _overlaps((s, e), (f.start, f.end)) for entity, s, e in doc.spans
            )
    rescan = sum(len(x) for x in scan_structured(redacted))
    return Report(tp, gold, correct, predicted, leaked, rescan)


def evaluate(n_docs: int = 400, *, ner: bool = True, seed: int = 0) -> Report:
    docs = generate(n_docs, seed)
    texts = [d.text for d in docs]
    found = analyze_texts(texts, [ner and d.lang == "en" for d in docs], min_score=0.5)
    redacted = [redact_text(d.text, fs) for d, fs in zip(docs, found, strict=True)]
    return score(docs, found, redacted)


def format_report(report: Report) -> str:
    lines = [f"{'lang':4}  {'entity':15} {'gold':>5} {'found':>6} {'precision':>9} {'recall':>7}"]
    for lang, e, g, p, prec, rec in report.rows():
        lines.append(f"{lang:4}  {e:15} {g:5d} {p:6d} {prec:9.3f} {rec:7.3f}")
    lines.append(f"labelled structured values left after redaction: {report.leaked_values}")
    lines.append(f"structured findings when re-scanning redacted texts: {report.rescan_findings}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ner", action="store_true")
    args = p.parse_args()
    print(format_report(evaluate(args.docs, ner=not args.no_ner, seed=args.seed)))


if __name__ == "__main__":
    main()
