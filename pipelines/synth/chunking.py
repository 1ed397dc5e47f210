"""Cut a document into pieces that fit a prompt's context budget.

Budgets are in characters, not tokens: the endpoint's tokenizer is not known locally (it may be
a hosted model). For English about 4 characters make a token, for Chinese about 1, so size
``chunk.max_chars`` for the script you feed. Cuts fall on paragraph breaks, then sentence ends
(Latin and CJK punctuation), and only as a last resort inside a sentence; the order of
chunks is the order of the text, so chunk ``i`` is a stable address within a document.
"""

from __future__ import annotations

import re

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?;。！？；])\s*")


def _pieces(text: str, max_chars: int) -> list[str]:
    """Units no longer than ``max_chars``: paragraphs, else sentences, else hard slices."""
    out: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = para.strip()
        if not para:
            continue
        if len(para) <= max_chars:
            out.append(para)
            continue
        for sentence in _SENTENCE.split(para):
            sentence = sentence.strip()
            while len(sentence) > max_chars:
                out.append(sentence[:max_chars])
                sentence = sentence[max_chars:].lstrip()
            if sentence:
                out.append(sentence)
    return out


def chunk_text(text: str, max_chars: int, max_chunks: int | None = None) -> list[str]:
    """Greedy packing of the pieces into chunks of at most ``max_chars`` characters."""
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, max_chars):
        sep = "\n\n" if current else ""
        if len(current) + len(sep) + len(piece) <= max_chars:
            current += sep + piece
            continue
        chunks.append(current)
        if max_chunks is not None and len(chunks) >= max_chunks:
            return chunks
        current = piece
    if current:
        chunks.append(current)
    return chunks[:max_chunks] if max_chunks is not None else chunks
