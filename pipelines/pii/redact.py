"""Replace findings in a text: typed placeholders or pseudonyms.

Placeholders (``<EMAIL>``) are the default: they keep the sentence shape for training and carry
no value at all. Pseudonyms keep texts natural: within one document the same value always maps
to the same fake (seeded by document key, type and value, so builds are deterministic), and the
fakes are chosen so that they are not personal data and our scanner does not flag them again:
RFC 2606 ``.test``/``.invalid`` e-mail domains, NANP 555-01xx numbers, documentation IP ranges,
card/ID/IBAN numbers with a failing checksum. Secrets and credentials are never faked: they always get placeholders.
Chinese documents get Chinese fakes (Faker ``zh_CN`` names, cities and addresses).

The replacement is a plain splice of non-overlapping spans (what presidio-anonymizer's
``replace``/``custom`` operators do), so redaction does not import presidio (see `engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import xxhash
from faker import Faker

from pipelines.pii.entities import ALL_ENTITIES
from pipelines.pii.recognizers import Finding
from pipelines.pii.validators import PRC_ID_CHECK, PRC_ID_WEIGHTS, luhn_ok

_FAKERS: dict[str, Faker] = {}
ALWAYS_PLACEHOLDER = {"SECRET", "URL_CREDENTIALS"}


def placeholder(entity: str) -> str:
    return f"<{entity}>"


def _faker(lang: str) -> Faker:
    locale = "zh_CN" if lang == "zh" else "en_US"
    if locale not in _FAKERS:
        _FAKERS[locale] = Faker(locale)
    return _FAKERS[locale]


def _bad_luhn(fk: Faker, n: int) -> str:
    digits = "4" + fk.numerify("#" * (n - 1))
    return digits if not luhn_ok(digits) else digits[:-1] + str((int(digits[-1]) + 1) % 10)


def _bad_prc_id(fk: Faker) -> str:
    body = fk.numerify("110105198#0#1#2##")
    good = PRC_ID_CHECK[sum(int(d) * w for d, w in zip(body, PRC_ID_WEIGHTS, strict=True)) % 11]
    return body + PRC_ID_CHECK[(PRC_ID_CHECK.index(good) + 1) % 11]


def _fake(entity: str, fk: Faker, lang: str) -> str:
    if entity == "EMAIL":
        return f"{fk.user_name()}@example.{fk.random_element(('test', 'invalid'))}"
    if entity == "PHONE":
        return f"555-01{fk.numerify('##')}"
    if entity == "PRC_ID":
        return _bad_prc_id(fk)
    if entity == "CREDIT_CARD":
        return _bad_luhn(fk, 16)
    if entity == "IBAN":
        return "GB00" + fk.bothify("????").upper() + fk.numerify("#" * 14)  # check digits 00 never validate
    if entity == "IP_ADDRESS":
        return fk.random_element(("192.0.2.", "198.51.100.", "203.0.113.")) + str(fk.random_int(1, 254))
    if entity == "PERSON":
        return fk.name()
    if entity == "LOCATION":
        return fk.city()
    if entity == "ADDRESS":
        return fk.address() if lang == "zh" else fk.street_address()
    return placeholder(entity)


class Pseudonymizer:
    """Same (type, value) -> same fake within one document; distinct values -> distinct fakes."""

    def __init__(self, doc_key: str, lang: str) -> None:
        self.doc_key = doc_key
        self.lang = lang
        self.mapping: dict[tuple[str, str], str] = {}
        self.used: set[str] = set()

    def __call__(self, entity: str, value: str) -> str:
        key = (entity, value)
        if key not in self.mapping:
            fk = _faker(self.lang)
            salt = 0
            while True:
                fk.seed_instance(xxhash.xxh3_64_intdigest(f"{self.doc_key}\x00{entity}\x00{value}\x00{salt}".encode()))
                fake = _fake(entity, fk, self.lang)
                if fake not in self.used or fake == placeholder(entity) or salt > 20:
                    break
                salt += 1
            self.used.add(fake)
            self.mapping[key] = fake
        return self.mapping[key]

    def operator(self, entity: str) -> Callable[[str], str]:
        return lambda value: self(entity, value)


def redact_text(
    text: str, findings: Sequence[Finding], *, mode: str = "placeholder", doc_key: str = "", lang: str = "en"
) -> str:
    """The text with every finding replaced; findings must not overlap (see `resolve_overlaps`)."""
    if mode not in ("placeholder", "pseudonym"):
        raise ValueError(f"unknown redaction mode {mode!r}; use 'placeholder' or 'pseudonym'")
    if not findings:
        return text
    pseudo = Pseudonymizer(doc_key, lang) if mode == "pseudonym" else None
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            raise ValueError(f"overlapping findings at {f.start}: resolve overlaps before redacting")
        out.append(text[pos : f.start])
        if pseudo is None or f.entity in ALWAYS_PLACEHOLDER:
            out.append(placeholder(f.entity))
        else:
            out.append(pseudo(f.entity, text[f.start : f.end]))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


__all__ = ["ALL_ENTITIES", "Pseudonymizer", "placeholder", "redact_text"]
