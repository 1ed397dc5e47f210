"""Evaluation sets: what `training.eval` scores, read and checked before any model is loaded.

Three kinds, each from a JSONL file (one object a line) or, for perplexity, from the catalog:

- ``ppl``: held-out text, ``{text, ...}``; perplexity and bits per byte over the set and per
  value of each ``group_by`` field present (default ``source`` and ``bucket``), e.g.
  ``catalog:split = 'validation'`` (a SQL condition over the corpus root's ``documents`` view).
- ``mcq``: ``{question, options: {A: ..., B: ...} | [...], answer: "B" | 1}``.
- ``qa``: ``{prompt, answer}``; also ``question``/``answer``, ``prompt``/``response`` and
  synthesised instruction rows (``meta.prompt`` / ``meta.response``, ``meta`` a JSON string or
  an object), so the synthesis job's output can be held out and scored directly.

A set is named by its file stem unless given ``NAME=SPEC``. ``limit`` keeps that many items
spread evenly over the file (files are often grouped by kind), not the first ones. Every error
is one line naming the file, line and key (`EvalSetError`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("ppl", "mcq", "qa")
CATALOG_PREFIX = "catalog:"
DEFAULT_GROUP_BY = ("source", "bucket")


class EvalSetError(ValueError):
    """An evaluation set cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class SetSpec:
    """One evaluation set as asked for (CLI flag or config entry)."""

    kind: str
    spec: str  # a path or catalog:<where>
    name: str
    limit: int | None = None
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    optional: bool = False  # a missing file is skipped (with a note) instead of an error

    @classmethod
    def parse(cls, kind: str, arg: str, **kw: Any) -> SetSpec:
        """``SPEC`` or ``NAME=SPEC`` (a catalog condition may itself contain '=')."""
        name, sep, rest = arg.partition("=")
        if sep and not arg.startswith(CATALOG_PREFIX) and name and "/" not in name and " " not in name:
            return cls(kind, rest, name, **kw)
        return cls(kind, arg, default_name(arg), **kw)

    @classmethod
    def from_config(cls, entry: Any, where: str) -> SetSpec:
        """``{kind, path, name?, limit?, group_by?, optional?}`` from a YAML config."""
        if not isinstance(entry, Mapping):
            raise EvalSetError(f"{where}: expected a mapping with 'kind' and 'path'")
        known = {"kind", "path", "name", "limit", "group_by", "optional"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise EvalSetError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        kind, path = entry.get("kind"), entry.get("path")
        if kind not in KINDS:
            raise EvalSetError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(path, str) or not path:
            raise EvalSetError(f"{where}: 'path' must be a file path or catalog:<where>")
        limit = entry.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise EvalSetError(f"{where}: 'limit' must be a positive integer, got {limit!r}")
        group_by = entry.get("group_by", list(DEFAULT_GROUP_BY))
        if isinstance(group_by, str):
            group_by = [group_by]
        return cls(
            kind,
            path,
            str(entry.get("name") or default_name(path)),
            limit,
            tuple(group_by),
            bool(entry.get("optional", False)),
        )


def default_name(spec: str) -> str:
    if spec.startswith(CATALOG_PREFIX):
        return spec
    name = Path(spec).name
    for suffix in (".jsonl.gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class EvalSet:
    kind: str
    name: str
    spec: str
    items: list[dict[str, Any]] = field(default_factory=list)
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY

    def overlap_texts(self) -> list[str]:
        """The text of each item that must not be in the training data."""
        if self.kind == "ppl":
            return [it["text"] for it in self.items]
        if self.kind == "mcq":
            return [it["question"] + "\n" + it["options"][it["answer"]][1] for it in self.items]
        return [it["prompt"] + "\n" + it["answer"] for it in self.items]


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; errors name the file and line."""
    if not path.is_file():
        raise EvalSetError(f"{path}: evaluation file not found")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict):
                raise EvalSetError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def spread(items: list[Any], limit: int | None) -> list[Any]:
    """``limit`` items evenly spaced over the list (all of them without a limit)."""
    if limit is None or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(k * step)] for k in range(limit)]


def _text(rec: Mapping[str, Any], key: str, where: str) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or not value.strip():
        missing = "has no" if value is None else "has an empty or non-string"
        raise EvalSetError(f"{where}: row {missing} {key!r}")
    return value


def _mcq_item(rec: Mapping[str, Any], where: str) -> dict[str, Any]:
    question = _text(rec, "question", where)
    options = rec.get("options")
    if isinstance(options, Mapping):
        pairs = [(str(k), v) for k, v in options.items()]
    elif isinstance(options, list):
        pairs = [(chr(ord("A") + i), v) for i, v in enumerate(options)]
    else:
        raise EvalSetError(f"{where}: MCQ row has no 'options' (a mapping A.. -> text, or a list)")
    if len(pairs) < 2 or not all(isinstance(v, str) and v.strip() for _, v in pairs):
        raise EvalSetError(f"{where}: MCQ 'options' must hold at least 2 non-empty strings")
    if "answer" not in rec or rec["answer"] is None:
        raise EvalSetError(f"{where}: MCQ row has no 'answer'")
    answer = rec["answer"]
    keys = [k for k, _ in pairs]
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(pairs):
        index = answer
    elif isinstance(answer, str) and answer.strip() in keys:
        index = keys.index(answer.strip())
    else:
        raise EvalSetError(f"{where}: MCQ 'answer' {answer!r} is not one of the options {keys}")
    return {"question": question, "options": pairs, "answer": index}


def _qa_item(rec: Mapping[str, Any], where: str) -> dict[str, Any]:
    meta = rec.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    for prompt_key, answer_key, src in (
        ("prompt", "answer", rec),
        ("question", "answer", rec),
        ("prompt", "response", rec),
        ("prompt", "response", meta if isinstance(meta, Mapping) else {}),
    ):
        if prompt_key in src and answer_key in src:
            return {"prompt": _text(src, prompt_key, where), "answer": _text(src, answer_key, where)}
    raise EvalSetError(
        f"{where}: QA row needs 'prompt' and 'answer' (or question/answer, prompt/response, meta.prompt/meta.response)"
    )


def _groups(rec: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    return {k: str(rec[k]) for k in keys if rec.get(k) is not None}


def load_set(spec: SetSpec, root: Path | None = None) -> EvalSet | None:
    """Read and check one set; ``None`` for a missing optional file."""
    if spec.kind not in KINDS:
        raise EvalSetError(f"{spec.spec}: unknown evaluation kind {spec.kind!r}")
    out = EvalSet(spec.kind, spec.name, spec.spec, group_by=spec.group_by)
    if spec.spec.startswith(CATALOG_PREFIX):
        if spec.kind != "ppl":
            raise EvalSetError(f"{spec.spec}: catalog selections are for --ppl sets only")
        rows = _catalog_rows(root or Path("data"), spec.spec[len(CATALOG_PREFIX) :], spec.group_by)
        out.items = spread(rows, spec.limit)
        return out
    path = Path(spec.spec)
    if spec.optional and not path.is_file():
        return None
    items = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        ident = str(rec.get("id", rec.get("doc_id", f"line{lineno}")))
        if spec.kind == "ppl":
            items.append({"id": ident, "text": _text(rec, "text", where), "groups": _groups(rec, spec.group_by)})
        elif spec.kind == "mcq":
            items.append({"id": ident, **_mcq_item(rec, where)})
        else:
            items.append({"id": ident, **_qa_item(rec, where)})
    if not items:
        raise EvalSetError(f"{path}: no rows")
    out.items = spread(items, spec.limit)
    return out


def _catalog_rows(root: Path, where: str, group_by: Sequence[str]) -> list[dict[str, Any]]:
    import duckdb

    catalog = root / "catalog.duckdb"
    if not catalog.exists():
        raise EvalSetError(f"{catalog}: no catalog for {CATALOG_PREFIX}{where} (build the corpus or pass --root)")
    with duckdb.connect(str(catalog), read_only=True) as conn:
        columns = {r[0] for r in conn.execute("DESCRIBE documents").fetchall()}
        extra = [k for k in group_by if k in columns]
        select = ", ".join(["doc_id", "text", *(f'"{k}"' for k in extra)])
        try:
            rows = conn.execute(f"SELECT {select} FROM documents WHERE {where} ORDER BY doc_id").fetchall()
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise EvalSetError(f"{catalog}: {CATALOG_PREFIX}{where}: {first}") from None
    items = [
        {"id": r[0], "text": r[1], "groups": {k: str(v) for k, v in zip(extra, r[2:], strict=True) if v is not None}}
        for r in rows
        if r[1]
    ]
    if not items:
        raise EvalSetError(f"{catalog}: {CATALOG_PREFIX}{where} selects no documents")
    return items


def load_sets(specs: Sequence[SetSpec], root: Path | None = None) -> tuple[list[EvalSet], list[str]]:
    """All sets, checked up front; and the names of optional sets skipped because missing."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalSetError(f"evaluation set name(s) used twice: {dupes}; name them with NAME=PATH")
    sets, skipped = [], []
    for spec in specs:
        loaded = load_set(spec, root)
        if loaded is None:
            skipped.append(f"{spec.name} ({spec.spec} not found)")
        else:
            sets.append(loaded)
    return sets, skipped
