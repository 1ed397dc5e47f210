"""A synthesis job end to end: seeds -> prompts -> endpoint (cached) -> validated rows -> raw store.

Rows are assembled in work-item order (seed order, chunk, task), never in completion order,
so the output is a pure function of the config, the catalog and the cache. The job's rows
replace its earlier output under ``raw/synth/<job>/`` (staging directory swapped in, catalog
shards swapped in one transaction); rejects go to the catalog table ``synth_rejects`` and the
token/cost accounting of every run to ``synth_usage``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from openai import AsyncOpenAI
from tqdm import tqdm

from corpus import catalog
from corpus.catalog import ShardRecord
from corpus.schema import BASE_SCHEMA, encode_meta, make_doc_id, occurrence_id
from corpus.store import CorpusLayout, ShardWriter, replace_dir
from pipelines.synth.cache import ResponseCache
from pipelines.synth.chunking import chunk_text
from pipelines.synth.client import EndpointCaller, ItemResult, JobStats, SynthError, WorkItem
from pipelines.synth.config import SynthConfig
from pipelines.synth.preference import PreferenceResult, run_preference
from pipelines.synth.seeds import SeedDoc, select_seeds
from pipelines.synth.templates import JudgeTemplate, PromptTemplate, TemplateSet

REJECTS_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in ("job", "run_id", "seed_doc_id")]
    + [pa.field("chunk", pa.int32(), nullable=False)]
    + [pa.field(n, pa.string(), nullable=False) for n in ("task", "prompt_id")]
    + [pa.field("attempts", pa.int32(), nullable=False), pa.field("reason", pa.string(), nullable=False)]
    + [pa.field("detail", pa.string()), pa.field("response", pa.string())]
)
USAGE_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in ("run_id", "job", "model", "base_url")]
    + [
        pa.field(n, pa.int64(), nullable=False)
        for n in (
            "items",
            "rows_written",
            "rejected",
            "requests",
            "cache_hits",
            "transport_retries",
            "prompt_tokens",
            "completion_tokens",
            "cached_prompt_tokens",
            "cached_completion_tokens",
        )
    ]
    + [pa.field("cost_usd", pa.float64(), nullable=False), pa.field("seconds", pa.float64(), nullable=False)]
)


@dataclass
class SynthResult:
    run_id: str
    items: int
    rows: int
    rejects: Counter[str]
    stats: JobStats
    cost_usd: float
    paths: list[str]


@dataclass(frozen=True)
class Planned:
    item: WorkItem
    seed: SeedDoc
    chunk: str
    template: PromptTemplate
    judge: JudgeTemplate | None = None  # task preference only


def plan(cfg: SynthConfig, seeds: list[SeedDoc], templates: TemplateSet) -> list[Planned]:
    """Every (seed, chunk, task) prompt of the job, in output order."""
    out: list[Planned] = []
    for seed in seeds:
        for ci, chunk in enumerate(chunk_text(seed.text, cfg.chunk.max_chars, cfg.chunk.max_chunks)):
            for task in cfg.tasks:
                tpl = templates.get(task, seed.lang)
                item = WorkItem(len(out), seed.doc_id, ci, task, tpl.messages(chunk), tpl.schema)
                out.append(
                    Planned(item, seed, chunk, tpl, templates.judge(seed.lang) if task == "preference" else None)
                )
    return out


def api_key(cfg: SynthConfig) -> str:
    """The key from the environment; a local server without auth accepts any placeholder."""
    return os.environ.get(cfg.endpoint.api_key_env) or "no-key"


class Callers:
    """One `EndpointCaller` (client, limiter, concurrency) per endpoint and model the job talks to."""

    def __init__(self, cfg: SynthConfig, cache: ResponseCache, stats: JobStats) -> None:
        self.cfg, self.cache, self.stats = cfg, cache, stats
        self.clients: dict[str, AsyncOpenAI] = {}
        self.callers: dict[tuple[str, str], EndpointCaller] = {}

    def get(self, base_url: str | None = None, model: str | None = None) -> EndpointCaller:
        base_url, model = base_url or self.cfg.endpoint.base_url, model or self.cfg.endpoint.model
        if base_url not in self.clients:
            timeout = self.cfg.endpoint.request_timeout_s(max(self.cfg.generation.max_tokens, _longest(self.cfg)))
            self.clients[base_url] = AsyncOpenAI(
                base_url=base_url, api_key=api_key(self.cfg), timeout=timeout, max_retries=0
            )
        if (base_url, model) not in self.callers:
            self.callers[(base_url, model)] = EndpointCaller(
                self.cfg, self.cache, self.clients[base_url], self.stats, model=model, base_url=base_url
            )
        return self.callers[(base_url, model)]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def _longest(cfg: SynthConfig) -> int:
    """The largest max_tokens any request of the job asks for (it sizes the default timeout)."""
    if "preference" not in cfg.tasks:
        return cfg.generation.max_tokens
    pref = cfg.preference
    return max(cfg.generation.max_tokens, pref.answer_max_tokens or 0, pref.judge_max_tokens)


async def _run(p: Planned, callers: Callers, cfg: SynthConfig) -> ItemResult | PreferenceResult:
    if p.judge is None:
        return await callers.get().run_item(p.item)
    pref = cfg.preference
    return await run_preference(
        p.item,
        p.chunk,
        p.template,
        p.judge,
        callers.get(),
        [callers.get(c.base_url, c.model) for c in pref.candidates],
        callers.get(pref.judge_base_url, pref.judge_model),
        cfg,
    )


async def _call_all(
    cfg: SynthConfig, planned: list[Planned], cache: ResponseCache, stats: JobStats, progress: bool
) -> list[ItemResult | PreferenceResult]:
    callers = Callers(cfg, cache, stats)
    results: list[ItemResult | PreferenceResult | None] = [None] * len(planned)
    try:
        with tqdm(total=len(planned), desc=f"synth {cfg.job}", unit="prompt", disable=not progress) as bar:

            async def one(p: Planned) -> None:
                results[p.item.index] = await _run(p, callers, cfg)
                bar.set_postfix(requests=stats.requests, cached=stats.cache_hits, refresh=False)
                bar.update()

            tasks = [asyncio.create_task(one(p)) for p in planned]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
    finally:
        await callers.close()
    return [r for r in results if r is not None]


def _row(p: Planned, r: ItemResult | PreferenceResult, cfg: SynthConfig) -> dict[str, Any]:
    assert r.verdict.answer is not None and r.response is not None
    if isinstance(r, PreferenceResult):
        return _preference_row(p, r, cfg)
    prompt, response = p.template.to_row(r.verdict.answer, p.chunk)
    source = f"synth:{p.item.task}"
    text = f"{prompt}\n\n{response}"
    meta = {
        "job": cfg.job,
        "task": p.item.task,
        "seed_doc_id": p.seed.doc_id,
        "seed_source": p.seed.source,
        "seed_url": p.seed.url,
        "chunk": p.item.chunk_index,
        "model": cfg.endpoint.model,
        "prompt_id": p.template.id,
        "prompt_sha": p.template.sha,
        "params": r.params,
        "attempts": r.attempts,
        "prompt_tokens": r.response.prompt_tokens,
        "completion_tokens": r.response.completion_tokens,
        "finish_reason": r.response.finish_reason,
        "cache_key": r.key,
        "prompt": prompt,
        "response": response,
    }
    return _document(source, text, p, r.response.created_at, meta)


def _preference_row(p: Planned, r: PreferenceResult, cfg: SynthConfig) -> dict[str, Any]:
    """A DPO pair: ``meta.prompt`` / ``meta.chosen`` / ``meta.rejected`` (what the trainer reads),
    the judge's ratings and margin; ``text`` is the prompt and the chosen answer, so dedup and
    quality judge the pair by what the model is taught to prefer."""
    assert r.prompt is not None and r.response is not None and p.judge is not None
    chosen, rejected = r.candidates[r.chosen_index].text, r.candidates[r.rejected_index].text
    meta = {
        "job": cfg.job,
        "task": "preference",
        "seed_doc_id": p.seed.doc_id,
        "seed_source": p.seed.source,
        "seed_url": p.seed.url,
        "chunk": p.item.chunk_index,
        "model": cfg.endpoint.model,
        "prompt_id": p.template.id,
        "prompt_sha": p.template.sha,
        "judge_id": p.judge.id,
        "judge_sha": p.judge.sha,
        "judge_model": cfg.preference.judge_model or cfg.endpoint.model,
        "params": r.params,
        "attempts": r.attempts,
        "judge_attempts": r.judge_attempts,
        "candidates": [
            {
                "model": c.model,
                "temperature": c.temperature,
                "seed": c.seed,
                "finish_reason": c.finish_reason,
                "completion_tokens": c.completion_tokens,
            }
            for c in r.candidates
        ],
        "ratings": r.ratings,
        "chosen_index": r.chosen_index,
        "rejected_index": r.rejected_index,
        "chosen_rating": r.ratings[r.chosen_index],
        "rejected_rating": r.ratings[r.rejected_index],
        "margin": r.margin,
        "rationale": r.rationale,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cache_key": r.key,
        "prompt": r.prompt,
        "chosen": chosen,
        "rejected": rejected,
    }
    return _document("synth:preference", f"{r.prompt}\n\n{chosen}", p, r.response.created_at, meta)


def _document(source: str, text: str, p: Planned, created_at: float, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "doc_id": make_doc_id(source, None, text),
        "source": source,
        "url": None,
        "title": None,
        "text": text,
        "lang": p.seed.lang or p.template.lang,
        "created_at": datetime.fromtimestamp(created_at, UTC),
        "meta": encode_meta(meta),
    }


def _unique_ids(rows: list[dict[str, Any]]) -> None:
    """Identical generations (same source and text) get derived ids, as repeats do at ingest."""
    seen: Counter[str] = Counter()
    for row in rows:
        n = seen[row["doc_id"]]
        seen[row["doc_id"]] += 1
        if n:
            row["doc_id"] = occurrence_id(row["doc_id"], n)


def _write(layout: CorpusLayout, cfg: SynthConfig, rows: list[dict[str, Any]]) -> list[ShardRecord]:
    target = layout.raw_dir("synth", cfg.job)
    if not rows:  # nothing valid this time: the job's earlier output must not linger either
        shutil.rmtree(target, ignore_errors=True)
        return []
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = ShardWriter(staging, BASE_SCHEMA)
    writer.write(pa.Table.from_pylist(rows, schema=BASE_SCHEMA))
    writer.close()
    counts = dict(zip([p.name for p in writer.paths], writer.rows, strict=True))
    replace_dir(staging, target)
    return [ShardRecord.of(target / name, "raw", n, layout.root) for name, n in sorted(counts.items())]


def run_job(cfg: SynthConfig, *, command: str = "", progress: bool = True) -> SynthResult:
    layout = CorpusLayout.at(cfg.root)
    templates = TemplateSet(cfg.templates_dir, cfg.tasks)
    seeds = select_seeds(layout, cfg.seeds)
    planned = plan(cfg, seeds, templates)
    start = {"command": command, "config": cfg.to_dict(), "config_hash": cfg.job_hash()}
    # an earlier run of this job still 'running' was killed: this run resumes it
    with catalog.run(layout, "synth", resumes={"job": cfg.job}, hint="rerun resumes from the cache", **start) as run:
        run_id = run.run_id
        stats = JobStats()
        cache = ResponseCache(layout.state / "synth" / "cache.sqlite")
        started = datetime.now(UTC)
        try:
            results = asyncio.run(_call_all(cfg, planned, cache, stats, progress))
            rows = [_row(p, r, cfg) for p, r in zip(planned, results, strict=True) if r.verdict.ok]
            _unique_ids(rows)
            rejects = [
                (
                    cfg.job,
                    run_id,
                    p.seed.doc_id,
                    p.item.chunk_index,
                    p.item.task,
                    p.template.id,
                    r.tries,
                    r.verdict.reason,
                    r.verdict.detail,
                    (r.response.content or "")[:2000] if r.response else None,
                )
                for p, r in zip(planned, results, strict=True)
                if not r.verdict.ok
            ]
            failure = _no_output_error(cfg, results) if planned and not rows else None
            # a job that produced nothing (endpoint down, every answer invalid) keeps the job's earlier output
            records = _write(layout, cfg, rows) if failure is None else []
            cost = stats.cost(cfg.prices)
            seconds = (datetime.now(UTC) - started).total_seconds()
            prefix = f"{layout.raw_dir('synth', cfg.job).relative_to(layout.root).as_posix()}/"
            usage = (
                run_id,
                cfg.job,
                cfg.endpoint.model,
                cfg.endpoint.base_url,
                len(planned),
                len(rows),
                len(rejects),
                stats.requests,
                stats.cache_hits,
                stats.transport_retries,
                stats.prompt_tokens,
                stats.completion_tokens,
                stats.cached_prompt_tokens,
                stats.cached_completion_tokens,
                cost,
                seconds,
            )
            with run.catalog() as cat:
                cat.ensure_table("synth_rejects", REJECTS_SCHEMA)
                cat.ensure_table("synth_usage", USAGE_SCHEMA, key=("run_id",))
                if failure is None:
                    cat.replace_raw(prefix, run_id, records)
                cat.delete_rows("synth_rejects", job=cfg.job)
                cat.append_rows("synth_rejects", rejects)
                cat.append_rows("synth_usage", [usage])
                cat.refresh_views()
                if failure is None:
                    run.finish(docs_in=len(planned), docs_out=len(rows), docs_rejected=len(rejects), cat=cat)
            if failure is not None:
                raise SynthError(failure)
        finally:
            cache.close()
    return SynthResult(
        run_id,
        len(planned),
        len(rows),
        Counter(r[7] for r in rejects),
        stats,
        cost,
        [r.path for r in records],
    )


def _no_output_error(cfg: SynthConfig, results: list[ItemResult | PreferenceResult]) -> str:
    """Why a job wrote no row, with the counts per reason and the first detail."""
    reasons = Counter(r.verdict.reason for r in results)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
    first = next(r for r in results if not r.verdict.ok)
    msg = f"no rows written: all {len(results)} prompts were rejected ({counts}); first: {first.verdict.detail}"
    if any(str(k).endswith("request_failed") for k in reasons):
        timeout = cfg.endpoint.request_timeout_s(cfg.generation.max_tokens)
        msg += (
            f"; is {cfg.endpoint.base_url} up, and fast enough for endpoint.timeout_s = {timeout:g} s "
            f"with max_tokens {cfg.generation.max_tokens}?"
        )
    return msg


def format_result(r: SynthResult, cfg: SynthConfig) -> str:
    s = r.stats
    lines = [
        f"run {r.run_id}: {r.items} prompts -> {r.rows} rows written, {sum(r.rejects.values())} rejected"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(r.rejects.items()))})" if r.rejects else ""),
        f"requests sent: {s.requests} (transport retries {s.transport_retries}"
        + (f": {json.dumps(dict(s.retry_reasons))}" if s.retry_reasons else "")
        + f"), cache hits: {s.cache_hits}",
        f"tokens this run: {s.prompt_tokens} prompt + {s.completion_tokens} completion"
        f"; from cache: {s.cached_prompt_tokens} + {s.cached_completion_tokens}",
    ]
    no_response = sum(n for k, n in r.rejects.items() if k.endswith("request_failed"))  # any stage's
    if no_response:
        lines.append(
            f"warning: {no_response} prompts got no response (request_failed); "
            "rerun the same command to try them again (answered prompts come from the cache)"
        )
    if cfg.prices.prompt or cfg.prices.completion:
        lines.append(f"cost this run: ${r.cost_usd:.4f}")
    lines.append(f"output: {', '.join(r.paths) or '(none)'} (source synth:<task>; picked up by pipelines.build)")
    return "\n".join(lines)
