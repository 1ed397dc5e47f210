"""Schema-guided decoding for flat JSON objects of strings, small integers, booleans and enums.

Small models rarely emit valid JSON on their own. When a request carries a ``json_schema``
response format whose schema is a flat object the guide understands, the server forces the JSON
scaffolding (``{"key": "`` ... ``", "key2": `` ... ``}``) token by token and lets the model
choose only what the schema leaves open:

* a **string** property: its contents, from tokens that cannot break the string (no quote,
  backslash or control character), at least ``minLength`` characters (never fewer than one, and
  never only whitespace) and at most ``maxLength``;
* an **enum** / ``const`` (any JSON scalars), an **integer** with ``minimum`` and ``maximum``
  (at most `MAX_CHOICES` values), a **boolean**, and a string whose ``pattern`` is a single
  character class (``^[0-5]$``) or an alternation of plain words (``^(yes|no)$``): one of the
  allowed values, spelled token by token, and nothing else.

The output is then valid JSON with the schema's keys, in declaration order, and every value
conforms by construction; ``max_tokens`` is split over the strings so the object always closes
(a budget too small for the scaffold ends with ``finish_reason: length``). A string ``pattern``
of another form is not enforced (the client validates it), and schemas with anything else
(nested objects, arrays, unbounded numbers) are not guided at all (the client validates and
retries), the same contract hosted APIs and vLLM offer.

Every state the guide can reach allows at least one token: a choice only admits tokens that
continue some allowed value, a string's content tokens must fit its remaining characters, and
the closing quote is allowed as soon as the minimum is met (forced when a cap is reached).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

STRING = "str"
LITERAL = "lit"
CHOICE = "choice"
MAX_CHOICES = 1000  # an integer range wider than this is not guided


@dataclass(frozen=True)
class Field:
    """One property: a free string (``min_chars``..``max_chars``) or one of ``choices`` (JSON texts)."""

    key: str
    min_chars: int = 1
    max_chars: int | None = None
    choices: tuple[str, ...] | None = None


def _choices(prop: dict[str, Any]) -> tuple[str, ...] | None:
    """The JSON texts a property may take when it is a small closed set, else None."""
    if "const" in prop:
        values: list[Any] = [prop["const"]]
    elif isinstance(prop.get("enum"), list) and prop["enum"]:
        values = list(prop["enum"])
    elif prop.get("type") == "boolean":
        values = [True, False]
    elif prop.get("type") == "integer":
        lo, hi = prop.get("minimum"), prop.get("maximum")
        if isinstance(prop.get("exclusiveMinimum"), int | float):
            lo = int(prop["exclusiveMinimum"]) + 1
        if isinstance(prop.get("exclusiveMaximum"), int | float):
            hi = -int(-prop["exclusiveMaximum"]) - 1
        if not isinstance(lo, int | float) or not isinstance(hi, int | float) or not 0 <= hi - lo < MAX_CHOICES:
            return None
        values = list(range(-int(-lo), int(hi) + 1))
    elif prop.get("type") == "string" and isinstance(prop.get("pattern"), str):
        words = _pattern_words(prop["pattern"])
        if words is None:
            return None
        values = words
    else:
        return None
    if any(isinstance(v, dict | list) for v in values):
        return None
    return tuple(dict.fromkeys(json.dumps(v, ensure_ascii=False) for v in values))


def _pattern_words(pattern: str) -> list[str] | None:
    """The finite set a simple anchored pattern matches: ``^[a-c9]$`` or ``^(yes|no)$``."""
    m = re.fullmatch(r"\^\[([^\]\\^]+)\]\$", pattern)
    if m:
        body, out = m.group(1), []
        i = 0
        while i < len(body):
            if i + 2 < len(body) and body[i + 1] == "-":
                out += [chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1)]
                i += 3
            else:
                out.append(body[i])
                i += 1
        return out if 0 < len(out) <= MAX_CHOICES else None
    m = re.fullmatch(r"\^\(([\w |]+)\)\$", pattern)
    if m:
        return m.group(1).split("|")
    return None


@dataclass(frozen=True)
class FlatSchema:
    """A flat object schema the guide can enforce, properties in declaration order."""

    fields: tuple[Field, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    @classmethod
    def parse(cls, schema: Any) -> FlatSchema | None:
        """The guidable subset, or None when the schema is anything else."""
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return None
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            return None
        fields = []
        for key, prop in props.items():
            if not isinstance(prop, dict):
                return None
            choices = _choices(prop)
            if choices is not None:
                fields.append(Field(key, choices=choices))
            elif prop.get("type") == "string":
                lo, hi = prop.get("minLength", 0), prop.get("maxLength")
                hi = hi if isinstance(hi, int) and hi >= 1 else None
                lo = max(1, lo if isinstance(lo, int) else 0)
                fields.append(Field(key, min_chars=min(lo, hi) if hi else lo, max_chars=hi))
            else:
                return None
        return cls(tuple(fields))


class TokenClasses:
    """Per-vocabulary tables, computed once per tokenizer: which tokens may appear inside a JSON
    string, which close it (content followed by exactly one final quote), how many characters each
    adds and whether they are all whitespace, and each token's UTF-8 shape.

    Byte-level vocabularies split a multi-byte character over several tokens, each decoding alone
    to U+FFFD. Counted as decoded, a Chinese character of three byte tokens would count three (a
    guided ``minLength`` closed early), and a string could close mid-character or take a stray
    continuation byte (U+FFFD in the answer). So a string tracks how many continuation bytes its
    last character still needs: a token is allowed only where its bytes continue that character
    (``lead_cont`` leading continuation bytes == pending, or all continuation bytes and no more
    than pending), the quote only when nothing is pending, and a token counts the characters it
    starts (its UTF-8 lead bytes), so every guided string is valid UTF-8 of the counted length."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        special = set(tokenizer.all_special_ids)

        def zeros(dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(vocab_size, dtype=dtype)

        content, close, blank, cont_only = zeros(torch.bool), zeros(torch.bool), zeros(torch.bool), zeros(torch.bool)
        lengths, lead_cont, tail = zeros(torch.long), zeros(torch.long), zeros(torch.long)
        for i, text in enumerate(texts):
            if i >= vocab_size or i in special or not text:
                continue
            closing = text.endswith('"') and _plain(text[:-1])
            if not (_plain(text) or closing):
                continue
            raw = _token_bytes(text, tokens[i], byte_of)
            shape = _utf8_shape(raw[:-1] if closing else raw)
            if shape is None:  # not valid inside any UTF-8 text
                continue
            lead_cont[i], tail[i], cont_only[i], lengths[i] = shape
            if closing and tail[i]:
                continue  # would close the string mid-character
            content[i], close[i] = not closing, closing
            blank[i] = not (text[:-1] if closing else text).strip()
        self.content, self.close, self.blank = content, close, blank
        self.lengths, self.lead_cont, self.tail, self.cont_only = lengths, lead_cont, tail, cont_only
        self.quote_ids = [i for i, t in enumerate(texts) if t == '"' and i < vocab_size]
        self.quote = torch.zeros(vocab_size, dtype=torch.bool)
        self.quote[self.quote_ids] = True
        self.close &= ~self.quote  # the bare quote closes without adding a character

    def fits_after(self, pending: int, n: int) -> torch.Tensor:
        """Tokens whose bytes may follow a string whose last character needs ``pending`` more bytes."""
        starts = ~self.cont_only[:n] & (self.lead_cont[:n] == pending)
        return starts | (self.cont_only[:n] & (self.lead_cont[:n] <= pending))

    def pending_after(self, token: int, pending: int) -> int:
        if bool(self.cont_only[token]):
            return pending - int(self.lead_cont[token])
        return int(self.tail[token])


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: the character each byte is written as in a byte-level BPE vocabulary."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _token_bytes(text: str, token: str | None, byte_of: dict[str, int]) -> bytes:
    """A token's bytes: from a byte-level BPE token string, a sentencepiece ``<0xNN>`` byte, or its text."""
    if token:
        m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token)
        if m:
            return bytes([int(m.group(1), 16)])
        if all(c in byte_of for c in token):
            raw = bytes(byte_of[c] for c in token)
            if raw.decode("utf-8", errors="replace") == text:  # it is a byte-level vocabulary
                return raw
    return text.encode("utf-8")


def _utf8_shape(raw: bytes) -> tuple[int, int, bool, int] | None:
    """(leading continuation bytes, continuation bytes still needed at the end, only continuation
    bytes, characters started) of a byte run, or None when no UTF-8 text contains it."""
    lead = 0
    while lead < len(raw) and 0x80 <= raw[lead] <= 0xBF:
        lead += 1
    if lead > 3:
        return None
    if lead == len(raw):
        return lead, 0, True, 0
    need = chars = 0
    for b in raw[lead:]:
        if 0x80 <= b <= 0xBF:
            if not need:
                return None
            need -= 1
            continue
        if need:
            return None
        chars += 1
        if b < 0x80:
            need = 0
        elif 0xC2 <= b <= 0xDF:
            need = 1
        elif 0xE0 <= b <= 0xEF:
            need = 2
        elif 0xF0 <= b <= 0xF4:
            need = 3
        else:
            return None
    return lead, need, False, chars


def _plain(text: str) -> bool:
    return '"' not in text and "\\" not in text and all(ord(c) >= 0x20 for c in text)


@dataclass
class _RowState:
    """Where one sequence is in the scaffold: segments are literals (forced token ids), strings
    (free content with caps) or choices (one of a set of texts)."""

    segments: list[tuple[str, Any]]
    index: int = 0
    pos: int = 0
    done: bool = False
    started: bool = False
    generated_in_segment: int = 0
    chars_in_segment: int = 0
    blank: bool = True  # the string so far is empty or whitespace
    pending: int = 0  # continuation bytes the string's last character still needs
    sofar: tuple[int, ...] = ()  # a choice's tokens so far


@dataclass(frozen=True)
class _Str:
    max_tokens: int
    min_chars: int
    max_chars: int | None


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
            allowed = self.allowed(state, scores.shape[-1])
            scores[b] = scores[b].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores

    def _advance(self, state: _RowState, token: int) -> None:
        if state.done:
            return
        kind, value = state.segments[state.index]
        c = self.classes
        if kind == LITERAL:
            state.pos += 1
            if state.pos >= len(value):
                self._next(state)
        elif kind == CHOICE:
            state.sofar += (token,)
            state.generated_in_segment += 1
            if state.sofar in value:
                self._next(state)
        elif bool(c.close[token]) or bool(c.quote[token]):
            self._next(state)
        else:
            state.generated_in_segment += 1
            state.chars_in_segment += int(c.lengths[token])
            state.blank = state.blank and bool(c.blank[token])
            state.pending = c.pending_after(token, state.pending)

    @staticmethod
    def _next(state: _RowState) -> None:
        state.index += 1
        state.pos = 0
        state.generated_in_segment = 0
        state.chars_in_segment = 0
        state.blank = True
        state.pending = 0
        state.sofar = ()
        if state.index >= len(state.segments):
            state.done = True

    def allowed(self, state: _RowState, vocab: int) -> torch.Tensor:
        """The tokens this row may take next: never none."""
        mask = torch.zeros(vocab, dtype=torch.bool)
        if state.done:
            mask[self.eos_id] = True
            return mask
        kind, value = state.segments[state.index]
        if kind == LITERAL:
            mask[value[state.pos]] = True
            return mask
        c = self.classes
        if kind == CHOICE:  # the next token of every allowed value that starts with the tokens so far
            k = len(state.sofar)
            mask[[seq[k] for seq in value if seq[:k] == state.sofar and seq[k] < vocab]] = True
            return mask
        n = min(vocab, c.content.shape[0])
        used, pending = state.chars_in_segment, state.pending
        left = (value.max_chars - used) if value.max_chars else 1 << 30
        fits = (c.lengths[:n] <= left) & c.fits_after(pending, n)
        if state.blank:  # whitespace that fills the string would leave it blank
            fits &= ~(c.blank[:n] & (c.lengths[:n] >= left))
        quotes = [q for q in c.quote_ids if q < n]
        if pending == 0 and not state.blank and used >= value.min_chars:  # the minimum is met: may close
            mask[quotes] = True
            if state.generated_in_segment >= value.max_tokens or left <= 0:
                return mask
        elif state.generated_in_segment >= value.max_tokens:  # out of tokens: finish the character, close
            if pending:
                mask[:n] = c.content[:n] & c.cont_only[:n] & fits
            else:
                mask[quotes] = True
            if bool(mask.any()):
                return mask
        closes = c.close[:n] & (c.lengths[:n] <= left) & (c.lead_cont[:n] == pending)
        closes &= c.lengths[:n] + used >= value.min_chars
        if state.blank:
            closes &= ~c.blank[:n]
        mask[:n] |= closes | (c.content[:n] & fits)
        if not bool(mask.any()):  # nothing fits what is left (a vocabulary without short tokens)
            mask[quotes] = True
        return mask


def _plan(tokenizer: Any, schema: FlatSchema, budget: int) -> list[tuple[str, Any]]:
    """Literal token runs around each value, with the remaining budget split over the strings.

    A choice is the set of its values' token sequences (the tokenizer's own spelling of
    ``" " + value`` plus the first character of the literal after it, ``,`` or ``}``): the end
    character tells ``1`` from ``10`` of an integer range, so no value's tokens are a prefix of
    another's and the choice is over when the tokens so far are one whole value."""

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    pieces: list[tuple[str, Any]] = []  # (LITERAL, text) | (STRING, Field) | (CHOICE, value texts)
    for i, f in enumerate(schema.fields):
        prefix = "{" if i == 0 else ", "
        key = json.dumps(f.key, ensure_ascii=False)
        if f.choices is None:
            pieces += [(LITERAL, f'{prefix}{key}: "'), (STRING, f)]
        else:
            pieces += [(LITERAL, f"{prefix}{key}:"), (CHOICE, f.choices)]
    pieces.append((LITERAL, "}"))
    for i, (kind, value) in enumerate(pieces):
        if kind == CHOICE:
            end = pieces[i + 1][1]
            pieces[i] = (CHOICE, frozenset(tuple(ids(f" {v}{end[0]}")) for v in value))
            pieces[i + 1] = (LITERAL, end[1:])
    literals = [ids(v) for k, v in pieces if k == LITERAL and v]
    strings = [v for k, v in pieces if k == STRING]
    fixed = sum(len(x) for x in literals) + 4 * len(strings) + 1  # a character's last bytes, quotes, eos
    fixed += sum(max(map(len, v)) for k, v in pieces if k == CHOICE)
    per_field = max(1, (budget - fixed) // max(1, len(strings)))
    segments: list[tuple[str, Any]] = []
    for kind, value in pieces:
        if kind == LITERAL:
            if value:
                segments.append((LITERAL, ids(value)))
        elif kind == STRING:
            segments.append((STRING, _Str(max(per_field, value.min_chars), value.min_chars, value.max_chars)))
        else:
            segments.append((CHOICE, value))
    return segments
