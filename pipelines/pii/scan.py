"""Second-pass scanner for audits: is any structured PII left in these texts?

Used by the corpus audit on final shards. It runs the same structured recognizers as
`pii_redact` (no NER: names cannot be checked without a model and are not "structured"), over
all texts at once, and reports types and offsets, never values.
"""

from __future__ import annotations

from pipelines.pii.recognizers import SPECS, resolve_overlaps, scan_texts


def scan_structured(texts: list[str]) -> list[list[tuple[str, int, int]]]:
    """For each text, (entity type, start, end) of every structured-PII finding (code points)."""
    return [[(f.entity, f.start, f.end) for f in resolve_overlaps(fs)] for fs in scan_texts(texts, SPECS)]
