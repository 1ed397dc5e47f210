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

import gzip
import importlib
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from pipelines.pii.recognizers import Finding

NAME_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CH", "fr_CA", "nl_NL", "nl_BE",
    "es_ES", "es_MX", "it_IT", "pt_BR", "pt_PT", "pl_PL", "cs_CZ", "sk_SK", "hu_HU", "fi_FI", "sv_SE", "no_NO",
    "da_DK", "hr_HR", "sl_SI", "et_EE", "lt_LT", "lv_LV", "ro_RO", "tr_TR", "ja_JP",
)  # fmt: skip
CUE_SCORE, LIST_SCORE, SINGLE_SCORE, REPEAT_SCORE = 0.75, 0.65, 0.6, 0.6
_LETTERS = "A-Za-zÀ-ÖØ-öø-ÿĀ-ſƀ-ɏ"
_WORD = rf"[{_LETTERS}][{_LETTERS}'’\-]*"
_CUES = (
    r"my name is|my name's|name is|names? are|i am|i'm|im|this is|it's|call me|calls me|"
    r"(?:named|called|call) (?:him|her|them)|called|named|"
    r"dear|hi|hello|hey|thanks|thank you|regards|sincerely|cheers|signed|attn|attention|"
    r"name|names|mr|mrs|ms|miss|mx|dr|prof|sir|madam|mister|spouse|partner|kid|son|daughter|"
    r"wife|husband|guardian|beneficiary|speak to|ask for|by|with|said|says|asked|told|according to|songwriter|"
    r"singer|player|author|writer|director|assistant to|starring"
)
CUE = re.compile(rf"(?i:(?<![A-Za-z])(?:{_CUES}))\.?[:,]?[ \t]+(?={_WORD})")
# cues that name a person whatever the words after them ("my name is Will Hope", "Dr. Grace
# Park"); after the others ("by", "with", "thanks", "author") a name needs a word that could be
# a person's (`has_name_word`: not "by Secret Labs AB", "with NumPy arrays")
STRONG_CUE = re.compile(
    r"(?i:my name is|my name's|name is|names? are|call me|calls me|(?:named|called|call) (?:him|her|them)|called"
    r"|named|mr|mrs|ms|miss|mx|dr|prof|sir|madam|mister)\.?[:,]?[ \t]+"
)
# cues after which one word is a name even in an all-lower-case text when it is no English word
# ("my name is vilmundína", "she named him yuuna"); the other cues ("i am", "by", "with") are
# followed by adjectives and nouns too often ("i am happy", "by hand"), so there it must be listed
NAMING_CUE = re.compile(r"(?i)(?:my name is|my name's|calls? me|(?:named|called|call) (?:him|her|them))\W*")
WORD = re.compile(_WORD)
_GAP = re.compile(r"[ \t]+|[ \t]?[A-Z]\.[ \t]+")
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


def cue_names(text: str, lower: bool | None = None) -> list[Finding]:
    given, family = name_lists()
    lower_text = text == text.lower() if lower is None else lower
    out = []
    for m in CUE.finditer(text):
        pos, end, words = m.end(), m.end(), 0
        naming = lower_text and NAMING_CUE.fullmatch(m.group()) is not None
        while words < 3 and (w := WORD.match(text, pos)):
            word = w.group()
            folded = word.casefold()
            if folded in STOP:
                break
            known = folded in given or folded in family or (naming and words == 0 and unknown_word(word))
            if not ((_capitalised(word) and not lower_text) or (lower_text and known)):
                break
            end, words = w.end(), words + 1
            gap = _GAP.match(text, end)  # "Faina D. Yefremova"
            if gap is None:
                break
            pos = gap.end()
        if words and (
            STRONG_CUE.fullmatch(m.group())
            or has_name_word(text[m.end() : end], given, family)
            or _BEFORE_EMAIL.match(text, end)
        ):
            out.append(Finding("PERSON", m.end(), end, "en_names", CUE_SCORE))
    return out


_PAIR = re.compile(rf"(?<![A-Za-z'’\-])({_WORD})[ \t]+(?:[A-Z]\.[ \t]+)?({_WORD})(?:[ \t]+({_WORD}))?")


def list_names(text: str, lower: bool | None = None) -> list[Finding]:
    given, family = name_lists()
    lower_text = text == text.lower() if lower is None else lower
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


# a name-list word in a speaker's or a subject's position: "Aki: What...", "Jouni said", "Ansel shouted at";
# a word that is no English word as a speaker twice or more ("Ayda: "Who are you?"\nAyda:"I'm …")
_SPEAKER = re.compile(rf"(?m)^[ \t>]*({_WORD})(?=:[ \t\"“])")
_SUBJECT = re.compile(
    rf"(?<![A-Za-z'’\-])({_WORD})(?=[ \t]+(?:said|says|told|asked|replied|wrote|shouted|answered|added|explained"
    r"|began|lives|lived|has|had|is a|was a|called|thinks|thought)\b)"
)


# the owner of a person's things: "here's Wacława's address" (a listed name: companies have
# addresses too), "him and Nayla's kid" (any name-like word: only people have kids)
_OWNER = re.compile(
    rf"(?<![{_LETTERS}'’\-])({_WORD})['’]s[ \t]+(?:(address|phone|number|e-?mail|birthday)|wife|husband|son"
    r"|daughter|mother|father|mom|dad|kids?|children|brother|sister|parents|boyfriend|girlfriend)\b"
)
# a sentence's first word before a verb of people ("Brigliador is very reliable", "Akaho spent a year")
_OPENING = re.compile(
    rf"(?:^|(?<=[.!?\n][ \t])|(?<=\n))[ \t]*({_WORD})(?=[ \t]+(?:is|was|has|had|spent|lives|lived|said|says|wrote"
    r"|began|asked|told|shouted|replied|and [A-Z][a-z]+ (?:are|were|have|had))\b)"
)
# a word that is no English word addressed at the start of a sentence: "Denisse, can I please …"
_VOCATIVE = re.compile(
    rf"(?:^|(?<=[.!?\n][ \t])|(?<=\n))[ \t]*({_WORD}),[ \t]+(?=(?:can|could|would|will|may|please|I|you|we)\b)"
)
# a surname's shape in many languages: patronymics and the common endings of Slavic, Baltic,
# Caucasian, Romanian, Greek names (Örlygsdóttir, Krejčíková, Kozłowska, Perković, Khadzhiev)
SURNAME_SHAPE = re.compile(
    r"(?i:d[óo]ttir|sson|ov[áa]|sk[aiy]|wicz|ovi[cć]|evi[cć]|ić|enko|[oe]vi?|[oe]va|yan|idze|shvili|escu|opoulos"
    r"|akis|oglu|oğlu|ová|ský|ská)$"
)


def _namelike(word: str, skip: frozenset[str]) -> bool:
    """Capitalised, no frequent English word, place, language or street word."""
    return _capitalised(word) and len(word) >= 2 and word.casefold() not in skip


def role_names(text: str, lower: bool | None = None) -> list[Finding]:
    given, family = name_lists()
    skip = _skip_words()
    lower_text = text == text.lower() if lower is None else lower
    out = []
    for regex in (_SPEAKER, _SUBJECT):
        for m in regex.finditer(text):
            word = m.group(1)
            if _capitalised(word) and (word.casefold() in given or word.casefold() in family):
                out.append(Finding("PERSON", *m.span(1), "en_names", LIST_SCORE))
            elif regex is _SUBJECT and lower_text and _lower_name(word, skip):
                out.append(Finding("PERSON", *m.span(1), "en_names", SINGLE_SCORE))  # "tell jaydee was a"
    for m in _OWNER.finditer(text):
        word = m.group(1)
        listed = word.casefold() in given or word.casefold() in family
        kin = m.group(2) is None
        if (listed and (lower_text or _capitalised(word))) or (kin and _namelike(word, skip) and unknown_word(word)):
            out.append(Finding("PERSON", *m.span(1), "en_names", SINGLE_SCORE))
    for m in _OPENING.finditer(text):
        if _namelike(m.group(1), skip):
            out.append(Finding("PERSON", *m.span(1), "en_names", SINGLE_SCORE))
    for m in _VOCATIVE.finditer(text):
        word = m.group(1)
        if (_namelike(word, skip) and unknown_word(word)) or (lower_text and _lower_name(word, skip)):
            out.append(Finding("PERSON", *m.span(1), "en_names", SINGLE_SCORE))  # "dori, can i …"
    speakers = Counter(m.group(1) for m in _SPEAKER.finditer(text))
    for m in _SPEAKER.finditer(text):
        word = m.group(1)
        if speakers[word] >= 2 and _namelike(word, skip) and "-" not in word and unknown_word(word):
            out.append(Finding("PERSON", *m.span(1), "en_names", SINGLE_SCORE))
    return out


@cache
def _skip_words() -> frozenset[str]:
    from pipelines.pii.gate import common_words, place_words

    return common_words() | place_words() | language_words() | street_words()


# lower-case particles inside a name: "Aislinn de Meer", "Jan van der Berg", "Ana dos Santos"
NAME_PARTICLES = frozenset("de da do dos das del della di du la le van von der den ten ter zu bin al".split())
_PARTICLE = "(?:" + "|".join(sorted(NAME_PARTICLES, key=len, reverse=True)) + ")"
_CAP_PAIR = re.compile(
    rf"(?<![{_LETTERS}'’\-])({_WORD})[ \t]+(?:[A-Z]\.[ \t]+)?((?:{_PARTICLE}[ \t]+){{1,2}})?({_WORD})(?![{_LETTERS}])"
)


def pair_names(text: str, lower: bool | None = None) -> list[Finding]:
    """Two capitalised words of which one is a listed name or has a surname's shape, both no
    English word, or with a middle initial between them, and neither a frequent word or a place:
    "Pernille Nielsen", "Heiðbjört Örlygsdóttir", "Menne Laarman", "Trifon J. Yudin". In an
    all-lower-case text, two words that are no English word, one listed or surname-shaped. With
    name particles between ("Aislinn de Meer", "Guido van Rossum"), a listed given name first."""
    given, family = name_lists()
    skip = _skip_words()
    lower_text = text == text.lower() if lower is None else lower
    out = []
    pos = 0
    while m := _CAP_PAIR.search(text, pos):
        a, b = _POSSESSIVE.sub("", m.group(1)), _POSSESSIVE.sub("", m.group(3))
        initial = "." in text[m.end(1) : m.start(3)]
        if m.group(2):  # "Aislinn de Meer", "Guido van Rossum": a listed given name first
            ok = a.casefold() in given and (_namelike(a, skip) or lower_text) and (_namelike(b, skip) or lower_text)
            ok = ok and (not lower_text or b not in skip)
        elif _namelike(a, skip) and _namelike(b, skip):
            ok = initial or _listed_pair(a, b, given, family) or (unknown_word(a) and unknown_word(b))
        else:  # "user: denisse verduzco"
            ok = lower_text and _lower_pair(a, b, skip) and _listed_pair(a, b, given, family)
        if ok:
            out.append(Finding("PERSON", m.start(1), m.start(3) + len(b), "en_names", SINGLE_SCORE))
            pos = m.end(3)
        else:
            pos = m.start(2) if m.group(2) else m.start(3)
    return out


def _listed_pair(a: str, b: str, given: frozenset[str], family: frozenset[str]) -> bool:
    return a.casefold() in given or b.casefold() in family or SURNAME_SHAPE.search(b) is not None


def _lower_name(word: str, skip: frozenset[str]) -> bool:
    """A lower-case word of an all-lower-case text that can be a name in a person's position: no
    English word nor frequent one, three letters or more."""
    return word.islower() and len(word) >= 3 and word not in skip and unknown_word(word)


def _lower_pair(a: str, b: str, skip: frozenset[str]) -> bool:
    """Two lower-case words of an all-lower-case text, both no English word nor frequent one."""
    return all(w.islower() and len(w) >= 2 and w not in skip and unknown_word(w) for w in (a, b))


_ADDRESSEE = re.compile(rf"[ \t>]*({_WORD}(?:[ \t]+(?:[A-Za-z]\.|{_WORD})){{1,3}})[ \t]*")


def _name_line(text: str, line: tuple[int, int], skip: frozenset[str], lower_text: bool) -> tuple[int, int] | None:
    """The span of a line that is two to four name-like words (a middle initial allowed)."""
    m = _ADDRESSEE.fullmatch(text, *line)
    if m is None:
        return None
    words = [_POSSESSIVE.sub("", w) for w in m.group(1).split() if not w.endswith(".")]
    words = [words[0], *(w for w in words[1:] if w not in NAME_PARTICLES)]  # "Aislinn C. de Meer"
    if len(words) < 2:
        return None
    if lower_text:
        ok = all(len(w) >= 2 and w.casefold() not in skip for w in words)
    else:
        ok = all(_namelike(w, skip) for w in words) and not re.search(r"[ \t][a-z]\.", m.group(1))
    return m.span(1) if ok else None


def _same_person(text: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two name lines of one person: the words of one (initials, particles aside) all in the other."""
    wa, wb = (
        {w.casefold() for w in WORD.findall(text[s:e]) if len(w) >= 2 and w not in NAME_PARTICLES} for s, e in (a, b)
    )
    return len(wa) >= 2 and len(wb) >= 2 and (wa <= wb or wb <= wa)


def addressee_names(text: str, addresses: Sequence[Finding]) -> list[Finding]:
    """The name lines of a postal address block: two to four name-like words (a middle initial
    allowed; none a frequent word, place or street word; not a company; lower-case words in an
    all-lower-case text) alone on the line above an address that starts a line ("Haide Árias\n\n6103
    Burke Path\n Suite 793"). With two or three lines above the street, one of them is a
    company's, so only a name written twice around it counts ("Syed Simensen\nUnity Frankford
    Stores\nSyed Simensen\n333 Christine Pass"): both its lines."""
    skip = _skip_words()
    lower_text = text == text.lower()
    companies: list[tuple[int, int]] | None = None  # only for a text with a candidate name line
    out = []
    for address in addresses:
        line_start = text.rfind("\n", 0, address.start) + 1
        if address.entity != "ADDRESS" or text[line_start : address.start].strip(" \t>"):
            continue
        lines = []  # (start, end) of the non-empty lines above, up to a blank line, nearest first
        pos = line_start
        while pos > 0 and len(lines) < 4:
            start = text.rfind("\n", 0, pos - 1) + 1
            if text[start : pos - 1].strip(" \t>"):
                lines.append((start, pos - 1))
            elif lines:
                break
            pos = start
        if not lines or len(lines) > 3:
            continue
        names = [_name_line(text, line, skip, lower_text) for line in lines]
        if len(lines) == 1:
            found = [names[0]] if names[0] else []
        else:
            spans = [n for n in names if n]
            found = [n for n in spans if any(m != n and _same_person(text, n, m) for m in spans)]
        if found and companies is None:
            companies = company_spans(text)
        for span in found:
            if not any(s <= span[0] < e for s, e in companies or ()):
                out.append(Finding("PERSON", *span, "en_names", SINGLE_SCORE))
    return out


def single_names(text: str, lower: bool | None = None) -> list[Finding]:
    """A capitalised word of the name lists on its own ("Sometimes people call me Siniša", "Ochi"),
    unless it is a frequent English word, a country/territory or language name, a street type or
    a month; in an all-lower-case text, a given name of the lists that is no English word."""
    given, family = name_lists()
    lower_text = text == text.lower() if lower is None else lower
    skip = _skip_words()
    out = []
    for m in WORD.finditer(text):
        word = _POSSESSIVE.sub("", m.group())
        folded = word.casefold()
        if len(folded) < 2 or folded in skip or (m.start() and text[m.start() - 1] in "@/#.&"):
            continue
        listed = folded in given or folded in family or (len(word) >= 5 and SURNAME_SHAPE.search(word))
        if (folded in given) if lower_text else (_capitalised(word) and listed):
            out.append(Finding("PERSON", m.start(), m.start() + len(word), "en_names", SINGLE_SCORE))
    return out


_POSSESSIVE = re.compile(r"['’]s?$")


@cache
def language_words() -> frozenset[str]:
    """Case-folded English names of languages ("Hungarian", "Finnish"): nationalities, not names."""
    from babel import Locale

    return frozenset(w.casefold() for name in Locale("en").languages.values() for w in WORD.findall(name))


@cache
def street_words() -> frozenset[str]:
    from pipelines.pii.en_address import STREET_TYPES, STREET_WORDS

    return frozenset(w.casefold() for w in STREET_TYPES + STREET_WORDS)


@cache
def _not_a_person() -> frozenset[str]:
    """Whole-span texts that are a place or a language, never a person: "Cyprus", "Hungarian"."""
    from babel import Locale

    en = Locale("en")
    return frozenset(n.casefold() for n in list(en.territories.values()) + list(en.languages.values()))


_STREET = r"(?i:street|st|str|road|rd|avenue|ave|boulevard|blvd|lane|drive|bridge|square|highway)"
_NOT_IN_NAME = re.compile(r"[0-9:;\"“”()\[\]{}|/\\@#=+*<>]")  # spaCy's 'Answer:"Tube Snake Boogie'
_STREET_END = re.compile(rf"[ \t]{_STREET}\.?$")  # spaCy's "Janet Heights St." is a street
_STREET_AFTER = re.compile(rf"[ \t]+{_STREET}(?![A-Za-z])")  # "lives on Donna Fork street"


_CAPWORD = r"[A-Z][A-Za-zÀ-ÖØ-öø-ÿĀ-ſ'’\-]+"
# company names made of surnames: "Moore, Mccall and Brown", "Hoffman Inc", "Rodriguez LLC",
# "Jenkins-Carr", "Wright & Sons"; a PERSON inside one is the company's name
COMPANY = re.compile(
    rf"(?<![A-Za-z])(?:{_CAPWORD},[ \t]+{_CAPWORD},?[ \t]+(?:and|&)[ \t]+{_CAPWORD}"
    rf"|(?:{_CAPWORD}[ \t,]+(?:(?:and|&)[ \t]+)?){{1,3}}(?:Inc|LLC|L\.L\.C|Ltd|PLC|plc|LLP|Corp|Corporation|Co|Company"
    rf"|Group|GmbH|AG|AB|Oy|S\.?A|S\.?p\.?A|B\.?V|N\.?V|Pty|Partners|Associates|Holdings|Limited"
    rf"|and Sons|& Sons|& Co)\.?(?![A-Za-z])"
    rf"|[A-Z][a-z]+-[A-Z][a-z]+(?=[ \t,]|$)(?![ \t]+[A-Z]))"
)


def company_spans(text: str) -> list[tuple[int, int]]:
    given, family = name_lists()
    out = []
    for m in COMPANY.finditer(text):
        words = [w.casefold() for w in re.findall(_CAPWORD, m.group())]
        distinct_surnames = all(w in family for w in words) and len(set(words)) == len(words)
        surnames_only = distinct_surnames and sum(w in given for w in words) <= 1
        if "-" in m.group() and " " not in m.group() and not (distinct_surnames and len(words) == 2):
            continue  # a hyphenated word is a company only when its halves are two surnames
        if "," in m.group() and not re.search(r"(?i:inc|llc|ltd|plc|llp|corp|co|company)\.?$", m.group()):
            if not surnames_only:
                continue  # "Alice, Bob and Carol" are people; "Moore, Mccall and Brown" a firm
        out.append(m.span())
    return out


# words that make a run of capitalised words an organisation in other languages ("Stichting
# Mathematisch Centrum", "Max-Planck-Institut", "Universidad Carlos III"): the small English model
# and the no-English-word pair rule read their other words as a person's name
FOREIGN_ORG_WORDS = frozenset(
    """stichting stiftung stiftelse fundación fundacion fundação fundacao fondazione fondation fundacja
    nadace säätiö verein vereniging gesellschaft genootschap asociación asociacion associação associacao
    associazione associació verband universiteit universität universitat universidad università
    université universite universidade uniwersytet univerzita egyetem yliopisto hochschule hogeschool
    rijksuniversiteit instituut institut instituto istituto instytut akademie akademia accademia
    academie centrum zentrum centro laboratorium laboratoire laboratorio ministerie ministerium
    ministerio ministère gemeente politecnico politécnica école ecole escuela scuola fakultät facultad
    faculté verlag gmbh mbh oyj kabushiki kaisha""".split()
)
_ORG_LINK = frozenset("de di del della des du van von der den voor für fur zur zum y e et und en of for".split())
_WORD_AFTER = re.compile(rf"[ \t]+([{_LETTERS}][{_LETTERS}'’\-.]*)")
_WORD_BEFORE = re.compile(rf"(?<![{_LETTERS}'’\-.])([{_LETTERS}][{_LETTERS}'’\-.]*)[ \t]+$")


def in_foreign_org(text: str, start: int, end: int, reach: int = 3) -> bool:
    """Whether ``text[start:end]`` or the capitalised words next to it on its line (up to
    ``reach`` each side, across linking words like "voor", "für") hold an organisation word."""

    def org(word: str) -> bool:
        return any(part in FOREIGN_ORG_WORDS for part in word.casefold().strip(".").split("-"))

    def run_word(m: re.Match[str] | None) -> str | None:
        return m.group(1) if m and (_capitalised(m.group(1)) or m.group(1) in _ORG_LINK) else None

    if any(org(w) for w in WORD.findall(text, start, end)):
        return True
    after, before = end, start
    for _ in range(reach):
        if (word := run_word(m := _WORD_AFTER.match(text, after))) is None:
            break
        if org(word):
            return True
        after = m.end()
    for _ in range(reach):
        if (word := run_word(m := _WORD_BEFORE.search(text, max(0, before - 64), before))) is None:
            break
        if org(word):
            return True
        before = m.start()
    return False


LOWER_WORDS = Path(__file__).with_name("data") / "en_lower_words.txt.gz"
# camel case (PyTorch, NumPy, DuckDB), not a surname's prefix (DeRemer, LaToya, McCall, DiCaprio)
_CAMEL = re.compile(
    r"(?<!^Mc)(?<!^Mac)(?<!^De)(?<!^Di)(?<!^Da)(?<!^Du)(?<!^La)(?<!^Le)(?<!^Van)(?<!^Von)(?<=[a-zà-ÿ])[A-Z]"
)
_WITH_INITIAL = re.compile(rf"{_CAPWORD}[ \t]+[A-Z]\.[ \t]+{_CAPWORD}")  # "Visa K. Godina"
_LEADING_INITIAL = re.compile(rf"[A-Z]\.[ \t]*{_CAPWORD}")  # "R. Fielding", "Z. Lu"
_BEFORE_EMAIL = re.compile(r"[ \t]*[<(\[][^\s<>()\[\]]+@")  # "Naman Gera <namangera15@gmail.com>"
_NON_LATIN = re.compile(r"[^\W\d_A-Za-zÀ-ɏ]")  # "Алексей", "Γιώργος"


@cache
def lower_case_words() -> frozenset[str]:
    """English words written in lower case far more often than capitalised (~92 K, from a large
    corpus's case-sensitive word counts; `benchmarks/make_en_lower_words.py` says how): "license",
    "harsh", "good", not "matt", "jain" or "einstein", which the WordNet list has as words."""
    with gzip.open(LOWER_WORDS, "rt", encoding="utf-8") as f:
        return frozenset(f.read().split())


def has_name_word(value: str, given: frozenset[str], family: frozenset[str]) -> bool:
    """Whether a word of ``value`` could be a person's: listed as a name, or a word not mostly
    written in lower case and not camel case ("Fredrik Lundh", "Harsh Jain", "Алексей"). Spans
    of the small model with none ("# Licensed under", "Copyright", "MIT License", "Beautiful
    Soup", "SOFTWARE") are not people; two words around a middle initial are a name's shape."""
    if _NON_LATIN.search(value) or _WITH_INITIAL.search(value):
        return True
    lower = lower_case_words()
    for word in WORD.findall(value):
        word = _POSSESSIVE.sub("", word)
        key = word.casefold()
        if len(word) < 2:
            continue
        if key in given or key in family:
            return True
        if _CAMEL.search(word):
            continue
        if not all(part in lower for part in key.split("-") if part) or unknown_word(word):
            return True
    return False


# a word the text writes in lower case as prose, not inside an e-mail, URL, path or identifier
_PROSE_LOWER = re.compile(r"(?<![\w@./:\\-])[a-zß-ÿ][a-zß-ÿ]+(?![\w@/\\-]|\.\w)")


def prose_lower_words(text: str) -> frozenset[str]:
    """The words ``text`` writes in lower case between spaces and punctuation ("import
    matplotlib", "a ray actor"); "fredrik@pythonware.com" and "ray.init" do not count."""
    return frozenset(_PROSE_LOWER.findall(text))


def reads_as_word(value: str, given: frozenset[str], family: frozenset[str], written_lower: frozenset[str]) -> bool:
    """Whether a PERSON span without a cue reads as a word, not a name. ``written_lower``:
    `prose_lower_words` of the text. Only where a lexicon cannot tell names from words (lone
    "Tosh", "Mucha", "Eros" are WordNet words and real names), the text itself decides:

    - a capitalised word the text also writes in lower case, where English seldom does or which
      is no English word ("Matplotlib ... import matplotlib", "Ray Serve ... a ray actor"), or a lone surname of the
      lists that English writes in lower case and so does the text ("Handler ... a handler",
      "Comment ... # comment"), when no other word of the span is a listed name or no English
      word ("Conglong Li" stays in a text with <li> tags);
    - a lone capitalised acronym no list has as a name ("MERCHANTABILITY", "TIFF", "MATLAB").
    """
    if _NON_LATIN.search(value) or _WITH_INITIAL.search(value) or _LEADING_INITIAL.match(value):
        return False
    words = [w for w in (_POSSESSIVE.sub("", w) for w in WORD.findall(value)) if len(w) >= 2]
    if not words:
        return False
    lower = lower_case_words()
    keys = [w.casefold() for w in words]
    lone = len(words) == 1

    def seen_lower(word: str, key: str) -> bool:
        if not word[0].isupper() or word.lower() not in written_lower:
            return False
        # an English word seldom written in lower case ("ray"), one no dictionary has
        # ("matplotlib"), or a lone listed surname ("handler"); not "will" or "mark"
        return key not in lower or unknown_word(word) or (lone and key in family and key not in given)

    product = {k for w, k in zip(words, keys, strict=True) if seen_lower(w, k)}
    others = [(w, k) for w, k in zip(words, keys, strict=True) if k not in product]
    if product and not any(k in given or k in family or unknown_word(w) for w, k in others):
        return True  # not "Conglong Li" in a text with <li> tags
    return lone and words[0].isupper() and keys[0] not in given and keys[0] not in family


_ARTICLE = re.compile(r"(?:The|the|A|An)[ \t]+")


def _after_article(text: str, start: int, end: int) -> int:
    """Where an entity's words start after a leading article ("The Takaya Oohara" version)."""
    m = _ARTICLE.match(text, start, end)
    return m.end() if m else start


def _before_possessive(text: str, start: int, end: int) -> int:
    """Where an entity ends before a closing possessive: spaCy tags "Morgan Fowler's killers" and
    "verses from Kolos Pálffy's Cautionary Tales" with ORG "Morgan Fowler's", a person's name."""
    m = _POSSESSIVE.search(text, start, end)
    return m.start() if m and m.start() > start else end


def _name_list(text: str, start: int, end: int, names: Sequence[tuple[int, int]]) -> bool:
    """An entity that is a comma list of found names ("They had 6: Selma, Selma, … and Selma",
    tagged ORG), not an organisation: every word but "and" inside a found name."""
    if "," not in text[start:end]:
        return False
    return all(
        w.group() == "and" or any(s <= w.start() and w.end() <= e for s, e in names)
        for w in WORD.finditer(text, start, end)
    )


def drop_non_names(text: str, findings: list[Finding], ents: Sequence[tuple[str, int, int]]) -> list[Finding]:
    """PERSON findings that are a country or language name go; a name-list finding (not spaCy's,
    not after a cue) inside what spaCy tagged an organisation, nationality, product or work
    ("from Jacobs", "Robinson Furniture") goes too, as does a span inside an organisation of
    another language (`in_foreign_org`) or one without a word a name is made of
    (`has_name_word`; not after a naming cue, not before an e-mail) or one that the text
    itself shows to be a word (`reads_as_word`: "Matplotlib ... import matplotlib")."""
    from pipelines.pii.en_address import person_named_like_street
    from pipelines.pii.engine import OTHER_LABELS, entity_start

    found_spans = [(f.start, f.end) for f in findings if f.entity == "PERSON"]
    others = [
        (_after_article(text, entity_start(text, s, e), e), _before_possessive(text, s, e))
        for label, s, e in ents
        if label in OTHER_LABELS and not _name_list(text, s, e, found_spans)
    ]
    companies = company_spans(text)
    not_names = _not_a_person()
    given, family = name_lists()
    listed_people = {
        (f.start, f.end)
        for f in findings
        if f.entity == "PERSON" and f.recognizer == "en_names" and text[f.start : f.end].casefold() in given
    }
    written_lower: frozenset[str] | None = None  # computed for the first span that needs it
    out = []
    for f in findings:
        if f.entity == "PERSON":
            value = text[f.start : f.end]
            if value.casefold() in not_names or _STREET_AFTER.match(text, f.end) or _NOT_IN_NAME.search(value):
                continue
            if _STREET_END.search(text, f.start, f.end) and not person_named_like_street(text, f.start, f.end):
                continue
            if any(s <= f.start and f.end <= e for s, e in companies) or in_foreign_org(text, f.start, f.end):
                continue
            after_cue = f.recognizer == "en_names" and f.score >= CUE_SCORE  # "my name is Will"
            if not after_cue and not _BEFORE_EMAIL.match(text, f.end):
                if not has_name_word(value, given, family):
                    continue  # spaCy's "# Licensed under", "Copyright", "MIT License", "NumPy Developers"
                if written_lower is None:
                    written_lower = prose_lower_words(text)
                if reads_as_word(value, given, family, written_lower):
                    continue  # "Python", "Matplotlib ... import matplotlib", "Fourier Transform"
            # inside a longer organisation ("Robinson Furniture"); the small model also tags
            # unfamiliar names as ORG ("Jouni had given", "The Takaya Oohara version": the
            # article is not part of the organisation), so a span that is the whole one stays
            if f.score < CUE_SCORE and any(s <= f.start and f.end <= e and (s, e) != f[1:3] for s, e in others):
                continue
        elif f.entity == "LOCATION" and (f.start, f.end) in listed_people:
            continue  # "Krisztián is ...": a listed given name the model read as a place
        out.append(f)
    return out


@cache
def dictionary_words() -> frozenset[str]:
    """The English words of the spaCy model's lemmatizer tables (WordNet's nouns, verbs,
    adjectives, adverbs; ~88 K), read from the installed package without loading the model."""
    from spacy.lookups import Lookups

    from pipelines.pii.engine import model_dir

    lookups = Lookups().from_disk(model_dir() / "lemmatizer" / "lookups")
    tables = [lookups.get_table(name) for name in ("lemma_index", "lemma_exc")]
    return frozenset(w for table in tables for forms in table.values() for w in forms)


_NOT_A_NAME_SHAPE = re.compile(rf"{_CAMEL.pattern}|[A-Z]{{2}}|['’](?!s?$)")  # PyData, COLRv, I'm
# inflections back to a dictionary form: "Renamed" -> rename, "Democratizing" -> democratize
_INFLECTIONS = (
    ("ies", "y"),
    ("ied", "y"),
    ("ing", "e"),
    ("ing", ""),
    ("ed", "e"),
    ("ed", ""),
    ("es", ""),
    ("s", ""),
    ("er", ""),
    ("er", "e"),
    ("est", ""),
    ("ly", ""),
)


def _dictionary_form(word: str) -> bool:
    words = dictionary_words()
    if word in words:
        return True
    return any(word.endswith(end) and word[: len(word) - len(end)] + add in words for end, add in _INFLECTIONS)


def unknown_word(word: str) -> bool:
    """No English word (nor an inflection of one; a hyphenated word whose parts all are is one),
    no acronym or camel case: a name ("Khasbulat", "Fillion-Robin"), not "Workshop", "Renamed",
    "Post-Training" or "PyData"."""
    word = _POSSESSIVE.sub("", word)
    if _NOT_A_NAME_SHAPE.search(word):
        return False
    parts = [w for w in word.casefold().split("-") if w]
    return not parts or not all(_dictionary_form(w) for w in parts)


def _lower_words(text: str) -> frozenset[str]:
    """The words ``text`` writes in lower case (a name is not one of them: "bump the version")."""
    return frozenset(w for w in re.findall(rf"(?<![{_LETTERS}])[a-zß-ÿ]+(?![{_LETTERS}])", text))


def propagate(text: str, findings: list[Finding]) -> list[Finding]:
    """Every other occurrence in the document of a found name, or of one of its words, is that
    person too: "Maja Hermansen ... Hermansen's song", "They had 6: Esjar, Esjar, …"."""
    from pipelines.pii.gate import common_words

    people = [f for f in findings if f.entity == "PERSON"]
    if not people:
        return findings
    given, family = name_lists()
    skip = common_words() | street_words()
    strict = _skip_words()
    lower_text = text == text.lower()
    lower_words: frozenset[str] | None = None  # computed for the first unlisted name word
    words = set()
    for f in people:
        value = text[f.start : f.end]
        parts = [_POSSESSIVE.sub("", w) for w in WORD.findall(value)]
        # the words of a longer name only when they are listed names (spaCy's "Superior
        # Appraisals's Matthias Himmel" must not spread "Appraisals"), or, in a name of 2-3
        # name-like words, those that are no English word ("You can tell Khasbulat was a huge
        # Khasbulat L. Shishani fan")
        long = [w for w in parts if len(w) >= 2]
        whole = 2 <= len(long) <= 3 and all(
            w.casefold() not in strict and (lower_text or _capitalised(w)) for w in long
        )
        for w in parts:
            listed = len(set(parts)) == 1 or w.casefold() in given or w.casefold() in family
            # an unlisted word spreads only if the text never writes it in lower case ("Bump
            # jiter …", "bump the version"): a name is not a word of the text
            # (not in an all-lower-case text, where every word is written in lower case)
            if not listed and whole and not lower_text and unknown_word(w):
                if lower_words is None:
                    lower_words = _lower_words(text)
                listed = w.lower() not in lower_words
            if listed and len(w) >= 2 and w.casefold() not in skip and (lower_text or _capitalised(w) or w.isupper()):
                words.add(w)
    if not words:
        return findings
    covered = bytearray(len(text) + 1)
    for f in findings:
        covered[f.start : f.end] = b"\x01" * (f.end - f.start)
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    extra = []
    for m in re.finditer(rf"(?<![{_LETTERS}'’\-])(?:{alternation})(?![{_LETTERS}])", text):
        if not any(covered[m.start() : m.end()]):
            extra.append(Finding("PERSON", m.start(), m.end(), "en_names", REPEAT_SCORE))
    return findings + extra


def en_findings(
    texts: Sequence[str],
    ents: Sequence[Sequence[tuple[str, int, int]]] | None = None,
    *,
    lower: Sequence[bool] | None = None,
) -> list[list[Finding]]:
    """PERSON findings of the cue, name-list, speaker/subject and single-name recognizers per
    text, less those that `drop_non_names` rejects given spaCy's entities ``ents``. ``lower[i]``:
    whether the whole document is lower-case (``texts[i]`` may be a masked view of it)."""
    out = []
    for i, t in enumerate(texts):
        low = lower[i] if lower is not None else None
        found = cue_names(t, low) + list_names(t, low) + role_names(t, low) + single_names(t, low) + pair_names(t, low)
        out.append(drop_non_names(t, with_suffixes(t, found), ents[i] if ents else ()))
    return out


# a degree or generational suffix after a name: "Daniel Jones MD", "Ann Lee, PhD", "John Roe Jr."
_NAME_SUFFIX = re.compile(r",?[ \t]+(?:MD|M\.D\.|PhD|Ph\.D\.|DDS|DMD|DVM|RN|Jr\.?|Sr\.?|II|III|IV|Esq\.?)(?![A-Za-z])")


def with_suffixes(text: str, findings: list[Finding]) -> list[Finding]:
    """PERSON findings of two or more words extended over a following suffix: spaCy reads "Daniel
    Jones MD" as an organisation, and the name inside it would be dropped as part of one."""
    out = []
    for f in findings:
        if f.entity == "PERSON" and " " in text[f.start : f.end] and (m := _NAME_SUFFIX.match(text, f.end)):
            f = Finding(f.entity, f.start, m.end(), f.recognizer, f.score)
        out.append(f)
    return out


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
