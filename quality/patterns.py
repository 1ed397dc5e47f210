"""Regular expressions and word lists the heuristic signals share (Rust-regex syntax, as Polars runs it).

Kept in one place so the signals, the rules' documentation and the tests agree on what a "word",
a "CJK character" or a "terminal punctuation mark" is.
"""

from __future__ import annotations

# Scripts written without spaces between words: each character is one word unit.
CJK_CLASS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
CJK_CHAR = f"[{CJK_CLASS}]"
# A Latin-style word: a run of letters/digits/marks (no spaces, punctuation, symbols or CJK).
LATIN_WORD = rf"[^\s\p{{P}}\p{{S}}{CJK_CLASS}]+"
LATIN_WORD_CHAR = rf"[^\s\p{{P}}\p{{S}}{CJK_CLASS}]"
# Word units for n-grams: a CJK character or a Latin word.
WORD_UNIT = f"{CJK_CHAR}|{LATIN_WORD}"
# Whitespace-free chunks for the alphabetic fraction: a CJK character, or a run of other non-space characters.
CHUNK = rf"{CJK_CHAR}|[^\s{CJK_CLASS}]+"
ALPHA_CHUNK = rf"{CJK_CHAR}|[^\s{CJK_CLASS}]*\p{{L}}[^\s{CJK_CLASS}]*"

ELLIPSIS = r"\.\.\.|…"
BULLET_START = r"^\s*[•\-\*·●▪◦‣–]"
ELLIPSIS_END = r"(?:\.\.\.|…)\s*$"
# FineWeb: a line ends with a terminal punctuation mark (Latin and CJK full-width marks, closing quotes).
TERMINAL_END = r"[.!?\"'。！？；：”」』）)…]\s*$"
# C4: the marks a kept line must end with (". ? ! \" '") plus their CJK forms; "..." does not count.
C4_END = r"[.!?\"'。！？”」』]\s*$"
# A sentence end inside a kept line (C4 counts sentences, not lines).
SENTENCE_END = r"[.!?]+(?:\s|$)|[。！？]+"
JAVASCRIPT = r"(?i)javascript"
POLICY = r"(?i)terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
LOREM = r"(?i)lorem ipsum"
CURLY = r"\{"

# Gopher's stop words (English) and the commonest Chinese function characters: a real sentence uses
# at least two of them, a list of keywords or product names usually does not.
STOP_WORDS_LATIN = ("the", "be", "to", "of", "and", "that", "have", "with")
STOP_WORDS_CJK = ("的", "了", "和", "是", "在", "有", "不", "为", "与", "或", "及", "其", "对", "于", "以")
STOP_LATIN_RE = r"(?i)\b(?:" + "|".join(STOP_WORDS_LATIN) + r")\b"
STOP_CJK_RE = "[" + "".join(STOP_WORDS_CJK) + "]"
