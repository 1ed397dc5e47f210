"""Turn a response's text into a schema-valid answer, or a named reason why not.

Servers without structured output (and some with it) wrap JSON in prose or code fences, so the
parser takes the whole text if it is JSON, else the first balanced ``{...}`` object in it. The
answer must then satisfy the template's JSON schema (``jsonschema``, Draft 2020-12) and have no
blank string fields: an answer that is not data is never written as data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator


@dataclass(frozen=True)
class Verdict:
    answer: dict[str, Any] | None
    reason: str | None = None  # empty_response | invalid_json | schema_violation | blank_field
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.answer is not None


def _first_object(text: str) -> str | None:
    """The first balanced JSON object in ``text`` (string-aware brace matching)."""
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_response(content: str | None, schema: dict[str, Any], finish_reason: str | None = None) -> Verdict:
    if not content or not content.strip():
        return Verdict(None, "empty_response", f"finish_reason={finish_reason}")
    try:
        answer = json.loads(content)
    except json.JSONDecodeError as exc:
        inner = _first_object(content)
        try:
            answer = json.loads(inner) if inner else None
        except json.JSONDecodeError:
            answer = None
        if answer is None:
            cut = " (cut off at max_tokens)" if finish_reason == "length" else ""
            return Verdict(None, "invalid_json", f"{exc.msg} at char {exc.pos}{cut}")
    if not isinstance(answer, dict):
        return Verdict(None, "schema_violation", f"expected a JSON object, got {type(answer).__name__}")
    errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(answer), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        at = "/".join(map(str, e.path)) or "(root)"
        return Verdict(None, "schema_violation", f"{at}: {e.message}"[:500])
    blank = sorted(k for k, v in answer.items() if isinstance(v, str) and not v.strip())
    if blank:
        return Verdict(None, "blank_field", f"blank: {', '.join(blank)}")
    return Verdict(answer)


def validate_text(content: str | None, finish_reason: str | None = None) -> Verdict:
    """A free-text answer (a preference candidate): any non-blank text, stripped."""
    if not content or not content.strip():
        return Verdict(None, "empty_response", f"finish_reason={finish_reason}")
    return Verdict({"text": content.strip()})
