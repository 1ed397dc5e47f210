"""Schema-guided decoding for flat JSON objects of strings.

Small models rarely emit valid JSON on their own. When a request carries a ``json_schema``
response format whose schema is an object of string properties, the server forces the JSON
scaffolding (``{"key": "`` ... ``", "key2": "`` ... ``"}``) token by token and only lets the
model choose the string contents, from tokens that cannot break the string (no quote,
backslash or control character). The output is then valid JSON with the schema's keys by
construction; ``maxLength`` caps each string's characters and ``max_tokens`` is split over
the strings so the object always closes. Other schemas are not guided (the
client validates and retries), the same contract hosted APIs and vLLM offer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

STRING = "str"
LITERAL = "lit"


@dataclass(frozen=True)
class FlatSchema:
    """An object schema with string properties only, in declaration order."""

    keys: tuple[str, ...]
    max_chars: tuple[int | None, ...]

    @classmethod
    def parse(cls, schema: Any) -> FlatSchema | None:
        """The guidable subset, or None when the schema is anything else."""
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return None
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            return None
        if any(not isinstance(p, dict) or p.get("type") != "string" for p in props.values()):
            return None
        return cls(tuple(props), tuple(p.get("maxLength") for p in props.values()))


class TokenClasses:
    """Per-vocabulary masks, computed once per tokenizer: which tokens may appear inside a JSON
    string, and which close it (content followed by exactly one final quote)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        special = set(tokenizer.all_special_ids)
        content = torch.zeros(vocab_size, dtype=torch.bool)
        close = torch.zeros(vocab_size, dtype=torch.bool)
        lengths = torch.zeros(vocab_size, dtype=torch.long)
        for i, text in enumerate(texts):
            if i >= vocab_size or i in special or not text:
                continue
            lengths[i] = len(text)
            if _plain(text):
                content[i] = True
            elif text.endswith('"') and _plain(text[:-1]):
                close[i] = True
        self.content = content
        self.close = close
        self.lengths = lengths
        self.quote_ids = [i for i, t in enumerate(texts) if t == '"' and i < vocab_size]


def _plain(text: str) -> bool:
    return '"' not in text and "\\" not in text and all(ord(c) >= 0x20 for c in text)


@dataclass
class _RowState:
    """Where one sequence is in the scaffold: segments are literals (forced token ids) or
    strings (free content with a token cap)."""

    segments: list[tuple[str, Any]]
    index: int = 0
    pos: int = 0
    done: bool = False
    started: bool = False
    generated_in_segment: int = 0
    chars_in_segment: int = 0


class JsonGuide(LogitsProcessor):
    """A HF logits processor that guides each batch row by its own schema (or not at all)."""

    def __init__(
        self,
        tokenizer: Any,
        classes: TokenClasses,
        schemas: list[FlatSchema | None],
        max_new_tokens: list[int],
        eos_id: int,
    ) -> None:
        self.classes = classes
        self.eos_id = eos_id
        self.rows: list[_RowState | None] = []
        for schema, budget in zip(schemas, max_new_tokens, strict=True):
            self.rows.append(None if schema is None else _RowState(_plan(tokenizer, schema, budget)))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for b, state in enumerate(self.rows):
            if state is None:
                continue
            if state.started:
                self._advance(state, int(input_ids[b, -1]))
            state.started = True
            allowed = self._allowed(state, scores.shape[-1])
            scores[b] = scores[b].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores

    def _advance(self, state: _RowState, token: int) -> None:
        if state.done:
            return
        kind, value = state.segments[state.index]
        if kind == LITERAL:
            state.pos += 1
            if state.pos >= len(value):
                self._next(state)
        elif bool(self.classes.close[token]) or token in self.classes.quote_ids:
            self._next(state)
        else:
            state.generated_in_segment += 1
            state.chars_in_segment += int(self.classes.lengths[token])

    @staticmethod
    def _next(state: _RowState) -> None:
        state.index += 1
        state.pos = 0
        state.generated_in_segment = 0
        state.chars_in_segment = 0
        if state.index >= len(state.segments):
            state.done = True

    def _allowed(self, state: _RowState, vocab: int) -> torch.Tensor:
        mask = torch.zeros(vocab, dtype=torch.bool)
        if state.done:
            mask[self.eos_id] = True
            return mask
        kind, value = state.segments[state.index]
        if kind == LITERAL:
            mask[value[state.pos]] = True
            return mask
        max_tokens, max_chars = value
        n = min(vocab, self.classes.content.shape[0])
        fits = self.classes.lengths[:n] <= (max_chars - state.chars_in_segment - 1 if max_chars else 1 << 30)
        if state.generated_in_segment > 0:  # no empty strings; close when a cap is reached
            for q in self.classes.quote_ids:
                mask[q] = True
            if state.generated_in_segment >= max_tokens:
                return mask
            mask[:n] |= self.classes.close[:n] & fits
        mask[:n] |= self.classes.content[:n] & fits
        return mask


def _plan(tokenizer: Any, schema: FlatSchema, budget: int) -> list[tuple[str, Any]]:
    """Literal token runs around each string, with the remaining budget split over the strings."""

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    literals = []
    for i, key in enumerate(schema.keys):
        prefix = "{" if i == 0 else ", "
        literals.append(ids(f'{prefix}{json.dumps(key, ensure_ascii=False)}: "'))
    tail = ids("}")
    fixed = sum(len(x) for x in literals) + len(tail) + len(schema.keys) + 1  # closing quotes + eos
    per_field = max(1, (budget - fixed) // len(schema.keys))
    segments: list[tuple[str, Any]] = []
    for lit, max_chars in zip(literals, schema.max_chars, strict=True):
        segments += [(LITERAL, lit), (STRING, (per_field, max_chars))]
    segments.append((LITERAL, tail))
    return segments
