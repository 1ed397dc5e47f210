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
# A sentence end inside a kept line (C4 counts sentences, not lines), closing quotes and brackets
# after the mark included: `(... says Ramsey.)`, `... of competition."`.
SENTENCE_END = r"[.!?]+[\"'”’)\]]*(?:\s|$)|[。！？]+"
# A line that ends in a colon introduces a list or a quotation: one sentence of prose ("Important
# aspects of the plan are these:", "For the government of the United States of America:"); lines
# of code that end so are not: the code patterns, a block keyword in lower case ("if x is None:",
# "for k in keys:"), the 3-word floor ("else:").
COLON_QUOTES = "\"“' "  # stripped from the end of a (stripped) line before looking for the colon
CODE_BLOCK_START = r"^(?:if|elif|else|for|while|try|except|finally|with|async|def|class|match|case|switch)\b"
# Chinese sentence ends: full-width 。！？ and the semicolon that separates a statute's clauses; the
# half-width ?!; that Chinese text writes without a following space (exam options "...?A:...;B:").
SENTENCE_END_CJK = r"[。！？；?!;]+"
# The unterminated last sentence of a line: a clause (after a comma) that no mark closes, as in a
# case fact cut before its final 。 (a heading has no comma, so it is no sentence).
UNTERMINATED_CJK = r"[，,][^。！？；?!;]+$"
# A line that is a numbered article, paragraph or item of a statute, judgment or exam question:
# 第十二条 / 第三款 / （一） / (2) / 一、 / 1、 / 1． — one unit of text even when it ends without 。
# (chapter and section headings, 第一章 总则, are not sentences).
NUMBERED_LINE = (
    r"^\s*(?:第[一二三四五六七八九十百千零〇两\d]+[条款项]|[（(][一二三四五六七八九十\d]+[）)]"
    r"|[一二三四五六七八九十]+[、．.]|\d+[、．])"
)
# A line of source code: a statement in one of its unmistakable forms at the start, or an assignment
# ("name = ..."), or a line that ends like a block ("{", "}", "):"). Not ";": NFKC turns the
# Chinese clause mark ； into ";", and statutes end their items with it in both languages.
CODE_LINE_START = (
    r"^(?:import\s+[\w.]+(?:\s+as\s+\w+)?$|from\s+[\w.]+\s+import\s|def\s+\w+\s*\(|class\s+\w+\s*[(:]"
    r"|(?:const|let|var)\s+\w+\s*=|function\s*\w*\s*\(|#include\s*[<\"]|(?:public|private|static)\s+\w"
    r"|@\w+(?:\(|$)|[\w.\[\]'\"]+\s*[-+*/|&]?=\s*\S)"
)
CODE_LINE_ENDS = ("{", "}", "):")  # checked with ends_with (an end-anchored regex scans every line)
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
