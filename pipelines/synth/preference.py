"""Task ``preference``: chosen/rejected pairs for DPO, judged against the seed document.

One work item runs three stages through the same cached, rate-limited callers as every other
task, so a rerun replays them from the cache and a killed job resumes:

1. **question**: the ``preference.<lang>.yaml`` template turns a chunk into a prompt (``row.prompt``,
   by default the question with the chunk inlined, so an answer can be checked against it);
2. **candidates**: one free-text answer per ``preference.candidates`` entry (its temperature, and
   optionally another model or endpoint), each with its own seed, under ``answer_system``;
3. **judge**: ``judge.<lang>.yaml`` shows the judge the seed chunk, the question and the numbered
   answers, and asks for a rationale plus a 1-10 rating per answer (string fields, so servers that
   guide only strings can force the shape); a rating that does not parse is retried like any
   invalid answer.

The best-rated candidate is ``chosen`` and the worst ``rejected`` (ties: the earlier one); a pair
whose rating margin is below ``preference.min_margin`` is rejected (``margin_below_min``), and so
is one whose candidates are identical (``identical_candidates``, before the judge is asked).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pipelines.synth.cache import CachedResponse
from pipelines.synth.client import EndpointCaller, ItemResult, WorkItem
from pipelines.synth.config import SynthConfig
from pipelines.synth.templates import JudgeTemplate, PromptTemplate
from pipelines.synth.validate import Verdict, validate_response

RATING = re.compile(r"\s*(10|[1-9])(?:\s*(?:/\s*10)?\s*)$")
CANDIDATE_SEED_STRIDE = 1000  # candidate i samples with seed + 1000 i (+ attempt), never a neighbour's seed


@dataclass
class Candidate:
    text: str
    model: str
    temperature: float
    seed: int
    finish_reason: str | None
    completion_tokens: int


@dataclass
class PreferenceResult:
    """Duck-types `ItemResult` for the job (verdict, response, tries, attempts)."""

    item: WorkItem
    verdict: Verdict  # ok: the question stage's answer
    response: CachedResponse | None  # the last response received (for a reject's text)
    tries: int
    attempts: int  # question generations tried
    key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)
    rationale: str = ""
    judge_attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def chosen_index(self) -> int:
        return max(range(len(self.ratings)), key=lambda i: (self.ratings[i], -i))

    @property
    def rejected_index(self) -> int:
        return min(range(len(self.ratings)), key=lambda i: (self.ratings[i], i))

    @property
    def margin(self) -> int:
        return self.ratings[self.chosen_index] - self.ratings[self.rejected_index]


def parse_ratings(schema: dict[str, Any], n: int, content: str | None, finish_reason: str | None) -> Verdict:
    """The judge's answer: schema-valid JSON whose ``rating_i`` are whole numbers 1-10."""
    verdict = validate_response(content, schema, finish_reason)
    if not verdict.ok:
        return verdict
    assert verdict.answer is not None
    ratings = []
    for i in range(1, n + 1):
        raw = str(verdict.answer[f"rating_{i}"])
        m = RATING.match(raw)
        if not m:
            return Verdict(None, "unparsable_rating", f"rating_{i} = {raw!r} is not a whole number 1-10")
        ratings.append(int(m.group(1)))
    return Verdict({"rationale": str(verdict.answer["rationale"]).strip(), "ratings": ratings})


def _failed(result: PreferenceResult, stage: str, r: ItemResult) -> PreferenceResult:
    result.verdict = Verdict(None, f"{stage}_{r.verdict.reason}", r.verdict.detail)
    result.response = r.response or result.response
    return result


async def run_preference(
    item: WorkItem,
    chunk: str,
    template: PromptTemplate,
    judge: JudgeTemplate,
    question_caller: EndpointCaller,
    candidate_callers: list[EndpointCaller],
    judge_caller: EndpointCaller,
    cfg: SynthConfig,
) -> PreferenceResult:
    pref = cfg.preference
    q = await question_caller.run_item(item)
    result = PreferenceResult(item, q.verdict, q.response, q.tries, q.attempts, q.key, q.params)
    if not q.verdict.ok:
        return _failed(result, "question", q)
    assert q.verdict.answer is not None and q.response is not None
    result.prompt_tokens, result.completion_tokens = q.response.prompt_tokens, q.response.completion_tokens
    prompt, _ = template.to_row(q.verdict.answer, chunk)
    result.prompt = prompt
    assert template.answer_system is not None
    asked = [{"role": "system", "content": template.answer_system}, {"role": "user", "content": prompt}]
    max_tokens = pref.answer_max_tokens or cfg.generation.max_tokens
    items = [
        WorkItem(
            item.index,
            item.seed_doc_id,
            item.chunk_index,
            "candidate",
            asked,
            None,
            params={
                "temperature": c.temperature,
                "max_tokens": max_tokens,
                "seed": cfg.generation.seed + CANDIDATE_SEED_STRIDE * i,
            },
        )
        for i, c in enumerate(pref.candidates)
    ]
    answers = await asyncio.gather(*(caller.run_item(it) for caller, it in zip(candidate_callers, items, strict=True)))
    for a in answers:
        result.tries += a.tries
        if a.response is not None:
            result.prompt_tokens += a.response.prompt_tokens
            result.completion_tokens += a.response.completion_tokens
    for a in answers:
        if not a.verdict.ok:
            return _failed(result, "candidate", a)
    result.candidates = [
        Candidate(
            a.verdict.answer["text"],  # type: ignore[index]
            caller.model,
            a.params["temperature"],
            a.params["seed"],
            a.response.finish_reason if a.response else None,
            a.response.completion_tokens if a.response else 0,
        )
        for a, caller in zip(answers, candidate_callers, strict=True)
    ]
    texts = [c.text for c in result.candidates]
    result.response = answers[-1].response
    if len(set(texts)) == 1:
        result.verdict = Verdict(None, "identical_candidates", f"all {len(texts)} candidates answered the same")
        return result
    # the judge sees the chunk once: where the prompt inlines it, it is referred to instead
    shown_prompt = prompt.replace(chunk, "[the text above]") if chunk in prompt else prompt
    schema = judge.schema(len(texts))
    judge_item = WorkItem(
        item.index,
        item.seed_doc_id,
        item.chunk_index,
        "judge",
        judge.messages(chunk, shown_prompt, texts),
        schema,
        params={"temperature": 0.0, "max_tokens": pref.judge_max_tokens},
        check=partial(parse_ratings, schema, len(texts)),
    )
    j = await judge_caller.run_item(judge_item)
    result.tries += j.tries
    result.judge_attempts = j.attempts
    if j.response is not None:
        result.response = j.response
        result.prompt_tokens += j.response.prompt_tokens
        result.completion_tokens += j.response.completion_tokens
    if not j.verdict.ok:
        return _failed(result, "judge", j)
    assert j.verdict.answer is not None
    result.ratings = list(j.verdict.answer["ratings"])
    result.rationale = j.verdict.answer["rationale"]
    if result.margin < pref.min_margin:
        result.verdict = Verdict(
            None, "margin_below_min", f"ratings {result.ratings}: margin {result.margin} < min_margin {pref.min_margin}"
        )
    return result
