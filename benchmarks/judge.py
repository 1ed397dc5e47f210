"""Is the preference judge worth anything? Pairs whose right answer is known, rated by the real judge.

For each of ``--docs`` documents of a corpus (default: the bundled legal sample, which no prompt
was tuned on; ``--input ../shared/data/zh_legal_dev.jsonl`` for real Chinese court text) the judge
template (`configs/prompts/judge.<lang>.yaml`, through `JudgeTemplate` and `parse_ratings`, the
code the job uses) sees the question "what does the text state?" and two answers: one *grounded*
(the document's own first sentence) and one *contradicting* (the first sentence of another
document in the same language: facts the text does not contain). Each pair is asked in both
orders. A judge worth using rates the grounded answer higher in both orders; one that always
prefers a position, or cannot produce ratings, is noise.

Starts the real ``python -m training.serve`` (bundled SmolLM2-135M-Instruct) unless ``--base-url``
names another OpenAI-compatible endpoint. Prints one table.

    python benchmarks/judge.py [--docs 12] [--input FILE.jsonl] [--base-url http://host/v1 --model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth import start_server

from pipelines.synth.preference import parse_ratings
from pipelines.synth.templates import TemplateSet, template_lang

ROOT = Path(__file__).resolve().parents[1]
QUESTION = {"en": "What does the text state?", "zh": "这段文本说明了什么？"}
SENTENCE = re.compile(r".+?[.!?。！？](?=\s|$)|.+$", re.S)


def first_sentence(text: str) -> str:
    m = SENTENCE.match(" ".join(text.split()))
    return (m.group(0) if m else text)[:300].strip()


def load_docs(path: Path, n: int) -> list[dict]:
    docs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        text = r.get("text") or ""
        if 200 <= len(text) <= 3000 and len(first_sentence(text)) >= 30:
            docs.append({"text": text[:1200], "lang": template_lang(r.get("lang") or "en")})
    per_lang = {lang: [d for d in docs if d["lang"] == lang] for lang in ("en", "zh")}
    picked = []
    for i in range(n):  # alternate languages where both exist
        pool = per_lang["en" if i % 2 == 0 and per_lang["en"] else "zh"] or per_lang["en"]
        if len(pool) > i // 2 + 1:
            picked.append((pool[i // 2], pool[i // 2 + 1]))  # the next document supplies the wrong answer
    return picked


async def judge_all(client: AsyncOpenAI, model: str, pairs: list, max_tokens: int) -> list[dict]:
    templates = TemplateSet(ROOT / "configs" / "prompts", ["preference"])

    async def one(doc: dict, other: dict, grounded_first: bool) -> dict:
        judge = templates.judge(doc["lang"])
        good, bad = first_sentence(doc["text"]), first_sentence(other["text"])
        answers = [good, bad] if grounded_first else [bad, good]
        schema = judge.schema(2)
        r = await client.chat.completions.create(
            model=model,
            messages=judge.messages(doc["text"], QUESTION[doc["lang"]], answers),
            temperature=0.0,
            max_tokens=max_tokens,
            response_format={"type": "json_schema", "json_schema": {"name": "judge", "schema": schema, "strict": True}},
        )
        content = r.choices[0].message.content
        v = parse_ratings(schema, 2, content, r.choices[0].finish_reason)
        ratings = v.answer["ratings"] if v.ok and v.answer else None
        good_i = 0 if grounded_first else 1
        return {"lang": doc["lang"], "ratings": ratings, "good": good_i, "content": content}

    jobs = [one(d, o, first) for d, o in pairs for first in (True, False)]
    return await asyncio.gather(*jobs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=12)
    p.add_argument("--input", type=Path, default=ROOT / "samples" / "legal_sample.jsonl")
    p.add_argument("--base-url")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--show", action="store_true", help="print every judge answer")
    args = p.parse_args()
    proc = None
    base_url = args.base_url
    if base_url is None:
        proc, base = start_server(8, "--request-timeout-s", "3600")  # a loaded CPU takes minutes per batch
        base_url = f"{base}/v1"
    try:
        client = AsyncOpenAI(base_url=base_url, api_key="no-key", timeout=1800, max_retries=0)
        results = asyncio.run(judge_all(client, args.model, load_docs(args.input, args.docs), args.max_tokens))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    if args.show:
        for r in results:
            print(json.dumps(r, ensure_ascii=False))
    print(
        f"| judge {args.model}, {args.input.name} | lang | asked | ratings parsed | grounded higher | tie | "
        "grounded lower | answer 1 higher (position) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for lang in ("en", "zh", "all"):
        rs = [r for r in results if lang in ("all", r["lang"])]
        if not rs:
            continue
        ok = [r for r in rs if r["ratings"]]
        higher = sum(r["ratings"][r["good"]] > r["ratings"][1 - r["good"]] for r in ok)
        tie = sum(r["ratings"][0] == r["ratings"][1] for r in ok)
        first = sum(r["ratings"][0] > r["ratings"][1] for r in ok)
        n = max(1, len(ok))
        print(
            f"| | {lang} | {len(rs)} | {len(ok)} ({len(ok) / len(rs):.0%}) | {higher / n:.0%} | {tie / n:.0%} | "
            f"{(len(ok) - higher - tie) / n:.0%} | {first / n:.0%} |"
        )


if __name__ == "__main__":
    main()
