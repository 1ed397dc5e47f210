"""Structured-PII recognizers: one compiled pattern plus a candidate validator per kind.

Boundaries are explicit ASCII look-arounds, never ``\\b``: in Python's Unicode regexes a CJK
character is a word character, so ``\\b`` finds no boundary in ``电话13812345678`` or
``邮箱a@b.com``. Patterns never consume the NUL separator that `scan_texts` puts between the
documents of a shard, so one ``finditer`` over a whole shard cannot match across documents.

The same specs back presidio `PatternRecognizer`s (`engine.presidio_recognizers`) so an ordinary
presidio ``AnalyzerEngine`` finds exactly what the shard scanner finds. This module imports
neither presidio nor spaCy, so the audit scanner stays light.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pipelines.pii import validators as v
from pipelines.pii.entities import ALL_ENTITIES, NER_ENTITIES, STRUCTURED_ENTITIES

SEPARATOR = "\n\x00\n"  # between documents in a joined shard; no pattern consumes \x00


class Finding(NamedTuple):
    entity: str
    start: int
    end: int
    recognizer: str
    score: float


@dataclass(frozen=True)
class Spec:
    """One recognizer: ``pattern`` finds candidates, ``validate`` accepts a prefix of the value
    (group ``group``), ``reject_before`` vetoes a candidate by the text just before it. With
    ``named_alternatives`` the recognizer name is the name of the alternative that matched."""

    name: str
    entity: str
    pattern: str
    score: float
    validate: Callable[[str], int | None] = v.accept
    group: int = 0
    reject_before: str | None = None
    named_alternatives: bool = False
    # context scoring (presidio's context enhancement, per candidate): ``rescore(text, start,
    # end)`` gives the score; candidates scored below ``keep_at`` are not findings at all
    rescore: Callable[[str, int, int], float] | None = None
    keep_at: float = 0.5

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.pattern)

    @property
    def reject_regex(self) -> re.Pattern[str] | None:
        return _compiled(self.reject_before) if self.reject_before else None


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(pattern)
    return _CACHE[pattern]


# Words that make a phone- or card-shaped number an order/case/tracking number (searched in the
# 20 characters before the candidate).
_REFERENCE_WORDS = (
    r"order|invoice|tracking|sku|serial|ref(?:erence)?|case\s*(?:no|number|#)|item|parcel|shipment|"
    r"订单|单号|编号|流水|运单|批号|合同号|案号"
)
NOT_A_PHONE = rf"(?i:{_REFERENCE_WORDS}|account|acct|账号|卡号)[^\n]{{0,10}}$"
NOT_A_CARD = rf"(?i:{_REFERENCE_WORDS}|身份证|证件|passport)[^\n]{{0,10}}$"
CONTEXT_WINDOW = 20

_EMAIL = (
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_CN_MOBILE = r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ \-]?|\(\+?86\)[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}){2}(?!\d)"
_CN_LANDLINE = r"(?<![0-9A-Za-z])(?:\(0\d{2,3}\)[ \-]?|0\d{2,3}-)[2-9]\d{6,7}(?:-\d{1,4})?(?!\d)"
_NANP = (
    r"(?<![0-9A-Za-z+\-])(?:(?:\+1|001|1)[ .\-]?)?(?:\([2-9]\d{2}\)[ ]?|[2-9]\d{2}[ .\-]?)"
    r"[2-9]\d{2}[ .\-]?\d{4}(?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,5})?(?!\d)"
)
_INTL = r"(?<![0-9A-Za-z+])\+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,5}\)?){2,6}(?!\d)"
# a comma before the number only counts against it after a digit (1,000); "Office\,0532…-Fax" (a
# vCard-escaped list of numbers) is a phone
_NATIONAL = (
    r"(?<![0-9A-Za-z+\-./:#$€£¥])(?<!\d,)(?:\(\d{1,5}\)[ .\-]?)?\d{1,13}(?:(?:[ .\-/]|\) ?)\d{1,8}){0,5}"
    r"(?![0-9A-Za-z]|-\d|[.,/]\d)"
)
_PHONE_CUE_BEFORE = re.compile(
    r"(?i:phone|tel\b|tel\.|telephone|mobile|cell|contact|call|reach|dial|fax|text\s+me|sms|whatsapp|"
    r"messages?\s+to|registered|desk|office|number|hotline|ring|answering\s+at|"
    r"电话|電話|手机|手機|联系|聯絡|致电|传真|傳真)[^\n\d]{0,25}$"
)
_PHONE_CUE_AFTER = re.compile(r"^[ \t]{0,3}[-–]?(?i:\(?(?:office|fax|mobile|cell|home|work|tel|phone)\b)")


def national_phone_score(text: str, start: int, end: int) -> float:
    """0.3 for a bare candidate; a phone cue within 40 characters before (call, phone, fax, 电话,
    ...) or a line label after (office, fax, mobile) raises it to 0.7, a phone-like shape
    (trunk 0, area code in parentheses, dotted groups) to 0.55; both: 0.75."""
    score = 0.3
    if _PHONE_CUE_BEFORE.search(text, max(0, start - 40), start) or _PHONE_CUE_AFTER.match(text[end : end + 14]):
        score += 0.4
    if v.national_phone_shape(text[start:end]):
        score += 0.25 if score < 0.5 else 0.05
    return score


_PRC_ID = r"(?<!\d)[1-9]\d{16}[0-9Xx](?![0-9A-Za-z])"
_CARD = r"(?<![0-9\-])(?:[2-6]|1(?=800)|0(?=604))\d(?:[ \-]?\d){10,17}(?!\d)"
# upper case, or all lower case as typed in chat ("my iban is gb21ajwj49665860496341"): `v.iban`
# rejects mixed case
_IBAN = r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?<![0-9.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\d|\.\d)"
_IPV6 = r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])"
_URL_CREDENTIALS = (
    r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s/?#@:\x00]+:[^\s/?#@\x00]+@"
    r"[A-Za-z0-9.\-]+(?::\d{1,5})?"
)
_PRIVATE_KEY = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[^\x00]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
)
_API_KEYS = (
    r"(?<![A-Za-z0-9_\-])(?:"
    r"(?P<aws_access_key>(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16})"
    r"|(?P<alibaba_access_key>LTAI[A-Za-z0-9]{12,20})"
    r"|(?P<tencent_secret_id>AKID[A-Za-z0-9]{32})"
    r"|(?P<google_api_key>AIza[0-9A-Za-z_\-]{35})"
    r"|(?P<github_token>gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
    r"|(?P<slack_token>xox[abposr]-[A-Za-z0-9\-]{10,})"
    r"|(?P<stripe_key>[sr]k_(?:live|test)_[A-Za-z0-9]{16,})"
    r"|(?P<openai_key>sk-(?:proj-)?[A-Za-z0-9_\-]{20,})"
    r"|(?P<jwt>eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"
    r")(?![A-Za-z0-9_\-])"
)
_AWS_SECRET = r"(?i:aws_?secret_?(?:access_?)?key)[\"']?[ \t]*[:=][ \t]*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
_BEARER = r"(?<![A-Za-z])[Bb]earer[ \t]+([A-Za-z0-9\-._~+/]{16,}=*)"
_ASSIGNED_SECRET = (
    r"(?:(?<![A-Za-z])(?i:api[_\-]?key|apikey|secret[_\-]?key|client[_\-]?secret|access[_\-]?token|"
    r"auth[_\-]?token|password|passwd|pwd)|密码|口令|密钥)[\"']?[ \t]*[:=：][ \t]*[\"']?"
    r"([^\s\"'\x00,;，。；]{8,})"
)

SPECS: tuple[Spec, ...] = (
    Spec("email", "EMAIL", _EMAIL, 0.9, v.email),
    Spec("cn_mobile", "PHONE", _CN_MOBILE, 0.85, v.cn_mobile, reject_before=NOT_A_PHONE),
    Spec("cn_landline", "PHONE", _CN_LANDLINE, 0.6, reject_before=NOT_A_PHONE),
    Spec("nanp_phone", "PHONE", _NANP, 0.7, v.nanp_phone, reject_before=NOT_A_PHONE),
    Spec("intl_phone", "PHONE", _INTL, 0.65, v.intl_phone, reject_before=NOT_A_PHONE),
    Spec(
        "national_phone",
        "PHONE",
        _NATIONAL,
        0.3,
        v.national_phone,
        reject_before=NOT_A_PHONE,
        rescore=national_phone_score,
    ),
    Spec("prc_id", "PRC_ID", _PRC_ID, 1.0, v.prc_id),
    Spec("credit_card", "CREDIT_CARD", _CARD, 0.9, v.card, reject_before=NOT_A_CARD),
    Spec("iban", "IBAN", _IBAN, 1.0, v.iban),
    Spec("ipv4", "IP_ADDRESS", _IPV4, 0.8, v.public_ip),
    Spec("ipv6", "IP_ADDRESS", _IPV6, 0.8, v.ipv6),
    Spec("url_credentials", "URL_CREDENTIALS", _URL_CREDENTIALS, 0.95),
    Spec("private_key", "SECRET", _PRIVATE_KEY, 1.0),
    Spec("api_key", "SECRET", _API_KEYS, 0.95, named_alternatives=True),
    Spec("aws_secret_key", "SECRET", _AWS_SECRET, 0.95, group=1),
    Spec("bearer_token", "SECRET", _BEARER, 0.9, group=1),
    Spec("assigned_secret", "SECRET", _ASSIGNED_SECRET, 0.6, v.secret_value, group=1),
)


def specs_for(entities: Sequence[str] | None = None) -> tuple[Spec, ...]:
    if entities is None:
        return SPECS
    unknown = set(entities) - set(ALL_ENTITIES)
    if unknown:
        raise ValueError(f"unknown entity type(s) {sorted(unknown)}; known: {', '.join(ALL_ENTITIES)}")
    return tuple(s for s in SPECS if s.entity in entities)


def iter_matches(spec: Spec, text: str) -> Iterator[Finding]:
    """Validated matches of one spec in ``text`` (a document or a whole joined shard)."""
    regex, reject = spec.regex, spec.reject_regex
    pos = 0
    while (m := regex.search(text, pos)) is not None:
        start, end = m.span(spec.group)
        accepted = spec.validate(text[start:end])
        if not accepted:
            # a rejected candidate may hide a valid one starting inside it
            pos = m.start() + 1
            continue
        # an over-long match trimmed by its validator: the rest is searched again
        pos = start + accepted if accepted < end - start else m.end()
        if reject is not None and reject.search(text, max(0, start - CONTEXT_WINDOW), start):
            continue
        name = (m.lastgroup or spec.name) if spec.named_alternatives else spec.name
        score = spec.score if spec.rescore is None else spec.rescore(text, start, start + accepted)
        if score >= spec.keep_at:
            yield Finding(spec.entity, start, start + accepted, name, score)


def find_structured(text: str, specs: Sequence[Spec] = SPECS) -> list[Finding]:
    """All structured findings in one text, overlaps resolved."""
    return resolve_overlaps([f for spec in specs for f in iter_matches(spec, text)])


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the best of overlapping findings: structured before NER (a name tagged across an
    e-mail must not shrink the e-mail's redaction), then higher score, longer span, earlier."""
    ranked = sorted(
        findings, key=lambda f: (f.entity in NER_ENTITIES, -f.score, -(f.end - f.start), f.start, f.recognizer)
    )
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: (f.start, f.end))


def scan_texts(texts: Sequence[str], specs: Sequence[Spec] = SPECS) -> list[list[Finding]]:
    """Structured findings per text (overlaps not yet resolved), one regex pass per recognizer
    over all texts joined by `SEPARATOR`; offsets mapped back by bisection."""
    out: list[list[Finding]] = [[] for _ in texts]
    if not texts:
        return out
    starts = [0] * len(texts)
    pos = 0
    for i, t in enumerate(texts):
        starts[i] = pos
        pos += len(t) + len(SEPARATOR)
    joined = SEPARATOR.join(texts)
    for spec in specs:
        for f in iter_matches(spec, joined):
            i = bisect.bisect_right(starts, f.start) - 1
            base = starts[i]
            if f.end - base > len(texts[i]):
                continue  # only possible when a text itself contains the separator
            out[i].append(f._replace(start=f.start - base, end=f.end - base))
    return out


__all__ = [
    "ALL_ENTITIES",
    "NER_ENTITIES",
    "SPECS",
    "STRUCTURED_ENTITIES",
    "Finding",
    "Spec",
    "find_structured",
    "iter_matches",
    "resolve_overlaps",
    "scan_texts",
    "specs_for",
]
