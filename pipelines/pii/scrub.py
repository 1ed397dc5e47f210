"""What the text of a reject row may keep: ``rejects_text: redacted | none | raw``.

A document dropped before ``pii_redact`` (a duplicate, too short, low quality) is written to the
rejects store with its text, so without this every raw e-mail and ID number of those documents
would sit in ``rejects/`` and the catalog. The build applies one policy to every reject row,
whatever step wrote it, in the shard task that writes them (`pipelines.tasks`):

* ``redacted`` (default): structured PII (the recognizers of `pipelines.pii.recognizers`, no
  NER, no presidio) replaced by typed placeholders; the rest of the text stays for audits;
* ``none``: no text at all (null);
* ``raw``: the text as the step saw it (the audit's ``pii_left`` will report what it holds).

Kept light on purpose (regexes and validators only, imported when a text is scrubbed): the
config and every step's tasks import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from pipelines.pii.recognizers import Finding

REJECTS_TEXT_MODES = ("redacted", "none", "raw")
DEFAULT_REJECTS_TEXT = "redacted"


def replace_spans(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each (non-overlapping, sorted) finding replaced by ``<ENTITY>``."""
    out, pos = [], 0
    for f in findings:
        out.append(text[pos : f.start])
        out.append(f"<{f.entity}>")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def scrub_structured(texts: Sequence[str]) -> list[str]:
    """Every text with its structured PII replaced by typed placeholders (one shard-wide scan)."""
    from pipelines.pii.recognizers import SPECS, resolve_overlaps, scan_texts

    found = scan_texts(texts, SPECS)
    return [replace_spans(t, resolve_overlaps(fs)) if fs else t for t, fs in zip(texts, found, strict=True)]


def check_rejects_text(mode: str) -> str:
    if mode not in REJECTS_TEXT_MODES:
        raise ValueError(f"rejects_text must be one of {', '.join(REJECTS_TEXT_MODES)}, got {mode!r}")
    return mode


def apply_rejects_text(rejects: pl.DataFrame, mode: str) -> pl.DataFrame:
    """Reject rows with their ``text`` column as the policy says (other columns untouched)."""
    check_rejects_text(mode)
    if mode == "raw" or rejects.height == 0:
        return rejects
    if mode == "none":
        return rejects.with_columns(pl.lit(None, dtype=pl.String).alias("text"))
    texts = rejects.get_column("text").to_list()
    present = [i for i, t in enumerate(texts) if t]
    for i, t in zip(present, scrub_structured([texts[i] for i in present]), strict=True):
        texts[i] = t
    return rejects.with_columns(pl.Series("text", texts, dtype=pl.String))
