"""Generated near-duplicate corpora (English-like and Chinese) for dedup tests and benchmarks.

Documents are sentences drawn from a seeded vocabulary; a near duplicate is a copy edited the
way web and legal text drifts: sentences inserted, deleted or reordered, a boilerplate header or
footer added, whitespace, punctuation and case noise. The true Jaccard of a pair is measured on
the actual shingle sets, so benchmarks know exactly what they should find.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_EN_CONSONANTS = "bcdfghjklmnprstvwz"
_EN_VOWELS = "aeiou"
# Common Han characters: the CJK Unified Ideographs block start is dense with everyday characters.
_HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
EN_HEADERS = [
    "Home | About us | Services | Contact | Login",
    "Skip to main content. Menu. Search this site.",
    "This website uses cookies to improve your experience. Accept all cookies.",
]
EN_FOOTERS = [
    "Copyright 2024 Example Legal Publishing. All rights reserved. Privacy policy. Terms of use.",
    "Share this page: Facebook Twitter LinkedIn Email. Back to top.",
]
ZH_HEADERS = ["首页 | 关于我们 | 法律法规 | 联系我们 | 登录", "本网站使用Cookie以改善您的浏览体验。接受全部。"]
ZH_FOOTERS = ["版权所有 © 2024 某某法律出版社 保留所有权利 隐私政策 使用条款", "分享到：微信 微博 QQ空间 返回顶部"]


@dataclass
class Vocabulary:
    words: list[str]

    @classmethod
    def english(cls, rng: random.Random, size: int = 5000) -> Vocabulary:
        words = set()
        while len(words) < size:
            n = rng.choice((1, 2, 2, 3, 3, 4))
            words.add("".join(rng.choice(_EN_CONSONANTS) + rng.choice(_EN_VOWELS) for _ in range(n)))
        return cls(sorted(words))


def en_sentence(rng: random.Random, vocab: Vocabulary) -> str:
    words = [rng.choice(vocab.words) for _ in range(rng.randint(8, 22))]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".....;?!")


def zh_sentence(rng: random.Random) -> str:
    return "".join(rng.choice(_HAN) for _ in range(rng.randint(12, 40))) + rng.choice("。。。。；？！")


def document(rng: random.Random, lang: str, vocab: Vocabulary, sentences: tuple[int, int] = (8, 30)) -> list[str]:
    n = rng.randint(*sentences)
    return [en_sentence(rng, vocab) if lang == "en" else zh_sentence(rng) for _ in range(n)]


def join(sentences: list[str], lang: str) -> str:
    return (" " if lang == "en" else "").join(sentences)


def edit(rng: random.Random, sentences: list[str], lang: str, vocab: Vocabulary, strength: float) -> str:
    """A near-duplicate of ``sentences``; ``strength`` in [0, 1] scales how much changes."""
    out = list(sentences)
    k = max(0, round(strength * len(out)))
    for _ in range(rng.randint(0, k)):  # deletions
        if len(out) > 2:
            out.pop(rng.randrange(len(out)))
    for _ in range(rng.randint(0, k)):  # insertions
        out.insert(rng.randrange(len(out) + 1), en_sentence(rng, vocab) if lang == "en" else zh_sentence(rng))
    for _ in range(rng.randint(0, k)):  # adjacent swaps (reordering)
        if len(out) > 1:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
    if rng.random() < 0.5:
        out.insert(0, rng.choice(EN_HEADERS if lang == "en" else ZH_HEADERS))
    if rng.random() < 0.5:
        out.append(rng.choice(EN_FOOTERS if lang == "en" else ZH_FOOTERS))
    text = join(out, lang)
    return noise(rng, text)


def noise(rng: random.Random, text: str) -> str:
    """Whitespace, punctuation and case noise that shingling must ignore."""
    chars = list(text)
    for _ in range(max(1, len(chars) // 200)):
        i = rng.randrange(len(chars))
        if chars[i] == " ":
            chars[i] = rng.choice(("  ", "\n", " \t "))
        elif chars[i] in ".,;":
            chars[i] = rng.choice((",", ";", " -", "..."))
        elif chars[i] == "。":
            chars[i] = rng.choice(("，", "；", "."))
    text = "".join(chars)
    return text.upper() if rng.random() < 0.05 else text


__all__ = ["Vocabulary", "document", "edit", "en_sentence", "join", "noise", "zh_sentence"]
