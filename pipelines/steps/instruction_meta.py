"""Keep the text fields a synthesised row carries in ``meta`` in step with its ``text``.

Synthesised rows carry the parts a trainer reads separately in ``meta``: an instruction row its
``prompt`` and ``response`` (the loss is masked to the response), a preference row its ``prompt``,
``chosen`` and ``rejected`` (DPO) and the judge's ``rationale``; ``text`` holds their concatenation.
A step that rewrites ``text`` (normalisation, PII redaction) must rewrite these fields the same
way, or the model would be trained on uncleaned copies. `META_TEXT_FIELDS` is the one list of
such fields; a step that rewrites text declares ``rewrites_text`` and the runner calls
`rewrite_parts` with the step's own transform (`pipelines.tasks.ProcessTask`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import polars as pl

# Every meta field holding text derived from (or shown next to) the document: rewritten like text.
META_TEXT_FIELDS = ("prompt", "response", "chosen", "rejected", "rationale")
_MARKERS = tuple(f'"{k}"' for k in META_TEXT_FIELDS)


def _parts(meta: str | None) -> tuple[dict[str, Any], list[str]] | None:
    """The decoded meta and the names of its text fields present as strings, or None."""
    if not meta or not any(m in meta for m in _MARKERS):  # cheap pre-check: most rows have none
        return None
    try:
        data = json.loads(meta)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    keys = [k for k in META_TEXT_FIELDS if isinstance(data.get(k), str)]
    return (data, keys) if keys else None


def has_meta_text(df: pl.DataFrame) -> pl.Series:
    """Which rows of ``df`` hold `META_TEXT_FIELDS` strings in their ``meta``."""
    if "meta" not in df.columns:
        return pl.Series([False] * df.height, dtype=pl.Boolean)
    return pl.Series([_parts(m) is not None for m in df.get_column("meta").to_list()], dtype=pl.Boolean)


def rewrite_parts(df: pl.DataFrame, transform: Callable[[list[str], list[int]], list[str]]) -> pl.DataFrame:
    """Apply ``transform(texts, row_indices)`` to every `META_TEXT_FIELDS` string in every row's
    ``meta`` (one call for the whole frame, ``row_indices[j]`` owning ``texts[j]``) and store the
    results back."""
    if "meta" not in df.columns or df.height == 0:
        return df
    metas = df.get_column("meta").to_list()
    rows = [(i, p) for i, m in enumerate(metas) if (p := _parts(m)) is not None]
    if not rows:
        return df
    texts = [data[k] for _, (data, keys) in rows for k in keys]
    owners = [i for i, (_, keys) in rows for _ in keys]
    out = transform(texts, owners)
    if len(out) != len(texts):
        raise ValueError(f"a meta text transform returned {len(out)} texts for {len(texts)}")
    it = iter(out)
    for i, (data, keys) in rows:
        for k in keys:
            data[k] = next(it)
        metas[i] = json.dumps(data, ensure_ascii=False, sort_keys=True)
    return df.with_columns(pl.Series("meta", metas, dtype=df.schema["meta"]))
