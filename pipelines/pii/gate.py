"""Which sentences NER needs to see: cheap candidate filters in front of spaCy and LAC.

NER is nearly all of `pii_redact`'s cost, and most sentences of a corpus cannot hold a name or a
place: "The statutory scheme must be read as a whole." has no word spaCy would tag, "本院认为，
依法成立的合同，对当事人具有法律约束力。" no span LAC could return that survives our filters.
So both NER paths split documents into sentences with exact offsets and send a sentence to the
model only when a regex says it may hold something:

* **English**: a capitalised (or all-caps) word that is not a common English word; in texts
  without any capital letter, a word of the name lists or of a country's name, or one that is
  no English word at all. Common words:
  Faker's list of ~1,000 frequent English words, spaCy's stop words, months and weekdays
  (``python -m pipelines.pii.evaluate --no-gate`` shows what the gate costs in recall).
* **Chinese**: a surname followed by a character a given name can hold (not 某, not a function
  character), a transliterated name (·), a province name or a place/address marker (省 市 县 区
  路 街 号 村 …): LAC's PERSON findings must start with a surname anyway (`zh.plausible_name`).
  Surnames are common characters, so this skips only ~5-15% of legal sentences; the per-process
  sentence cache does more there.

Sentences are also deduplicated per process (`SentenceCache`): tags of a sentence depend on the
sentence alone, and formulaic legal sentences recur across documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import cache
from typing import Generic, TypeVar

V = TypeVar("V")

MONTHS_DAYS = set(
    """january february march april may june july august september october november december jan feb mar apr jun jul
    aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs
    fri sat sun""".split()
)
_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿĀ-ſƀ-ɏ"
CAPITALISED = re.compile(rf"(?<![{_LETTER}'’\-])[{_UPPER}][{_LETTER}'’\-]*")
WORD = re.compile(rf"[{_LETTER}][{_LETTER}'’\-]*")
# sentence ends: ., !, ? (plus closing quotes/brackets) before whitespace, and line breaks
_END = re.compile(r"[.!?]+[\"'’”)\]]*(?=\s)|\n")
_ABBREVIATION = re.compile(
    r"(?i:(?<![A-Za-z])(?:mr|mrs|ms|mx|dr|prof|st|sr|jr|no|nos|inc|ltd|co|corp|vs|v|etc|e\.g|i\.e|u\.s|ul|al|"
    r"apt|ste|rd|ave|blvd|str|fig|p\.o|[a-z]))$"
)


class SentenceCache(Generic[V]):
    """Results of recent sentences, per process. A call whose new sentences would take it past
    ``limit`` entries starts it afresh, keeping only that call's own hits: real Chinese court text
    has ~5,700 distinct candidate sentences per MB, so a worker gets there after ~35 MB."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.data: dict[Hashable, V] = {}
        self.hits = self.misses = 0

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list], Iterable[V]]) -> list[V]:
        """Values for ``keys``, calling ``compute`` once on the (sorted, unique) missing ones."""
        todo = sorted({k for k in keys if k not in self.data})  # type: ignore[type-var]
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            if len(self.data) + len(todo) > self.limit:  # start afresh, keeping what ``keys`` hit
                self.data = {k: self.data[k] for k in set(keys) if k in self.data}
            for k, v in zip(todo, compute(todo), strict=True):
                self.data[k] = v
        return [self.data[k] for k in keys]

    def clear(self) -> None:
        self.data.clear()
        self.hits = self.misses = 0


def en_sentence_spans(text: str, max_chars: int = 2000) -> list[tuple[int, int]]:
    """(start, end) of the sentences of an English text, ends after ., !, ? unless the word before
    is an abbreviation or an initial (Mr., D., St.), and at line breaks; blank pieces skipped and
    pieces longer than ``max_chars`` cut at a space."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group() != "\n" and _ABBREVIATION.search(text, max(start, m.start() - 5), m.start()):
            continue
        _add(text, start, end, max_chars, spans)
        start = end
    _add(text, start, len(text), max_chars, spans)
    return spans


def _add(text: str, start: int, end: int, max_chars: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut + 1 if cut != -1 else start + max_chars
        spans.append((start, cut))
        start = cut
    if end > start and not text[start:end].isspace():
        spans.append((start, end))


@cache
def common_words() -> frozenset[str]:
    """Case-folded frequent English words: never the reason to run NER on a sentence."""
    from faker.providers.lorem.en_US import Provider

    from pipelines.pii.en import STOP
    from pipelines.pii.engine import import_spacy

    import_spacy()  # first, so that spaCy comes in without torch
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset({w.casefold() for w in Provider.word_list} | set(STOP_WORDS) | STOP | MONTHS_DAYS)


def en_candidate(sentence: str, lower_text: bool) -> bool:
    """Whether spaCy or the name recognizers could find a PERSON or LOCATION in ``sentence``."""
    from pipelines.pii.en import NAMING_CUE, name_lists

    common = common_words()
    if lower_text:
        from pipelines.pii.en import unknown_word

        given, family = name_lists()
        places = place_words()
        # a word that is no English word ("eustachy gorski will be talking", "dori, can i"):
        # lower-case texts are rare, and there a name has no capital to show it
        return NAMING_CUE.search(sentence) is not None or any(
            (w := m.group().casefold()) not in common
            and (w in given or w in family or w in places or (len(w) >= 3 and unknown_word(w)))
            for m in WORD.finditer(sentence)
        )
    return any(m.group().casefold() not in common for m in CAPITALISED.finditer(sentence))


@cache
def place_words() -> frozenset[str]:
    """Case-folded words of the English names of countries and territories (Babel's CLDR data):
    in an all-lower-case text, "france" is a reason to run NER, as "Jouni" is."""
    from babel import Locale

    return (
        frozenset(w.casefold() for name in Locale("en").territories.values() for w in WORD.findall(name))
        - common_words()
    )


@cache
def _zh_candidate_regex() -> re.Pattern[str]:
    from pipelines.pii.zh_lexicon import COMPOUND_SURNAMES, NOT_IN_GIVEN_NAME, PROVINCES, SURNAMES

    han = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    given = "[" + han + "]"
    banned = "".join(sorted(NOT_IN_GIVEN_NAME | {"某"}))
    surname = "(?:" + "|".join(sorted(COMPOUND_SURNAMES)) + "|[" + "".join(sorted(SURNAMES)) + "])"
    markers = "省市县区縣區州盟旗镇鎮乡鄉村屯路街巷弄胡同道号號室栋棟幢楼樓层層单元單元邮编郵編·•"
    return re.compile(rf"{surname}(?![{banned}]){given}|[{markers}]|{PROVINCES}")


def zh_candidate(sentence: str) -> bool:
    """Whether LAC could return a PERSON, ADDRESS or LOCATION here that our filters keep."""
    return _zh_candidate_regex().search(sentence) is not None


__all__ = ["SentenceCache", "en_candidate", "en_sentence_spans", "zh_candidate"]
