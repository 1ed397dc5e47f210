"""The same recognizers inside an ordinary presidio ``AnalyzerEngine``, routed by language.

For ad-hoc use and for checking the batched shard analyzer against presidio's per-document loop
(and for benchmarks against presidio's default). Importing this module imports presidio, and
with it transformers and torch (its Hugging Face pipe): the build's hot path never does (see
`engine`).

* ``SpecRecognizer``: one structured `Spec` as a presidio ``PatternRecognizer`` (look-arounds,
  validation, context veto/boost exactly as in the shard scanner);
* ``ChineseRecognizer``: LAC + legal-context patterns (`zh.zh_findings`) as an
  ``EntityRecognizer`` for language ``zh``; it needs no NLP artifacts, so the zh analyzer runs
  on presidio's ``NoOpNlpEngine``;
* ``EnglishNameRecognizer``: the name-list and cue recognizer of `en` for language ``en``, next
  to presidio's ``SpacyRecognizer`` on the NER-only spaCy engine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpEngineProvider, NoOpNlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from pipelines.pii.engine import DEFAULT_MODEL, LABEL_MAP, NER_SCORE, spacy_ner
from pipelines.pii.entities import NER_ENTITIES
from pipelines.pii.offline import use_bundled_suffix_list
from pipelines.pii.recognizers import Finding, Spec, iter_matches, specs_for

use_bundled_suffix_list()
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def _result(f: Finding, rec_id: str) -> RecognizerResult:
    return RecognizerResult(
        f.entity,
        f.start,
        f.end,
        f.score,
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: f.recognizer,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: rec_id,
        },
    )


class SpecRecognizer(PatternRecognizer):
    def __init__(self, spec: Spec, language: str = "en") -> None:
        self.spec = spec
        super().__init__(
            supported_entity=spec.entity,
            name=spec.name,
            supported_language=language,
            patterns=[Pattern(spec.name, spec.pattern, spec.score)],
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # type: ignore[no-untyped-def]
        return [_result(f, self.id) for f in iter_matches(self.spec, text) if f.entity in entities]


class ChineseRecognizer(EntityRecognizer):
    def __init__(self) -> None:
        super().__init__(supported_entities=list(NER_ENTITIES), name="zh_lac_legal", supported_language="zh")

    def load(self) -> None:
        from pipelines.pii.lac import tagger

        tagger()

    def analyze(self, text, entities, nlp_artifacts=None):  # type: ignore[no-untyped-def]
        from pipelines.pii.zh import zh_findings

        return [_result(f, self.id) for f in zh_findings([text])[0] if f.entity in entities]


class EnglishNameRecognizer(EntityRecognizer):
    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="en_names", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):  # type: ignore[no-untyped-def]
        from pipelines.pii.en import en_findings

        return [_result(f, self.id) for f in en_findings([text])[0] if f.entity in entities]


class NerOnlySpacyNlpEngine(SpacyNlpEngine):
    """presidio's spaCy engine on the NER-only pipeline of `engine.spacy_ner`."""

    def load(self) -> None:
        self.nlp = {m["lang_code"]: spacy_ner(m["model_name"]) for m in self.models}


def recognizers(language: str, entities: Sequence[str] | None = None) -> list[Any]:
    recs: list[Any] = [SpecRecognizer(s, language) for s in specs_for(entities)]
    if language == "zh":
        recs.append(ChineseRecognizer())
    else:
        recs.append(SpacyRecognizer(supported_language="en", supported_entities=["PERSON", "LOCATION"]))
        recs.append(EnglishNameRecognizer())
    return recs


def build_analyzer(language: str = "en", model: str = DEFAULT_MODEL) -> AnalyzerEngine:
    """A presidio ``AnalyzerEngine`` for one language with this project's recognizers."""
    registry = RecognizerRegistry(supported_languages=[language])
    for rec in recognizers(language):
        registry.add_recognizer(rec)
    if language == "zh":
        nlp_engine: Any = NoOpNlpEngine(models=[{"lang_code": "zh", "model_name": "none"}])
        nlp_engine.load()
    else:
        nlp_engine = NerOnlySpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": model}],
            ner_model_configuration=NerModelConfiguration(
                model_to_presidio_entity_mapping=LABEL_MAP, low_score_entity_names=[], default_score=NER_SCORE
            ),
        )
        nlp_engine.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


def presidio_default_analyzer(model: str = DEFAULT_MODEL) -> AnalyzerEngine:
    """presidio's documented default setup (its recognizers, full spaCy pipeline) with the
    installed small English model; tldextract kept offline."""
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
