"""`python -m quality.annotate --config configs/annotate.yaml`: an LLM rates a sample of the corpus.

The first half of model-based filtering (FineWeb-Edu): documents are sampled from the catalog
with SQL, stratified (up to ``sample.per_group`` documents per ``sample.group_by`` group, by
default source x language, picked in ``md5(doc_id || seed)`` order, so a rerun and a larger
sample are stable), cut to ``max_chars`` at a paragraph or sentence end, and rated 0-5 for
legal/domain value with a versioned rubric (`quality.rubric`, zh or en by the document's language)
through the synthesis job's client (`pipelines.synth.client`: response cache, transport retries
with backoff, RPM/TPM limits, JSON-schema answers; an invalid answer is retried with a new seed,
then rejected). Out come the catalog tables ``quality_annotations`` (doc_id, source, lang, score,
rationale, model, prompt id and sha, attempts) and ``quality_annotation_rejects``, written through
the catalog's API in one run, and a JSONL file (``text``, ``score``, ``label``) that
``python -m quality.train_classifier --data FILE --label-field score --min-label 3`` reads.
Works against ``training.serve`` with the bundled SmolLM2 and unchanged against any bigger
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from openai import AsyncOpenAI

from common.config import ConfigError, read_yaml_mapping
from corpus import catalog
from corpus.catalog import Catalog
from corpus.store import CorpusLayout
from pipelines.synth.cache import ResponseCache
from pipelines.synth.chunking import chunk_text
from pipelines.synth.client import EndpointCaller, ItemResult, JobStats, SynthError, WorkItem
from pipelines.synth.config import (
    STRUCTURED_MODES,
    EndpointConfig,
    GenerationConfig,
    LimitsConfig,
    SynthConfig,
    apply_overrides,
    parse_section,
)
from pipelines.synth.job import api_key
from pipelines.synth.validate import Verdict, validate_response
from quality.rubric import Rubric, Rubrics, parse_score

TABLE = "quality_annotations"
REJECTS = "quality_annotation_rejects"
GROUP_COLUMNS = ("source", "lang", "split", "bucket")
ANNOTATIONS_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in ("job", "run_id", "doc_id")]
    + [pa.field("source", pa.string()), pa.field("lang", pa.string())]
    + [pa.field("score", pa.int32(), nullable=False), pa.field("rationale", pa.string())]
    + [pa.field(n, pa.string(), nullable=False) for n in ("model", "prompt_id", "prompt_sha")]
    + [pa.field("attempts", pa.int32(), nullable=False), pa.field("chars", pa.int32(), nullable=False)]
)
REJECTS_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in ("job", "run_id", "doc_id", "model", "prompt_id")]
    + [pa.field("tries", pa.int32(), nullable=False), pa.field("reason", pa.string(), nullable=False)]
    + [pa.field("detail", pa.string()), pa.field("response", pa.string())]
)


@dataclass
class SampleConfig:
    """Which documents: a SQL filter over ``table``, then up to ``per_group`` per group."""

    table: str = "documents"  # documents (final shards) or raw_documents
    where: str | None = None  # SQL boolean expression over the table's columns
    group_by: list[str] = field(default_factory=lambda: ["source", "lang"])
    per_group: int = 20
    seed: int = 0
    include_synthetic: bool = False  # rows written by synthesis jobs (source synth:*)


@dataclass
class AnnotateConfig:
    job: str = "annotate"
    root: str = "data"
    templates_dir: Path = Path("configs/prompts")  # annotate.<lang>.yaml
    max_chars: int = 1500  # of each document shown to the annotator (its head, cut at a boundary)
    min_label: int = 3  # score >= this is "good" in the JSONL's label (FineWeb-Edu's cut)
    output: Path | None = None  # JSONL for train_classifier; default <root>/annotations/<job>.jsonl
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_tokens=120))
    sample: SampleConfig = field(default_factory=SampleConfig)

    def synth(self) -> SynthConfig:
        """The client's view: endpoint, limits and generation are the synthesis job's sections."""
        return SynthConfig(
            job=self.job, root=self.root, endpoint=self.endpoint, limits=self.limits, generation=self.generation
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def load_config(path: Path, overrides: list[str] | None = None) -> AnnotateConfig:
    where = str(path)
    raw = apply_overrides(read_yaml_mapping(path), overrides)
    try:
        cfg: AnnotateConfig = parse_section(raw, AnnotateConfig, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    s = cfg.sample
    checks = [
        (cfg.max_chars > 0, f"max_chars must be positive, got {cfg.max_chars}"),
        (0 <= cfg.min_label <= 5, f"min_label must be 0-5, got {cfg.min_label}"),
        (s.per_group > 0, f"sample.per_group must be positive, got {s.per_group}"),
        (s.table in ("documents", "raw_documents"), "sample.table must be documents or raw_documents"),
        (bool(s.group_by) and set(s.group_by) <= set(GROUP_COLUMNS),
         f"sample.group_by must list columns of {', '.join(GROUP_COLUMNS)}, got {s.group_by}"),
        (cfg.endpoint.structured_output in STRUCTURED_MODES,
         f"endpoint.structured_output must be one of {', '.join(STRUCTURED_MODES)}"),
        (cfg.limits.concurrency > 0 and cfg.generation.max_tokens > 0,
         "limits.concurrency and generation.max_tokens must be positive"),
    ]  # fmt: skip
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}: {msg}")
    return cfg


@dataclass(frozen=True)
class Doc:
    doc_id: str
    text: str
    source: str | None
    lang: str | None


def sample_query(s: SampleConfig) -> tuple[str, list[Any]]:
    """Up to ``per_group`` documents per group, in a seeded pseudo-random order within each."""
    where = f"({s.where})" if s.where else "true"
    if not s.include_synthetic:
        where += " AND NOT coalesce(starts_with(source, 'synth:'), false)"
    groups = ", ".join(s.group_by)
    sql = (
        "SELECT doc_id, text, source, lang FROM ("
        f"SELECT doc_id, text, source, lang, row_number() OVER (PARTITION BY {groups} "
        "ORDER BY md5(doc_id || ?::VARCHAR), doc_id) AS pick "
        f"FROM {s.table} WHERE {where}) AS sampled "
        f"WHERE pick <= ? ORDER BY {', '.join(f'{g} NULLS FIRST' for g in s.group_by)}, pick"
    )
    return sql, [str(s.seed), s.per_group]


def select_docs(layout: CorpusLayout, s: SampleConfig) -> list[Doc]:
    if not layout.catalog.exists():
        raise SynthError(f"{layout.catalog}: no catalog; build or import a corpus first (python -m pipelines.build)")
    sql, params = sample_query(s)
    with Catalog.open(layout, read_only=True) as cat:
        try:
            _, rows = cat.query(sql, params)
        except duckdb.Error as exc:
            raise SynthError(f"sample selection failed: {exc}\n  query: {sql}") from None
    docs = [Doc(*r) for r in rows if r[1]]
    if not docs:
        raise SynthError(f"no documents match: {sql} (seed={s.seed}); is the corpus built?")
    return docs


def shown_text(text: str, max_chars: int) -> str:
    """The head of a document that fits the prompt, cut at a paragraph or sentence end."""
    chunks = chunk_text(text, max_chars, 1)
    return chunks[0] if chunks else text[:max_chars]


def make_check(rubric: Rubric) -> Any:
    """Schema validation, then the score must be a digit 0-5 (a failure is retried, then rejected)."""

    def check(content: str | None, finish_reason: str | None) -> Verdict:
        verdict = validate_response(content, rubric.schema, finish_reason)
        if not verdict.ok:
            return verdict
        assert verdict.answer is not None
        score, why = parse_score(verdict.answer)
        if score is None:
            return Verdict(None, "bad_score", why)
        return Verdict({**verdict.answer, "score": score})

    return check


@dataclass
class AnnotateResult:
    run_id: str
    docs: int
    annotated: int
    rejects: Counter[str]
    scores: Counter[int]
    stats: JobStats
    output: Path


async def _call_all(cfg: AnnotateConfig, items: list[WorkItem], cache: ResponseCache, stats: JobStats) -> list[Any]:
    synth = cfg.synth()
    timeout = cfg.endpoint.request_timeout_s(cfg.generation.max_tokens)
    client = AsyncOpenAI(base_url=cfg.endpoint.base_url, api_key=api_key(synth), timeout=timeout, max_retries=0)
    caller = EndpointCaller(synth, cache, client, stats)
    try:
        return list(await asyncio.gather(*(caller.run_item(i) for i in items)))
    finally:
        await client.close()


def run_job(cfg: AnnotateConfig, *, command: str = "") -> AnnotateResult:
    layout = CorpusLayout.at(cfg.root)
    rubrics = Rubrics(cfg.templates_dir)
    docs = select_docs(layout, cfg.sample)
    shown = [shown_text(d.text, cfg.max_chars) for d in docs]
    used = [rubrics.get(d.lang) for d in docs]
    items = [
        WorkItem(i, d.doc_id, 0, "annotate", r.messages(t), r.schema, check=make_check(r))
        for i, (d, t, r) in enumerate(zip(docs, shown, used, strict=True))
    ]
    output = cfg.output or layout.root / "annotations" / f"{cfg.job}.jsonl"
    model = cfg.endpoint.model
    start = {"command": command, "config": cfg.to_dict()}
    with catalog.run(layout, "annotate", resumes={"job": cfg.job}, hint="rerun resumes from the cache", **start) as run:
        stats = JobStats()
        cache = ResponseCache(layout.state / "annotate" / "cache.sqlite")
        try:
            results: list[ItemResult] = asyncio.run(_call_all(cfg, items, cache, stats))
        finally:
            cache.close()
        rows, rejects, lines = [], [], []
        for d, text, r, res in zip(docs, shown, used, results, strict=True):
            if res.verdict.ok:
                assert res.verdict.answer is not None
                score, reasons = int(res.verdict.answer["score"]), str(res.verdict.answer["reasons"]).strip()
                rows.append((cfg.job, run.run_id, d.doc_id, d.source, d.lang, score, reasons, model, r.id, r.sha,
                             res.attempts, len(text)))  # fmt: skip
                lines.append({"doc_id": d.doc_id, "source": d.source, "lang": d.lang, "text": text, "score": score,
                              "label": "good" if score >= cfg.min_label else "junk", "rationale": reasons,
                              "model": model, "prompt_id": r.id})  # fmt: skip
            else:
                body = (res.response.content or "")[:2000] if res.response else None
                rejects.append((cfg.job, run.run_id, d.doc_id, model, r.id, res.tries, res.verdict.reason,
                                res.verdict.detail, body))  # fmt: skip
        if rows:
            output.parent.mkdir(parents=True, exist_ok=True)
            tmp = output.with_name(f".{output.name}.tmp")
            tmp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
            tmp.replace(output)
        with run.catalog() as cat:
            cat.ensure_table(TABLE, ANNOTATIONS_SCHEMA)
            cat.ensure_table(REJECTS, REJECTS_SCHEMA)
            cat.delete_rows(REJECTS, job=cfg.job)  # the rejects of this run are kept even when none passed
            cat.append_rows(REJECTS, rejects)
            if rows:  # a job without one valid answer keeps its earlier labels
                cat.delete_rows(TABLE, job=cfg.job)  # a rerun replaces the job's labels
                cat.append_rows(TABLE, rows)
                run.finish(docs_in=len(docs), docs_out=len(rows), docs_rejected=len(rejects), cat=cat)
        if not rows:
            reasons = Counter(r[6] for r in rejects)
            raise SynthError(
                f"no annotation: all {len(docs)} answers were rejected ({dict(reasons)}); first: {rejects[0][7]} "
                f"(the answers are in {REJECTS}); is {cfg.endpoint.base_url} up, and is its model able to follow "
                "the rubric?"
            )
        return AnnotateResult(
            run.run_id, len(docs), len(rows), Counter(r[6] for r in rejects), Counter(r[5] for r in rows), stats, output
        )


def format_result(r: AnnotateResult) -> str:
    s = r.stats
    hist = ", ".join(f"{k}: {r.scores.get(k, 0)}" for k in range(6))
    rej = f" ({', '.join(f'{k}: {v}' for k, v in sorted(r.rejects.items()))})" if r.rejects else ""
    return "\n".join(
        [
            f"run {r.run_id}: {r.docs} documents -> {r.annotated} annotated, {sum(r.rejects.values())} rejected{rej}",
            f"scores {hist}",
            f"requests sent: {s.requests} (transport retries {s.transport_retries}), cache hits: {s.cache_hits}",
            f"wrote catalog tables {TABLE}, {REJECTS} and {r.output} "
            f"(python -m quality.train_classifier --data {r.output} --label-field score --min-label 3)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quality.annotate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/annotate.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. sample.per_group=5")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        result = run_job(cfg, command=shlex.join(["python", "-m", "quality.annotate", *(argv or sys.argv[1:])]))
    except (ConfigError, SynthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
