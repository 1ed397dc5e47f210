"""The step registry: config names map to step classes here, and only here."""

from __future__ import annotations

from common.config import ConfigError
from pipelines.step import Step
from pipelines.steps.content_filter import ContentFilter
from pipelines.steps.curriculum import Curriculum
from pipelines.steps.decontaminate import Decontaminate
from pipelines.steps.exact_dedup import ExactDedup
from pipelines.steps.length_filter import LengthFilter
from pipelines.steps.minhash_dedup import MinHashDedup
from pipelines.steps.normalize import Normalize
from pipelines.steps.pii_redact import PiiRedact
from pipelines.steps.quality import Quality
from pipelines.steps.split import Split

__all__ = [
    "REGISTRY",
    "ContentFilter",
    "Curriculum",
    "Decontaminate",
    "ExactDedup",
    "LengthFilter",
    "MinHashDedup",
    "Normalize",
    "PiiRedact",
    "Quality",
    "Split",
    "step_class",
]

REGISTRY: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (
        Normalize,
        LengthFilter,
        ExactDedup,
        MinHashDedup,
        PiiRedact,
        Split,
        Quality,
        Curriculum,
        ContentFilter,
        Decontaminate,
    )
}


def step_class(name: str, *, where: str) -> type[Step]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"{where}: unknown step {name!r}; known steps: {', '.join(sorted(REGISTRY))}") from None
