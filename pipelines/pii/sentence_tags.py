"""NER tags of each distinct candidate sentence once per build, not once per worker.

spaCy and LAC are most of `pii_redact`'s cost, and their tags depend on the sentence alone, so
each process caches them (`gate.SentenceCache`). Caches are per process, though: with N
workers every sentence that recurs across documents (court boilerplate, template text) is tagged
by each worker that meets it. On the 40 MB benchmark corpus, two workers' caches held 13-16%
(English) and 16-23% (Chinese) more distinct sentences than one cache (`docs/SCALING.md`): that
was the extra CPU of a 2-worker build. So `pii_redact` is a global step: ``scan`` lists each
shard's candidate sentences (`ner_sentences`), ``reduce`` tags the distinct ones of a hash
partition (`tag_sentences`), and ``process`` seeds the caches with its piece's tags (`seed_caches`)
before the unchanged per-document analysis, which then finds every sentence tagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipelines.pii.engine import DEFAULT_MODEL

TAG = pl.Struct({"label": pl.String, "start": pl.Int32, "end": pl.Int32})
SCHEMA = {"lang": pl.String, "sentence": pl.String}
TAGS_SCHEMA = {**SCHEMA, "tags": pl.List(TAG)}


def ner_sentences(
    texts: Sequence[str], ner_langs: Sequence[str | None], *, gate: bool = True, chunk_chars: int = 10_000
) -> pl.DataFrame:
    """The distinct (lang, sentence) pairs NER will look at in ``texts``: exactly the keys
    `engine.spacy_entities` and `zh.lac_tokens` look up."""
    from pipelines.pii.engine import candidate_spans
    from pipelines.pii.zh import candidate_pieces

    langs, sentences = [], []
    en = [t for t, lang in zip(texts, ner_langs, strict=True) if lang == "en"]
    for text, spans in zip(en, candidate_spans(en, gate=gate, chunk_chars=chunk_chars), strict=True):
        sentences.extend(text[s:e] for s, e in spans)
        langs.extend(["en"] * len(spans))
    zh = [t for t, lang in zip(texts, ner_langs, strict=True) if lang == "zh"]
    pieces = candidate_pieces(zh, gate=gate)
    sentences.extend(zh[i][s:e] for i, s, e in pieces)
    langs.extend(["zh"] * len(pieces))
    return pl.DataFrame({"lang": langs, "sentence": sentences}, schema=SCHEMA).unique(maintain_order=True)


def tag_sentences(rows: pl.DataFrame, *, model: str = DEFAULT_MODEL, batch_size: int = 128) -> pl.DataFrame:
    """``rows`` (lang, sentence), distinct and sorted, with their tags: spaCy's entities (label,
    start, end) for English, LAC's tokens (tag, start, end) for Chinese. Through this process's
    caches, which already hold what earlier steps tagged when they redacted their rejects (an
    exact duplicate's sentences are its kept twin's)."""
    from pipelines.pii.engine import _SPACY_CACHES, _spacy_ents
    from pipelines.pii.gate import SentenceCache
    from pipelines.pii.zh import lac_tokens

    rows = rows.unique().sort("lang", "sentence")
    tags: list[list[dict[str, object]]] = []
    for lang in ("en", "zh"):
        sentences = rows.filter(pl.col("lang") == lang).get_column("sentence").to_list()
        if not sentences:
            continue
        if lang == "en":
            cache = _SPACY_CACHES.setdefault(model, SentenceCache())
            found = [list(ents) for ents in cache.get_many(sentences, _spacy_ents(model, batch_size))]
        else:
            found = [[(tag, s, e) for s, e, tag in toks] for toks in lac_tokens(sentences)]
        tags.extend([{"label": label, "start": s, "end": e} for label, s, e in one] for one in found)
    rows = rows.filter(pl.col("lang").is_in(["en", "zh"]))
    return rows.with_columns(pl.Series("tags", tags, dtype=pl.List(TAG)))


def seed_caches(tags: pl.DataFrame, *, model: str = DEFAULT_MODEL) -> None:
    """Put ``tags`` (a `tag_sentences` table) into this process's spaCy and LAC caches, replacing
    what they held, so that the analysis of the piece they were selected for tags nothing."""
    from pipelines.pii.engine import _SPACY_CACHES
    from pipelines.pii.gate import SentenceCache
    from pipelines.pii.zh import _CACHE

    en: dict[str, list[tuple[str, int, int]]] = {}
    zh: dict[str, list[tuple[int, int, str]]] = {}
    for lang, sentence, found in tags.select("lang", "sentence", "tags").iter_rows():
        if lang == "en":
            en[sentence] = [(t["label"], t["start"], t["end"]) for t in found]
        else:
            zh[sentence] = [(t["start"], t["end"], t["label"]) for t in found]
    _SPACY_CACHES.setdefault(model, SentenceCache()).seed(en)
    _CACHE.seed(zh)
