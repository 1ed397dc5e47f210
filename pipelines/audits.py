"""Audit checks the pipeline layer adds to `corpus.audit` (registered as entry points in group
``corpusforge.audit_checks`` in pyproject.toml, so the audit finds them without importing up).

``pii_left`` rescans the final and rejected texts with the structured-PII patterns that
``pii_redact`` uses, ``eval_contamination`` the final shards against the evaluation sets of the
latest build's ``decontaminate`` steps: the steps own their rules, the audit only runs the checks.
"""

from __future__ import annotations

import json
from typing import Any

from corpus.audit import AuditContext, AuditError, Check, Violations
from pipelines.pii.scan import scan_structured
from pipelines.steps.decontaminate import AUDIT_COLUMNS, published_contamination

PII_BATCH_ROWS = 512
MAX_PII_ROWS = 1000


def check_pii_left(ctx: AuditContext) -> Violations:
    """Rescan final texts and reject texts with the structured-PII patterns ``pii_redact`` uses;
    found values are shown masked (relation, doc_id and offsets locate them)."""
    rows: list[tuple[Any, ...]] = []
    total = 0
    queries = (
        ("documents", "SELECT doc_id, bucket::VARCHAR, split::VARCHAR, NULL, text FROM documents ORDER BY doc_id"),
        ("rejects", "SELECT doc_id, NULL, NULL, step, text FROM rejects WHERE text IS NOT NULL ORDER BY step, doc_id"),
    )
    for relation, sql in queries:
        cursor = ctx.conn.cursor()  # a streaming result needs a connection of its own
        for batch in cursor.sql(sql).to_arrow_reader(PII_BATCH_ROWS):
            doc_ids, buckets, splits, steps, texts = (c.to_pylist() for c in batch.columns)
            texts = [t or "" for t in texts]
            for i, findings in enumerate(scan_structured(texts)):
                for entity, start, end in findings:
                    total += 1
                    if len(rows) < MAX_PII_ROWS:
                        found = mask(texts[i][start:end])
                        rows.append((relation, doc_ids[i], buckets[i], splits[i], steps[i], entity, start, end, found))
        cursor.close()
    columns = ["relation", "doc_id", "bucket", "split", "step", "entity_type", "start", "end", "found_masked"]
    return Violations(columns, rows, total)


def mask(value: str) -> str:
    """Enough of a found value to recognise it, not enough to copy PII into a CI log."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def check_eval_contamination(ctx: AuditContext) -> Violations:
    """Rescan the final shards against the evaluation sets of the latest build's
    ``decontaminate`` steps, with their n-gram size and overlap rule."""
    row = ctx.conn.execute("SELECT config FROM runs WHERE run_id = ?", [ctx.latest_build()]).fetchone()
    steps = (json.loads(row[0]) if row and row[0] else {}).get("steps", [])
    configured = [params for entry in steps for name, params in entry.items() if name == "decontaminate"]
    shards = [
        ctx.layout.root / p
        for (p,) in ctx.conn.execute("SELECT path FROM shards WHERE stage = 'final' ORDER BY path").fetchall()
    ]
    rows: list[tuple[Any, ...]] = []
    for params in configured:
        try:
            rows += published_contamination(params, shards)
        except ValueError as exc:  # an evaluation file moved or broke since the build
            raise AuditError(f"the latest build's decontaminate step: {exc}") from None
    return Violations(AUDIT_COLUMNS, rows[:1000], len(rows))  # all counted, the first 1000 kept


def _pii_applies(ctx: AuditContext) -> str | None:
    if ctx.has_table("pii_findings") or ctx.ran_step("pii_redact"):
        return None
    return "pii_redact did not run (no pii_findings table, no pii_redact step in the latest build)"


PII_LEFT = Check(
    "pii_left",
    "No structured PII (e-mails, phone numbers, ids, cards, IPs) is left in the final shards or in\n"
    "the rejects: a second-pass scan with the PII stage's patterns. Applies when pii_redact ran.",
    "pipelines/audits.py:check_pii_left",
    func=check_pii_left,
    applies=_pii_applies,
)
EVAL_CONTAMINATION = Check(
    "eval_contamination",
    "No published document holds an item of an evaluation set that the latest build's decontaminate\n"
    "step was given (at least its min_overlap of the item's n-grams): the final shards are scanned\n"
    "again, so a set extended after the build, or a step that missed, is caught.",
    "pipelines/audits.py:check_eval_contamination",
    requires=("step decontaminate",),
    func=check_eval_contamination,
)
