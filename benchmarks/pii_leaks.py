"""Labelled values left after a whole build, in the final documents and in the rejects.

    nice python benchmarks/pii_leaks.py [--docs 1000] [--dup 0.1] [--work /tmp/pii-leaks] [--show N]

`pipelines.pii.evaluate` checks the analyzer on one text at a time; this checks the build: the
labelled documents of `pipelines.pii.evaluate` (the Faker templates, English and Chinese, and the
English varied set's holdout part), a tenth of them repeated so that `exact_dedup` rejects a copy
(a document rejected *before* `pii_redact`), are imported and built with the steps of
``configs/default.yaml`` into a fresh root. Then, per labelled value (structured types, PERSON,
ADDRESS; 2+ characters) and per place its document ended up (final shards, rejects), whether the
value is still in that document's text. Under the default ``rejects_text: redacted`` a document
rejected before ``pii_redact`` is redacted by that step (NER included) before its reject row is
written; ``--rejects-text structured`` shows the cheaper structured-only scrub, which leaves
names and addresses there; ``none`` stores no text.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.pii.evalset import generate
from pipelines.pii.evaluate import add_varied_option, varied_docs

REPO = Path(__file__).resolve().parents[1]
CHECKED = {"EMAIL", "PHONE", "PRC_ID", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "PERSON", "ADDRESS"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1000, help="Faker template documents (en + zh)")
    p.add_argument("--dup", type=float, default=0.1, help="share of documents imported twice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="where the root goes (default: a temporary directory)")
    p.add_argument("--rejects-text", default="redacted", choices=["redacted", "structured", "none", "raw"])
    add_varied_option(p)
    p.add_argument("--show", type=int, default=0, help="print up to N values left per (documents, where, type)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pii-leaks-"))
    work.mkdir(parents=True, exist_ok=True)
    docs = [(f"faker-{d.lang}", d) for d in generate(args.docs, args.seed)] + [
        ("en-varied", d) for d in varied_docs("holdout", args.varied)
    ]
    rng = random.Random(args.seed)
    source = work / "labelled.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for i, (_, d) in enumerate(docs):
            row = json.dumps({"text": d.text, "url": f"https://labelled.example/{i}", "lang": d.lang})
            f.write(row + "\n")
            if rng.random() < args.dup:
                f.write(row + "\n")
    cfg = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    cfg.update(root=str(work / "root"), sources=[{"path": str(source), "source": "import:labelled"}])
    cfg["rejects_text"] = args.rejects_text
    config = work / "build.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.build", "--config", str(config), "--quiet"], cwd=REPO, capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"error: the build failed:\n{done.stderr[-3000:]}")
    root = work / "root"
    con = duckdb.connect()
    final = con.execute(f"SELECT url, text FROM read_parquet('{root}/shards/**/*.parquet')").fetchall()
    rejected = con.execute(
        f"SELECT url, step, coalesce(text, '') FROM read_parquet('{root}/rejects/**/*.parquet', union_by_name=true)"
    ).fetchall()
    texts: dict[str, list[tuple[str, str]]] = {}
    for url, text in final:
        texts.setdefault(url, []).append(("documents", text))
    for url, step, text in rejected:
        texts.setdefault(url, []).append((f"rejects ({step})", text))
    values, left = Counter(), Counter()
    shown: dict[tuple[str, str, str], list[str]] = {}
    for i, (group, d) in enumerate(docs):
        for where, out in texts.get(f"https://labelled.example/{i}", []):
            for entity, s, e in d.spans:
                value = d.text[s:e]
                if entity not in CHECKED or len(value.strip()) < 2:
                    continue
                kind = "structured" if entity not in ("PERSON", "ADDRESS") else entity
                values[(group, where, kind)] += 1
                left[(group, where, kind)] += value in out
                if value in out:
                    shown.setdefault((group, where, kind), []).append(f"{value!r} in {_context(d.text, s, e)!r}")
    print(f"{len(docs)} labelled documents ({args.docs} Faker, {len(docs) - args.docs} varied holdout), "
          f"{sum(1 for _ in source.open())} imported; {len(final)} in final shards, {len(rejected)} rejects; "
          f"rejects_text: {args.rejects_text}")  # fmt: skip
    print(f"{'documents':<10} {'where':<32} {'values':<11} {'checked':>8} {'left':>6}")
    for key in sorted(values):
        print(f"{key[0]:<10} {key[1]:<32} {key[2]:<11} {values[key]:>8} {left[key]:>6}")
    for key, lines in sorted(shown.items()) if args.show else ():
        print(f"-- left in {key[0]} {key[1]} {key[2]}: {len(lines)}")
        for line in lines[: args.show]:
            print(f"   {line}")
    return 0


def _context(text: str, start: int, end: int, width: int = 50) -> str:
    return (text[max(0, start - width) : start] + "[[" + text[start:end] + "]]" + text[end : end + width]).replace(
        "\n", " | "
    )


if __name__ == "__main__":
    sys.exit(main())
