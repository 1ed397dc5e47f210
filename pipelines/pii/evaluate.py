"""Per-type precision/recall of the PII analyzer on three labelled sets, and the leak check.

``python -m pipelines.pii.evaluate [--docs N] [--no-ner] [--no-gate] [--split holdout|dev|tune|all]
[--presidio] [--errors N]``  (``--no-gate``: NER on every sentence, to measure what the
candidate filters of `pipelines.pii.gate` cost in recall)

1. **Faker templates** (`evalset`): letters, court documents, forums, contact pages in English
   and Chinese, Chinese civil judgments with parties, agents, addresses, IDs and court
   pseudonyms (张某, 李某某: unlabelled, so flagging one costs precision), Traditional appeals.
2. **English varied set** (`data/en_varied.jsonl`, built by `benchmarks/make_en_pii_set.py` from
   presidio-research's public templates and 3,000 FakeNameGenerator identities of 24 name sets):
   national phone formats, lower-case, single and non-English names. Scored on its ``holdout``
   part (templates and identities never used while tuning, errors never read) unless
   ``--split`` says otherwise; ``--presidio`` scores presidio's default ``AnalyzerEngine`` on
   it too; ``--errors N`` prints N missed and N wrongly flagged PERSON/PHONE/LOCATION spans of
   the ``tune``/``dev`` parts (it refuses the holdout).
3. **Real Chinese court sentences** (``../shared/data/zh_legal_ner_dev.jsonl`` when present):
   theft judgments whose parties the courts anonymised (严某某), plus a few they did not (the
   defendant 邓军安): every anonymised name flagged as PERSON is an error, every listed party
   name that is not anonymised should be found; ORG/place strings flagged as PERSON are errors.

A gold span counts as found when a finding of the same type overlaps it; a finding is correct
when it overlaps a gold span of its type. The leak check redacts every document and then (1)
searches the output for every labelled value of a structured type, a PERSON or an ADDRESS and
(2) runs the audit scanner `scan_structured` over it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.pii.engine import analyze_texts
from pipelines.pii.evalset import LabelledDoc, generate
from pipelines.pii.recognizers import Finding
from pipelines.pii.redact import redact_text
from pipelines.pii.scan import scan_structured

EN_VARIED = Path(__file__).with_name("data") / "en_varied.jsonl"
ZH_REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "zh_legal_ner_dev.jsonl"
# presidio-research label -> ours (what a finding of ours must be to match it)
VARIED_LABELS = {"GPE": "LOCATION", "PHONE_NUMBER": "PHONE", "STREET_ADDRESS": "ADDRESS"}
NOT_LEAK_CHECKED = {"LOCATION"}  # a city's name in the output is not a leak of a person's data


@dataclass
class Report:
    tp: Counter[tuple[str, str]] = field(default_factory=Counter)  # (set, entity) -> gold spans found
    gold: Counter[tuple[str, str]] = field(default_factory=Counter)
    correct: Counter[tuple[str, str]] = field(default_factory=Counter)  # findings overlapping gold of their type
    predicted: Counter[tuple[str, str]] = field(default_factory=Counter)
    leaked_values: int = 0
    leaked: Counter[str] = field(default_factory=Counter)  # entity -> labelled values left in the output
    rescan_findings: int = 0

    def recall(self, group: str, entity: str) -> float:
        g = self.gold[(group, entity)]
        return self.tp[(group, entity)] / g if g else float("nan")

    def precision(self, group: str, entity: str) -> float:
        p = self.predicted[(group, entity)]
        return self.correct[(group, entity)] / p if p else float("nan")

    def rows(self) -> list[tuple[str, str, int, int, float, float]]:
        keys = sorted(k for k in set(self.gold) | set(self.predicted) if self.tp[k] or self.predicted[k])
        return [
            (grp, e, self.gold[(grp, e)], self.predicted[(grp, e)], self.precision(grp, e), self.recall(grp, e))
            for grp, e in keys
        ]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(docs: Sequence[LabelledDoc], found: Sequence[list[Finding]], redacted: Sequence[str]) -> Report:
    """Counts per (document group, entity); a document's group is its ``lang`` (en, zh)."""
    rep = Report()
    for doc, fs, out in zip(docs, found, redacted, strict=True):
        for entity, s, e in doc.spans:
            rep.gold[(doc.lang, entity)] += 1
            rep.tp[(doc.lang, entity)] += any(f.entity == entity and _overlaps((s, e), (f.start, f.end)) for f in fs)
            if entity not in NOT_LEAK_CHECKED and entity in FINDABLE and _leaked(doc.text[s:e], out):
                rep.leaked_values += 1
                rep.leaked[entity] += 1
        for f in fs:
            rep.predicted[(doc.lang, f.entity)] += 1
            rep.correct[(doc.lang, f.entity)] += any(
                f.entity == entity and _overlaps((s, e), (f.start, f.end)) for entity, s, e in doc.spans
            )
    rep.rescan_findings = sum(len(x) for x in scan_structured(list(redacted)))
    return rep


FINDABLE = {"EMAIL", "PHONE", "PRC_ID", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "PERSON", "ADDRESS"}


def _leaked(value: str, out: str) -> bool:
    """A labelled value still in the redacted text (names of one character are not checked: a
    single character occurs in any text)."""
    return len(value.strip()) >= 2 and value in out


def evaluate(n_docs: int = 400, *, ner: bool = True, seed: int = 0, gate: bool = True) -> Report:
    """The Faker template set: ``n_docs`` English + Chinese documents (+ a tenth Traditional)."""
    docs = generate(n_docs, seed)
    return _run(docs, ner=ner, gate=gate)


def _run(docs: Sequence[LabelledDoc], *, ner: bool, gate: bool = True) -> Report:
    texts = [d.text for d in docs]
    found = analyze_texts(texts, [d.lang if ner else None for d in docs], min_score=0.5, gate=gate)
    redacted = [redact_text(d.text, fs) for d, fs in zip(docs, found, strict=True)]
    return score(docs, found, redacted)


VARIED_SPLITS = ("holdout", "dev", "tune", "all")


def _varied_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file (make_en_pii_set.py --seed N --out PATH writes one)")
    return path


def add_varied_option(parser: argparse.ArgumentParser) -> None:
    """``--varied PATH``, another varied set, refused up front when missing (not after a Faker pass)."""
    parser.add_argument(
        "--varied", type=_varied_file, default=EN_VARIED, help="the varied set (make_en_pii_set.py --seed)"
    )


def varied_docs(split: str = "holdout", path: Path = EN_VARIED) -> list[LabelledDoc]:
    """The English varied set as labelled documents (group ``en-varied``)."""
    if split not in VARIED_SPLITS:
        raise ValueError(f"split must be one of {', '.join(VARIED_SPLITS)}, got {split!r}")
    docs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if split != "all" and row["split"] != split:
            continue
        spans = [(VARIED_LABELS.get(s["entity_type"], s["entity_type"]), s["start"], s["end"]) for s in row["spans"]]
        docs.append(LabelledDoc(row["text"], "en", "varied", spans))
    return docs


def evaluate_varied(split: str = "holdout", *, ner: bool = True, gate: bool = True, path: Path = EN_VARIED) -> Report:
    rep = _run(varied_docs(split, path), ner=ner, gate=gate)
    return _regroup(rep, "en-varied")


def evaluate_presidio_varied(split: str = "holdout", path: Path = EN_VARIED) -> Report:
    """presidio's default AnalyzerEngine (its recognizers + the same spaCy model) on the varied set."""
    from pipelines.pii.presidio_bridge import presidio_default_analyzer

    analyzer = presidio_default_analyzer()
    names = {"PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL", "IBAN_CODE": "IBAN"}
    docs = varied_docs(split, path)
    found = [
        [
            Finding(names.get(r.entity_type, r.entity_type), r.start, r.end, "presidio", r.score)
            for r in analyzer.analyze(d.text, language="en")
            if r.score >= 0.5
        ]
        for d in docs
    ]
    return _regroup(score(docs, found, [d.text for d in docs]), "presidio")


def varied_errors(
    split: str, n: int, entities: Sequence[str] = ("PERSON", "PHONE", "LOCATION", "ADDRESS")
) -> list[str]:
    """Up to ``n`` misses and ``n`` false positives per entity, in context, for error analysis of
    the ``tune``/``dev`` parts; the holdout's errors are never printed (it stays unseen)."""
    if split not in ("tune", "dev"):
        raise ValueError(f"errors are shown for the tune and dev parts only, not {split!r}")
    docs = varied_docs(split)
    found = analyze_texts([d.text for d in docs], ["en"] * len(docs), min_score=0.5)
    lines = []
    for entity in entities:
        missed, wrong = [], []
        for doc, fs in zip(docs, found, strict=True):
            gold = [(s, e) for t, s, e in doc.spans if t == entity]
            mine = [f for f in fs if f.entity == entity]
            for s, e in gold:
                if not any(_overlaps((s, e), (f.start, f.end)) for f in mine):
                    missed.append(_in_context(doc.text, s, e))
            for f in mine:
                if not any(_overlaps((s, e), (f.start, f.end)) for s, e in gold):
                    wrong.append(_in_context(doc.text, f.start, f.end) + f"  ({f.recognizer})")
        lines.append(f"-- {entity}: {len(missed)} missed")
        lines += [f"   {x}" for x in missed[:n]]
        lines.append(f"-- {entity}: {len(wrong)} false positives")
        lines += [f"   {x}" for x in wrong[:n]]
    return lines


def _in_context(text: str, start: int, end: int, width: int = 40) -> str:
    left, right = text[max(0, start - width) : start], text[end : end + width]
    return f"...{left}[[{text[start:end]}]]{right}...".replace("\n", " | ")


def _regroup(rep: Report, group: str) -> Report:
    out = Report(leaked_values=rep.leaked_values, leaked=rep.leaked.copy(), rescan_findings=rep.rescan_findings)
    pairs = ((rep.tp, out.tp), (rep.gold, out.gold), (rep.correct, out.correct), (rep.predicted, out.predicted))
    for src, dst in pairs:
        for (_, e), n in src.items():
            dst[(group, e)] += n
    return out


@dataclass
class RealReport:
    """Real court sentences: anonymised names must not be flagged, the others must."""

    sentences: int = 0
    anonymised: int = 0
    anonymised_flagged: int = 0
    real_names: int = 0
    real_names_found: int = 0
    person_findings: int = 0
    person_on_names: int = 0  # PERSON findings that overlap a listed party name
    org_or_place_as_person: int = 0
    places: int = 0
    places_found: int = 0
    examples: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        p = self.person_on_names / self.person_findings if self.person_findings else float("nan")
        return [
            f"real zh court sentences: {self.sentences}",
            f"  anonymised party names (某/x): {self.anonymised}, flagged as PERSON: {self.anonymised_flagged}",
            f"  party names the courts left: {self.real_names}, found: {self.real_names_found}",
            f"  PERSON findings: {self.person_findings}, on a party name: {self.person_on_names} (precision {p:.3f}),"
            f" on an organisation or place: {self.org_or_place_as_person}",
            f"  places (地点): {self.places}, overlapped by LOCATION/ADDRESS: {self.places_found}",
            f"  other PERSON findings: {', '.join(self.examples[:15])}",
        ]


def evaluate_zh_real(path: Path = ZH_REAL, *, gate: bool = True) -> RealReport:
    from pipelines.pii.zh import is_anonymised

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows]
    found = analyze_texts(texts, ["zh"] * len(texts), min_score=0.5, gate=gate)
    rep = RealReport(sentences=len(rows))

    def spans_of(text: str, values: list[str]) -> list[tuple[int, int]]:
        out = []
        for v in values:
            start = text.find(v)
            while v and start != -1:
                out.append((start, start + len(v)))
                start = text.find(v, start + len(v))
        return out

    for row, fs in zip(rows, found, strict=True):
        text, ents = row["text"], row["entities"]
        people = sorted(set(ents.get("犯罪嫌疑人", []) + ents.get("受害人", [])))
        persons = [f for f in fs if f.entity == "PERSON"]
        name_spans = spans_of(text, people)
        for name in people:
            hit = any(_overlaps(sp, (f.start, f.end)) for sp in spans_of(text, [name]) for f in persons)
            if is_anonymised(name) or "*" in name:
                rep.anonymised += 1
                rep.anonymised_flagged += hit
            else:
                rep.real_names += 1
                rep.real_names_found += hit
        other = spans_of(text, ents.get("组织机构", []) + ents.get("地点", []))
        for f in persons:
            rep.person_findings += 1
            on_name = any(_overlaps(sp, (f.start, f.end)) for sp in name_spans)
            rep.person_on_names += on_name
            if not on_name:
                rep.org_or_place_as_person += any(_overlaps(sp, (f.start, f.end)) for sp in other)
                rep.examples.append(text[f.start : f.end])
        for sp in spans_of(text, ents.get("地点", [])):
            rep.places += 1
            rep.places_found += any(f.entity in ("LOCATION", "ADDRESS") and _overlaps(sp, (f.start, f.end)) for f in fs)
    return rep


def format_report(report: Report) -> str:
    lines = [f"{'set':9}  {'entity':15} {'gold':>5} {'found':>6} {'precision':>9} {'recall':>7}"]
    for grp, e, g, p, prec, rec in report.rows():
        lines.append(f"{grp:9}  {e:15} {g:5d} {p:6d} {prec:9.3f} {rec:7.3f}")
    by_type = ", ".join(f"{e} {n}" for e, n in sorted(report.leaked.items())) or "none"
    structured = sum(n for e, n in report.leaked.items() if e not in ("PERSON", "ADDRESS"))
    lines.append(
        f"labelled values (structured, PERSON, ADDRESS) left after redaction: {report.leaked_values}"
        f" ({by_type}; structured {structured})"
    )
    lines.append(f"structured findings when re-scanning redacted texts: {report.rescan_findings}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ner", action="store_true")
    p.add_argument("--no-gate", action="store_true", help="NER on every sentence (no candidate filter)")
    p.add_argument("--split", choices=VARIED_SPLITS, default="holdout", help="part of the English varied set")
    p.add_argument("--errors", type=int, default=0, help="print N errors per type of the tune/dev part and exit")
    p.add_argument("--presidio", action="store_true", help="also score presidio's default analyzer (slow import)")
    add_varied_option(p)
    args = p.parse_args()
    if args.errors:
        print("\n".join(varied_errors(args.split, args.errors)))
        return
    print("== Faker templates (en, zh incl. court parties and Traditional appeals)")
    print(format_report(evaluate(args.docs, ner=not args.no_ner, seed=args.seed, gate=not args.no_gate)))
    print(f"\n== English varied set ({args.split} part of {args.varied.name}; presidio-research templates, "
          "FakeNameGenerator identities)")  # fmt: skip
    print(format_report(evaluate_varied(args.split, ner=not args.no_ner, gate=not args.no_gate, path=args.varied)))
    if args.presidio:
        print("\n== presidio default AnalyzerEngine on the same half")
        print(format_report(evaluate_presidio_varied(args.split, args.varied)))
    if ZH_REAL.exists():
        print("\n== real Chinese court sentences (" + str(ZH_REAL.resolve()) + ")")
        print("\n".join(evaluate_zh_real(gate=not args.no_gate).lines()))
    else:
        print(f"\n(real Chinese sentences not found at {ZH_REAL}; skipped)")


if __name__ == "__main__":
    main()
