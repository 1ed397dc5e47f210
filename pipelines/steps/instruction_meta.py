"""Keep an instruction row's ``meta.prompt`` / ``meta.response`` in step with its ``text``.

Synthesised rows carry the prompt and the response separately in ``meta`` (the trainer masks
the loss to the response) and their concatenation in ``text``. A step that rewrites ``text``
(normalisation, PII redaction) must rewrite both parts the same way, or the model would be
trained on the un-cleaned copies. Steps call `rewrite_parts` with their own text transform.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import polars as pl

PARTS = ("prompt", "response")


def _parts(meta: str | None) -> dict[str, Any] | None:
    if not meta or '"response"' not in meta:  # cheap pre-check: most rows are not instructions
        return None
    try:
        data = json.loads(meta)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in PARTS):
        return data
    return None


def rewrite_parts(df: pl.DataFrame, transform: Callable[[list[str], list[int]], list[str]]) -> pl.DataFrame:
    """Apply ``transform(texts, row_indices)`` to the prompt and response of every instruction
    row (one call, prompts then responses) and store the results back in ``meta``."""
    if "meta" not in df.columns or df.height == 0:
        return df
    metas = df.get_column("meta").to_list()
    rows = [(i, d) for i, m in enumerate(metas) if (d := _parts(m)) is not None]
    if not rows:
        return df
    texts = [d[k] for k in PARTS for _, d in rows]
    owners = [i for _ in PARTS for i, _ in rows]
    out = transform(texts, owners)
    n = len(rows)
    for j, (i, d) in enumerate(rows):
        d["prompt"], d["response"] = out[j], out[n + j]
        metas[i] = json.dumps(d, ensure_ascii=False, sort_keys=True)
    return df.with_columns(pl.Series("meta", metas, dtype=df.schema["meta"]))
