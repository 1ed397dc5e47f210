"""English person names the small spaCy model misses: cue phrases and a multilingual name list.

spaCy's ``en_core_web_sm`` finds most capitalised English names in running text, but misses
names that are lower-case ("my name is nijito"), single given names ("Hi Siiri,"), and many
non-English names. Two cheap recognizers add them (PERSON):

* **cues** ("my name is", "call me", "I'm", "this is", "Dear", "Hi", "User:", "Name:", titles
  Mr/Ms/Dr...): the one to three name-like words right after the cue, capitalised, or in the
  name list (any case), stopping at a common word;
* **name list**: two or three adjacent words that are a given name and a surname of the name
  lists of Faker's ~35 Latin-script locales (German, Hungarian, Polish, Czech, Finnish,
  Japanese romanised, ...), capitalised, or all lower-case in an all-lower-case text.

The list comes from Faker's locale providers (already a dependency), not from any evaluation
data; it is built once per process. Common English words that are also names (will, may, grant,
mark) only count after a cue or next to another name-list word.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from functools import cache

from pipelines.pii.recognizers import Finding

NAME_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CH", "fr_CA", "nl_NL", "nl_BE",
    "es_ES", "es_MX", "it_IT", "pt_BR", "pt_PT", "pl_PL", "cs_CZ", "sk_SK", "hu_HU", "fi_FI", "sv_SE", "no_NO",
    "da_DK", "hr_HR", "sl_SI", "et_EE", "lt_LT", "lv_LV", "ro_RO", "tr_TR", "ja_JP",
)  # fmt: skip
CUE_SCORE, LIST_SCORE = 0.75, 0.65
_WORD = r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ſƀ-ɏ][A-Za-zÀ-ÖØ-öø-ÿĀ-ſƀ-ɏ'’\-]*"
_CUES = (
    r"my name is|my name's|name is|names? are|i am|i'm|im|this is|it's|call me|calls me|called|named|"
    r"dear|hi|hello|hey|thanks|thank you|regards|sincerely|cheers|signed|attn|attention|user|customer|"
    r"name|names|contact|mr|mrs|ms|miss|mx|dr|prof|sir|madam|mister|under|spouse|partner|kid|son|daughter|"
    r"wife|husband|guardian|beneficiary|speak to|ask for|by|from|with|to"
)
CUE = re.compile(rf"(?i:(?<![A-Za-z])(?:{_CUES}))\.?[:,]?[ \t]+(?={_WORD})")
WORD = re.compile(_WORD)
# words that end a name after a cue (and are never a name themselves here)
STOP = set(
    """a an the and or but if of in on at to for from by with as is are was were be been am i me my you your he
    she it we they them his her our their this that these those there here not no yes so very just also too
    please thanks thank hi hello dear mr mrs ms dr sir madam who what when where why how which can could would
    should will shall may might must do does did done have has had get got going go gone come came make made
    want need like love know think see say said tell told call called ask asked give gave take took let lets
    new old good great best all any some every each other another more most much many few one two three first
    last next account card number bank money transfer payment email phone address name names bot user
    customer agent manager boss team support service help issue problem question thing things way day week
    month year time today tomorrow yesterday morning evening night""".split()
)


@cache
def name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames), case-folded, from Faker's locale person providers."""
    given: set[str] = set()
    family: set[str] = set()
    for locale in NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attr, dst in (
            ("first_names", given),
            ("first_names_male", given),
            ("first_names_female", given),
            ("first_romanized_names", given),
            ("last_names", family),
            ("last_romanized_names", family),
        ):
            values = getattr(provider, attr, None) or ()
            dst.update(v.casefold() for v in values if " " not in v)
    return frozenset(given - STOP), frozenset(family - STOP)


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and not word.isupper()


def cue_names(text: str) -> list[Finding]:
    given, family = name_lists()
    lower_text = text == text.lower()
    out = []
    for m in CUE.finditer(text):
        pos, end, words = m.end(), m.end(), 0
        while words < 3 and (w := WORD.match(text, pos)):
            word = w.group()
            folded = word.casefold()
            if folded in STOP:
                break
            known = folded in given or folded in family
            if not (known or (_capitalised(word) and not lower_text) or (lower_text and words and known)):
                break
            end, words = w.end(), words + 1
            gap = re.match(r"[ \t]+|[ \t]?[A-Z]\.[ \t]+", text[end:])  # "Faina D. Yefremova"
            if gap is None:
                break
            pos = end + gap.end()
        if words:
            out.append(Finding("PERSON", m.end(), end, "en_names", CUE_SCORE))
    return out


_PAIR = re.compile(rf"(?<![A-Za-z'’\-])({_WORD})[ \t]+(?:[A-Z]\.[ \t]+)?({_WORD})(?:[ \t]+({_WORD}))?")


def list_names(text: str) -> list[Finding]:
    given, family = name_lists()
    lower_text = text == text.lower()
    out = []
    pos = 0
    while m := _PAIR.search(text, pos):
        first, second = m.group(1), m.group(2)
        f1, f2 = first.casefold(), second.casefold()
        cased = _capitalised(first) and _capitalised(second)
        if (cased or lower_text) and f1 in given and f2 in family and f1 not in STOP and f2 not in STOP:
            end = m.end(2)
            third = m.group(3)
            if third and third.casefold() in family and (_capitalised(third) or lower_text):
                end = m.end(3)
            out.append(Finding("PERSON", m.start(1), end, "en_names", LIST_SCORE))
            pos = end
        else:
            pos = m.start(2)
    return out


# a name-list word in a speaker's or a subject's position: "Aki: What...", "Jouni said", "Ansel shouted at"
_SPEAKER = re.compile(rf"(?m)^[ \t>]*({_WORD})(?=:[ \t])")
_SUBJECT = re.compile(
    rf"(?<![A-Za-z'’\-])({_WORD})(?=[ \t]+(?:said|says|told|asked|replied|wrote|shouted|answered|added|explained"
    r"|began|lives|lived|has|had|is a|was a|called|thinks|thought)\b)"
)


def role_names(text: str) -> list[Finding]:
    given, family = name_lists()
    out = []
    for regex in (_SPEAKER, _SUBJECT):
        for m in regex.finditer(text):
            word = m.group(1)
            if _capitalised(word) and (word.casefold() in given or word.casefold() in family):
                out.append(Finding("PERSON", *m.span(1), "en_names", LIST_SCORE))
    return out


def en_findings(texts: Sequence[str]) -> list[list[Finding]]:
    """PERSON findings of the cue, name-list and speaker/subject recognizers per text."""
    return [cue_names(t) + list_names(t) + role_names(t) for t in texts]


def merge_people(findings: list[Finding]) -> list[Finding]:
    """Overlapping PERSON findings of different recognizers become one span (their union) with
    the best score: spaCy's "Tünde" and the list's "Tünde Hoffmann" redact the whole name."""
    people = sorted((f for f in findings if f.entity == "PERSON"), key=lambda f: (f.start, f.end))
    merged: list[Finding] = []
    for f in people:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = max(last, f, key=lambda x: x.score)
            merged[-1] = Finding("PERSON", last.start, max(last.end, f.end), best.recognizer, best.score)
        else:
            merged.append(f)
    return [f for f in findings if f.entity != "PERSON"] + merged
