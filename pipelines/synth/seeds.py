"""Seed documents picked from the catalog with DuckDB SQL.

``seeds.where`` filters the ``documents`` view (final shards: ``source``, ``lang``, ``bucket``,
``split``, ``quality_score`` ...) or ``raw_documents``; rows written by synthesis jobs (``source``
``synth:*``) are left out unless ``seeds.include_synthetic`` is set. ``seeds.sql`` replaces the
whole query (and is taken as written).
The sample is ordered by ``md5(doc_id || seed)``: a pseudo-random order that depends only on the
ids and the seed, so the same catalog and config pick the same seeds on any machine, and a
larger sample is a superset of a smaller one.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from corpus.catalog import Catalog
from corpus.store import CorpusLayout
from pipelines.synth.client import SynthError
from pipelines.synth.config import SeedsConfig


@dataclass(frozen=True)
class SeedDoc:
    doc_id: str
    text: str
    lang: str | None
    url: str | None
    source: str | None


def seed_query(seeds: SeedsConfig) -> tuple[str, list[object]]:
    base = seeds.sql or f"SELECT * FROM {seeds.table}" + (f" WHERE ({seeds.where})" if seeds.where else "")
    if not seeds.sql and not seeds.include_synthetic:  # generating from generated text compounds a model's errors
        base = f"SELECT * FROM ({base}) AS picked WHERE NOT coalesce(starts_with(source, 'synth:'), false)"
    sql = (
        "SELECT doc_id, text, "
        "COLUMNS(lambda c: c IN ('lang', 'url', 'source')) "
        f"FROM ({base}) AS seeds ORDER BY md5(doc_id || ?::VARCHAR), doc_id"
    )
    params: list[object] = [str(seeds.seed)]
    if seeds.sample is not None:
        sql += " LIMIT ?"
        params.append(seeds.sample)
    return sql, params


def select_seeds(layout: CorpusLayout, seeds: SeedsConfig) -> list[SeedDoc]:
    if not layout.catalog.exists():
        raise SynthError(f"{layout.catalog}: no catalog; build or import a corpus first (python -m pipelines.build)")
    sql, params = seed_query(seeds)
    with Catalog.open(layout, read_only=True) as cat:
        try:
            names, rows = cat.query(sql, params)
        except duckdb.Error as exc:
            raise SynthError(f"seed selection failed: {exc}\n  query: {sql}") from None
    docs = []
    for row in rows:
        r = dict(zip(names, row, strict=True))
        if r["doc_id"] is None or r["text"] is None:
            raise SynthError(f"seed selection returned a row without doc_id/text: {str(r)[:200]}")
        docs.append(SeedDoc(r["doc_id"], r["text"], r.get("lang"), r.get("url"), r.get("source")))
    if not docs:
        raise SynthError(f"no seed documents match: {sql} (seed={seeds.seed}); is the corpus built?")
    return docs
