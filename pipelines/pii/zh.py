"""Chinese personal data in court documents and contact text: names, addresses, places.

Two sources, merged by `recognizers.resolve_overlaps`:

* **legal-context patterns** (regexes over the whole text, no model): a name after a party role
  (原告/被告/上诉人/委托诉讼代理人/…, Traditional forms too, with an optional parenthesis such as
  （原审被告） and a colon), further names of a list after it (、和及), a name before a
  biographical cue (，男 / ，女 / ，身份证… / ，1980年…出生 / ，汉族 / ，住…), an address after
  an address cue (住/住址/住所地/户籍地/地址…) up to the next clause break, postcodes after
  邮编; a letter's addressee (a line opening "涂成您好") and signer (a name alone on the line
  after 此致 / 敬礼);
* **LAC** (`pipelines.pii.lac`) per sentence: PER tokens -> PERSON; runs of LOC tokens (with the
  number/unit tokens that follow them: 88号, 3栋, 1201室) -> ADDRESS when they reach street
  level, else LOCATION. ORG and TIME are not personal data here.

Names the court already anonymised (张某, 李某某, 王某甲, 王xx, 赵×) are not personal data: they
are never reported, whichever source proposes them. A PERSON must start with a surname (single
or compound) or be a transliterated name with "·", and its given name must not contain
function characters (的, 在, 对, 公司's 司 …), which keeps role patterns from reading
"被告公司" or "原告的" as names.

Documents are split into sentences at 。！？；!?; and line breaks (long ones at commas), with
exact offsets; LAC sees each sentence once per process (tags depend on the sentence alone, see
`lac`, so a per-process cache of recent sentences is safe and deterministic).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipelines.pii.gate import SentenceCache, zh_candidate
from pipelines.pii.recognizers import Finding
from pipelines.pii.zh_lexicon import (
    ADDRESS_CUES,
    CITY_SUFFIX,
    COMPOUND_SURNAMES,
    DISTRICT_SUFFIX,
    NAME_END,
    NOT_IN_GIVEN_NAME,
    NOT_NAMES,
    PROVINCE_SUFFIX,
    PROVINCES,
    ROLES,
    STREET_SUFFIX,
    SURNAMES,
    TOWN_SUFFIX,
    VILLAGE_SUFFIX,
)

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SURNAME = "(?:" + "|".join(sorted(COMPOUND_SURNAMES)) + "|[" + "".join(sorted(SURNAMES)) + "])"
_NAME = rf"{_SURNAME}[{HAN}]{{1,3}}?"
_ROLE = "(?:" + "|".join(map(re.escape, ROLES)) + ")"
_PAREN = r"(?:[（(][^（）()\n]{1,15}[）)])?"

# 张某, 李某某, 王某甲, 刘某1, 王xx, 赵××, 钱** : a court's pseudonym, not a person's name
ANONYMISED = re.compile(
    rf"[{HAN}]{{1,2}}(?:某{{1,3}}[甲乙丙丁戊己庚辛壬癸一二三四五六七八九十0-9]?|[xX×＊*ｘＸ]{{1,3}}|[甲乙丙丁]某)"
)
_AFTER_NAME = (
    rf"(?=[{NAME_END}]|律师|律師|先生|女士|同志|出庭|到庭|作证|作證|陈述|陳述|辩称|辯稱|诉称|訴稱|认为|認為|提出"
    rf"|签字|簽字|签名|不服|系|是|为|為|已|未|$)"
)
ROLE_NAME = re.compile(rf"{_ROLE}{_PAREN}[：:]?[ \t\u3000]?(?P<name>{_NAME}){_AFTER_NAME}")
LIST_NEXT = re.compile(rf"[、和及与][ \t]?(?P<name>{_NAME}){_AFTER_NAME}")
_BIO = rf"(?:男|女|身份证|身份證|公民身份|出生|生于|\d{{4}}年|[{HAN}]{{1,3}}族|住|户籍|戶籍|籍贯|籍貫)"
BIO_NAME = re.compile(rf"(?<![{HAN}])(?P<name>{_SURNAME}[{HAN}]{{1,2}}?)(?=[，,（(][ \t]?{_BIO})")
# a letter's addressee and signer: "涂成您好：" / "张伟先生，你好" at a line's start, and a line that
# is only a name after the closing 此致 (敬礼) — LAC reads 杨梅 alone as the fruit
_TITLE = "(?:先生|女士|小姐|律师|律師|老师|老師|同志)"
GREETING_NAME = re.compile(rf"^[ \t\u3000]*(?P<name>{_NAME})(?={_TITLE}?[，,]?[ \t]?(?:您好|你好))", re.M)
SIGNER_NAME = re.compile(
    rf"(?:此致|敬礼|敬禮)[！!]?[ \t\u3000]*\n(?:[ \t\u3000]*(?:敬礼|敬禮)[！!]?[ \t\u3000]*\n)?"
    rf"[ \t\u3000]*(?!敬礼|敬禮)(?P<name>{_NAME})[ \t\u3000]*(?=\n|$)"
)
_CUE = "(?:" + "|".join(map(re.escape, ADDRESS_CUES)) + ")"
ADDRESS_AFTER_CUE = re.compile(
    rf"{_CUE}(?![院宿房宅处處所地])[：:]?(?:为|是|在|於|于)?[ \t]?(?P<addr>[^，,。；;\n（()）、]{{4,60}})"
)
POSTCODE = re.compile(r"(?:邮编|邮政编码|郵編|郵政編碼|郵遞區號)[：: ]?(?P<addr>\d{6})(?!\d)")
# what makes a captured phrase an address: an administrative unit or a numbered street-level part
_ADMIN = rf"(?:{PROVINCES}|[{HAN}](?:{PROVINCE_SUFFIX}|{CITY_SUFFIX}|{DISTRICT_SUFFIX}|{TOWN_SUFFIX}))"
_NUMBERED = r"[0-9０-９一二三四五六七八九十百零〇A-Za-z]+(?:号|號|室|栋|棟|幢|座|楼|樓|层|層|单元|單元|户|戶|组|組)"
_STREET = rf"[{HAN}](?:{STREET_SUFFIX}|{VILLAGE_SUFFIX})"
ADDRESS_SHAPE = re.compile(rf"{_ADMIN}.*(?:{_NUMBERED}|{_STREET})|{_STREET}.*{_NUMBERED}")
ADDRESS_TAIL = re.compile(rf"^(?:{_NUMBERED}|之[0-9]+|[0-9]+)+$")
STREET_LEVEL = re.compile(rf"(?:{_NUMBERED}|{_STREET}|[村组組])$|{_NUMBERED}")
SENTENCE = re.compile(r"[^。！？；!?;\n]*[。！？；!?;\n]?")
CLAUSE_BREAK = re.compile(r"[，,、：:\s]")
MAX_SENTENCE = 128  # characters per LAC input; longer sentences are cut at a comma
HAS_HAN = re.compile(f"[{HAN}]")
ALL_HAN = re.compile(f"[{HAN}]+")

ROLE_SCORE, BIO_SCORE, LETTER_SCORE, LAC_PERSON_SCORE, REPEAT_SCORE = 0.9, 0.9, 0.85, 0.85, 0.6
ADDRESS_CUE_SCORE, LAC_ADDRESS_SCORE, LAC_LOCATION_SCORE = 0.9, 0.8, 0.7
CACHE_SENTENCES = 200_000


def is_anonymised(name: str) -> bool:
    return ANONYMISED.fullmatch(name) is not None or "某" in name


def plausible_name(name: str) -> bool:
    """A real person's name as written in Chinese text: surname + 1-3 given characters without
    function characters, or a transliterated name with a middle dot; never a court pseudonym."""
    if is_anonymised(name) or name in NOT_NAMES or name[:2] in NOT_NAMES:
        return False
    if "·" in name or "•" in name:
        return 3 <= len(name) <= 15 and not name.startswith(("·", "•")) and not name.endswith(("·", "•"))
    if not 2 <= len(name) <= 4 or not ALL_HAN.fullmatch(name):
        return False
    given = name[2:] if name[:2] in COMPOUND_SURNAMES else name[1:] if name[0] in SURNAMES else None
    return bool(given) and not (set(given) & NOT_IN_GIVEN_NAME)


def sentence_spans(text: str, max_chars: int = MAX_SENTENCE) -> list[tuple[int, int]]:
    """(start, end) of every sentence that has a Han character; long ones cut at a clause break."""
    spans: list[tuple[int, int]] = []
    for m in SENTENCE.finditer(text):
        s, e = m.span()
        while e - s > max_chars:
            cut = -1
            for b in CLAUSE_BREAK.finditer(text, s + max_chars // 2, s + max_chars):
                cut = b.end()
            cut = cut if cut != -1 else s + max_chars
            if HAS_HAN.search(text, s, cut):
                spans.append((s, cut))
            s = cut
        if e > s and HAS_HAN.search(text, s, e):
            spans.append((s, e))
    return spans


def rule_findings(text: str) -> list[Finding]:
    """Role, biographical and address-cue patterns (no model)."""
    out: list[Finding] = []
    for m in ROLE_NAME.finditer(text):
        if plausible_name(m.group("name")):
            out.append(Finding("PERSON", *m.span("name"), "zh_role", ROLE_SCORE))
            pos = m.end("name")
            while (nxt := LIST_NEXT.match(text, pos)) and plausible_name(nxt.group("name")):
                out.append(Finding("PERSON", *nxt.span("name"), "zh_role", ROLE_SCORE))
                pos = nxt.end("name")
    for m in BIO_NAME.finditer(text):
        if plausible_name(m.group("name")):
            out.append(Finding("PERSON", *m.span("name"), "zh_bio", BIO_SCORE))
    for pattern in (GREETING_NAME, SIGNER_NAME):
        for m in pattern.finditer(text):
            if plausible_name(m.group("name")):
                out.append(Finding("PERSON", *m.span("name"), "zh_letter", LETTER_SCORE))
    for m in ADDRESS_AFTER_CUE.finditer(text):
        addr = m.group("addr").rstrip()
        if ADDRESS_SHAPE.search(addr):
            start = m.start("addr")
            out.append(Finding("ADDRESS", start, start + len(addr), "zh_address", ADDRESS_CUE_SCORE))
    for m in POSTCODE.finditer(text):
        out.append(Finding("ADDRESS", *m.span("addr"), "zh_postcode", ADDRESS_CUE_SCORE))
    return out


def _lac_findings(sentence: str, base: int, tokens: Sequence[tuple[int, int, str]]) -> list[Finding]:
    out: list[Finding] = []
    i, n = 0, len(tokens)
    while i < n:
        start, end, tag = tokens[i]
        if tag == "PER":
            if plausible_name(sentence[start:end]):
                out.append(Finding("PERSON", base + start, base + end, "lac", LAC_PERSON_SCORE))
            i += 1
            continue
        if tag != "LOC":
            i += 1
            continue
        j = i + 1  # a run of places, then the numbered parts that follow (88号, 3栋, 1201室)
        while j < n and tokens[j][2] == "LOC":
            j += 1
        while j < n and ADDRESS_TAIL.match(sentence[tokens[j][0] : tokens[j][1]]):
            j += 1
        run_end = tokens[j - 1][1]
        phrase = sentence[start:run_end]
        if STREET_LEVEL.search(phrase):
            out.append(Finding("ADDRESS", base + start, base + run_end, "lac", LAC_ADDRESS_SCORE))
        else:
            out.append(Finding("LOCATION", base + start, base + run_end, "lac", LAC_LOCATION_SCORE))
        i = j
    return out


Token = tuple[int, int, str]
_CACHE: SentenceCache[list[Token]] = SentenceCache(CACHE_SENTENCES)


def _tag(sentences: list[str]) -> list[list[Token]]:
    from pipelines.pii.lac import tagger

    return [[tuple(t) for t in toks] for toks in tagger().tag(sentences)]  # type: ignore[misc]


def lac_tokens(sentences: Sequence[str]) -> list[list[Token]]:
    """LAC tokens per sentence, through the per-process cache of recent sentences."""
    return _CACHE.get_many(sentences, _tag)


def candidate_pieces(texts: Sequence[str], *, gate: bool = True) -> list[tuple[int, int, int]]:
    """(text index, start, end) of the sentences LAC looks at (with ``gate``, those
    `gate.zh_candidate` accepts)."""
    pieces: list[tuple[int, int, int]] = []
    for i, t in enumerate(texts):
        pieces.extend((i, s, e) for s, e in sentence_spans(t) if not gate or zh_candidate(t[s:e]))
    return pieces


def zh_findings(texts: Sequence[str], *, gate: bool = True) -> list[list[Finding]]:
    """PERSON / ADDRESS / LOCATION findings per text (overlaps not yet resolved), LAC batched
    over the sentences of all ``texts`` (with ``gate``, those `gate.zh_candidate` accepts)."""
    out = [rule_findings(t) for t in texts]
    pieces = candidate_pieces(texts, gate=gate)
    sentences = [texts[i][s:e] for i, s, e in pieces]
    for (i, s, _), sentence, toks in zip(pieces, sentences, lac_tokens(sentences), strict=True):
        out[i].extend(_lac_findings(sentence, s, toks))
    anon = [[m.span() for m in ANONYMISED.finditer(t)] for t in texts]
    return [
        propagate(t, [f for f in fs if f.entity != "PERSON" or not any(a < f.end and f.start < b for a, b in spans)])
        for t, fs, spans in zip(texts, out, anon, strict=True)
    ]


def propagate(text: str, findings: list[Finding]) -> list[Finding]:
    """Every other occurrence in the document of a name found in it is that person too: a party
    named once after 原告 is written bare later (……向甘晶借款), where neither the role patterns nor
    LAC (which reads the sentence alone) may see a name."""
    names = {text[f.start : f.end] for f in findings if f.entity == "PERSON"}
    names = {n for n in names if plausible_name(n)}
    if not names:
        return findings
    covered = bytearray(len(text) + 1)
    for f in findings:
        if f.entity == "PERSON":
            covered[f.start : f.end] = b"\x01" * (f.end - f.start)
    extra = []
    for m in re.finditer("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)), text):
        if not any(covered[m.start() : m.end()]):
            extra.append(Finding("PERSON", m.start(), m.end(), "zh_repeat", REPEAT_SCORE))
    return findings + extra
