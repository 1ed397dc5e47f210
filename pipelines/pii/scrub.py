"""What the text of a reject row may keep: ``rejects_text: redacted | structured | none | raw``.

A document dropped before ``pii_redact`` (a duplicate, too short, low quality) is written to the
rejects store with its text, so without this every raw name, e-mail and ID number of those
documents would sit in ``rejects/`` and the catalog. The build gives each step's tasks one
`RejectsPolicy`, applied to every reject row in the shard task that writes them (`pipelines.tasks`):

* ``redacted`` (default): a reject row of a step *before* the build's ``pii_redact`` is redacted
  by that step itself (its recognizers, NER and mode: names and addresses too), so the rejects
  hold no more personal data than the corpus; rows of later steps (whose input was already
  redacted) and builds without ``pii_redact`` get the structured scrub below;
* ``structured``: structured PII only (the recognizers of `pipelines.pii.recognizers`, no NER, no
  presidio) replaced by typed placeholders: cheaper, but names stay;
* ``none``: no text at all (null);
* ``raw``: the text as the step saw it (the audit's ``pii_left`` will report what it holds).

Kept light on purpose (regexes and validators only, imported when a text is scrubbed): the
config and every step's tasks import this module; the NER redactor comes from the step object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from pipelines.pii.recognizers import Finding

REJECTS_TEXT_MODES = ("redacted", "structured", "none", "raw")
DEFAULT_REJECTS_TEXT = "redacted"


@dataclass(frozen=True)
class RejectsPolicy:
    """The ``rejects_text`` mode for one step's reject rows, with the build's ``pii_redact`` step
    as ``redactor`` when the mode is ``redacted`` and the step runs before it."""

    mode: str = DEFAULT_REJECTS_TEXT
    redactor: Any = None  # a pipelines.steps.pii_redact.PiiRedact (any step with rewrite_texts)

    def __post_init__(self) -> None:
        check_rejects_text(self.mode)

    def identity(self) -> str:
        """Part of a stage's identity: a stage written under another policy is not reused."""
        if self.redactor is None:
            return "structured" if self.mode == "redacted" else self.mode
        step = self.redactor
        return f"{self.mode}:{step.name}-{step.version}-{sorted(step.params().items())}"


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


REDACTOR_STEP = "pii_redact"


def rejects_policies(steps: Sequence[Any], mode: str) -> list[RejectsPolicy]:
    """One policy per step of a build, in order: under ``redacted``, the steps before the build's
    ``pii_redact`` get that step as their redactor."""
    at = next((i for i, s in enumerate(steps) if s.name == REDACTOR_STEP), -1)
    return [RejectsPolicy(mode, steps[at] if mode == "redacted" and i < at else None) for i in range(len(steps))]


def check_rejects_text(mode: str) -> str:
    if mode not in REJECTS_TEXT_MODES:
        raise ValueError(f"rejects_text must be one of {', '.join(REJECTS_TEXT_MODES)}, got {mode!r}")
    return mode


def apply_rejects_text(
    rejects: pl.DataFrame, policy: RejectsPolicy, before: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Reject rows with their ``text`` column as the policy says (other columns untouched);
    ``before`` (the step's input rows) gives the redactor each document's language."""
    if policy.mode == "raw" or rejects.height == 0:
        return rejects
    if policy.mode == "none":
        return rejects.with_columns(pl.lit(None, dtype=pl.String).alias("text"))
    texts = rejects.get_column("text").to_list()
    present = [i for i, t in enumerate(texts) if t]
    if policy.mode == "redacted" and policy.redactor is not None:
        docs = rejects[present].select("doc_id", "text")
        if before is not None and "lang" in before.columns:
            langs = before.select("doc_id", "lang").unique("doc_id", keep="first")
            docs = docs.join(langs, on="doc_id", how="left", maintain_order="left")
        else:
            docs = docs.with_columns(pl.lit(None, dtype=pl.String).alias("lang"))
        scrubbed = policy.redactor.rewrite_texts([texts[i] for i in present], docs)
    else:
        scrubbed = scrub_structured([texts[i] for i in present])
    for i, t in zip(present, scrubbed, strict=True):
        texts[i] = t
    return rejects.with_columns(pl.Series("text", texts, dtype=pl.String))
