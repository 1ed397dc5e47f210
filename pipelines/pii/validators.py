"""Checks applied to regex candidates only (never to whole texts): checksums, ranges, lengths.

Each validator takes the matched text and returns the length of the accepted prefix, or None to
reject it. Returning a prefix lets a greedy pattern over-match (a card number followed by another
digit group) and the validator trim it back, instead of losing the whole candidate.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date

import phonenumbers

from pipelines.pii.offline import offline_extractor

_SEP = re.compile(r"[ \-.()/]")

# GB 11643-1999: weights of the 17 body digits and the check character for (sum mod 11).
PRC_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
PRC_ID_CHECK = "10X98765432"

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def prc_id_ok(value: str) -> bool:
    """18-character resident id: plausible region, birth date and the GB 11643 check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    if value[0] not in "123456789":
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2100:
        return False
    check = PRC_ID_CHECK[sum(int(d) * w for d, w in zip(value[:17], PRC_ID_WEIGHTS, strict=True)) % 11]
    return value[17].upper() == check


def prc_id(text: str) -> int | None:
    return len(text) if prc_id_ok(text) else None


def _id_shaped(digits: str) -> bool:
    """18 digits with a birth date at 7-14: a resident id with a wrong check digit, not a card."""
    if len(digits) != 18:
        return False
    try:
        return 1900 <= date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14])).year <= 2100
    except ValueError:
        return False


def card(text: str) -> int | None:
    """Luhn over 12-19 digits with one consistent separator; trailing digit groups are trimmed
    off until the rest validates (``4111 1111 1111 1111 2024`` -> the first four groups)."""
    seps = {c for c in text if not c.isdigit()}
    if len(seps) > 1:
        return None
    groups = re.split(r"[ -]", text) if seps else [text]
    while groups:
        digits = "".join(groups)
        if 12 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits) and not _id_shaped(digits):
            return len(" ".join(groups))  # separator is one char wide, whichever it is
        if len(groups) == 1:
            return None
        groups = groups[:-1]
    return None


def iban(text: str) -> int | None:
    """Country length from the IBAN registry, then ISO 7064 mod 97-10; spaces allowed every 4.
    Upper case, or lower case and exactly that long (a hex digest may start like one, "de12ab…");
    never mixed case."""
    want = IBAN_LENGTHS.get(text[:2].upper())
    if want is None or not (text.isupper() or text.islower()):
        return None
    if text.islower() and len(text.replace(" ", "")) != want:
        return None
    n = 0
    for i, ch in enumerate(text):
        if ch != " ":
            n += 1
            if n == want:
                compact = text[: i + 1].replace(" ", "")
                rearranged = compact[4:] + compact[:4]
                number = "".join(str(int(c, 36)) for c in rearranged)
                return i + 1 if int(number) % 97 == 1 else None
    return None


def public_ip(text: str) -> int | None:
    """Only globally routable addresses are personal data; private, loopback, documentation and
    other special-purpose ranges are kept."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return len(text) if addr.is_global and not addr.is_multicast else None


def ipv6(text: str) -> int | None:
    if text.count(":") < 7 and "::" not in text:
        return None
    return public_ip(text)


def email(text: str) -> int | None:
    """The domain must end in a public suffix from tldextract's bundled snapshot (no network).
    ``example.com`` counts (redacting it is harmless); RFC 2606 ``.test``/``.invalid`` names are
    no public suffix, which is why pseudonyms use them."""
    domain = text.rsplit("@", 1)[1]
    if ".." in text or domain.startswith("-"):
        return None
    # a registered suffix is enough: "tw.cn" is itself a public suffix, and x@tw.cn still a mailbox
    return len(text) if offline_extractor()(domain).suffix else None


def phone_digits(text: str, lo: int, hi: int) -> bool:
    n = sum(c.isdigit() for c in text)
    return lo <= n <= hi


def nanp_phone(text: str) -> int | None:
    # drop an extension for the digit count: "x1234", "ext. 12"
    core = re.split(r"\s?(?:x|ext\.?|extension)\s?", text, maxsplit=1)[0]
    return len(text) if phone_digits(core, 10, 11 + 2) else None


def intl_phone(text: str) -> int | None:
    """``+CC ...`` numbers: libphonenumber decides whether the digits are a possible number."""
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    return len(text) if phonenumbers.is_possible_number(parsed) else None


_DATE = re.compile(r"\d{1,4}[.\-/]\d{1,2}[.\-/]\d{1,4}")
_IP_LIKE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_FICTIONAL = re.compile(r"555[ .\-]?01\d\d")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d ?[\-–] ?(?:19|20)?\d\d")


def national_phone(text: str) -> int | None:
    """A phone number written without country code, as the regions write them at home: 7-13
    digits (6 for the smallest numbering plans), no date, IP address or year range shape."""
    digits = sum(c.isdigit() for c in text)
    if not 6 <= digits <= 13:
        return None
    if _DATE.fullmatch(text) or _IP_LIKE.fullmatch(text) or _YEAR_RANGE.fullmatch(text):
        return None
    if _FICTIONAL.fullmatch(text):
        return None  # 555-0100..0199: reserved for fiction, what pseudonyms use
    return len(text)


def national_phone_shape(text: str) -> bool:
    """Written like a phone number even without a cue: a trunk 0 or an area code in parentheses
    with >= 8 digits, or >= 3 dot-separated groups (01.84.17.61.18, 930.167.3943)."""
    digits = sum(c.isdigit() for c in text)
    if digits < 8:
        return False
    if text.startswith(("(", "0")) and not text.startswith("00"):
        return bool(re.search(r"[ .\-)/]", text))
    return text.count(".") >= 2


def cn_mobile(text: str) -> int | None:
    digits = "".join(c for c in text if c.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return len(text) if len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789" else None


def secret_value(text: str) -> int | None:
    """A value assigned to ``password=``/``api_key:``: long enough and not a plain word."""
    if len(text) < 8 or text.isalpha() or text.lower() in {"password", "********", "redacted", "<secret>"}:
        return None
    if set(text) <= set("*x<>_-.") or text.startswith("<"):
        return None
    return len(text)


def accept(text: str) -> int | None:
    return len(text)
