"""Answer metrics for generated text: exact match, token F1 and ROUGE-L, Chinese included.

Why its own module: scores of generated answers must not depend on the script. SQuAD-style F1
splits on whitespace, which makes a Chinese answer one "word"; scoring on characters only
(what some tools do for Chinese BLEU/ROUGE) rewards a bag of right characters in wrong words.
So every score is computed twice: on *words* (jieba for CJK runs, whitespace words for the
rest) and on *characters* (each CJK character a token; a run of other letters or digits stays
one token, so an English answer scores the same either way).

Normalisation before scoring (both views): NFKC, lower case, punctuation and symbols removed,
whitespace collapsed, English articles dropped (SQuAD). EM compares the normalised strings with
whitespace removed, so "合同 无效" and "合同无效" match.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK}]")
_CHAR_TOKENS = re.compile(f"[{CJK}]|[^\\s{CJK}]+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """NFKC, lower case, no punctuation/symbols, no English articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading banner is not ours to print
    return jieba


def word_tokens(text: str) -> list[str]:
    """Words of a normalised text: jieba segments CJK runs, other runs split on whitespace."""
    norm = normalize_answer(text)
    if not _CJK_CHAR.search(norm):
        return norm.split()
    return [w for w in _jieba().lcut(norm) if w.strip()]


def char_tokens(text: str) -> list[str]:
    """Each CJK character a token; runs of other non-space characters one token each."""
    return _CHAR_TOKENS.findall(normalize_answer(text))


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction).replace(" ", "") == normalize_answer(reference).replace(" ", ""))


def token_f1(pred: Sequence[str], ref: Sequence[str]) -> float:
    """SQuAD F1 over token multisets; two empty answers agree, one empty answer scores 0."""
    if not pred or not ref:
        return float(list(pred) == list(ref))
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)), one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            cur = row[j]
            row[j] = prev + 1 if x == y else max(row[j], row[j - 1])
            prev = cur
    return row[-1]


def rouge_l(pred: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1): 2PR / (P + R) with P = LCS/|pred|, R = LCS/|ref|."""
    if not pred or not ref:
        return float(list(pred) == list(ref))
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class AnswerScores:
    em: float
    f1: float  # on words
    rouge_l: float  # on words
    f1_char: float
    rouge_l_char: float


def score_answer(prediction: str, reference: str) -> AnswerScores:
    pw, rw = word_tokens(prediction), word_tokens(reference)
    pc, rc = char_tokens(prediction), char_tokens(reference)
    return AnswerScores(
        exact_match(prediction, reference), token_f1(pw, rw), rouge_l(pw, rw), token_f1(pc, rc), rouge_l(pc, rc)
    )


def mean_scores(scores: Sequence[AnswerScores]) -> dict[str, float]:
    """The mean of each metric over a set (0.0 for an empty set)."""
    names = ("em", "f1", "rouge_l", "f1_char", "rouge_l_char")
    n = len(scores)
    return {k: (sum(getattr(s, k) for s in scores) / n if n else 0.0) for k in names}
