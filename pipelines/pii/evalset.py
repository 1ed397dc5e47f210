"""A labelled PII evaluation set generated with Faker: every inserted value's span is known.

Documents are built from templates (letters, court documents, forum posts, contact pages; in
English with ``en_US`` values and Chinese with ``zh_CN`` values) as alternating literal text
and (entity, value) slots, so offsets are exact. Near-misses are inserted *unlabelled*: order
numbers shaped like mobiles, ids with a wrong check digit, Luhn-failing numbers, private IPs,
case numbers and amounts; any finding on them counts against precision.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from faker import Faker

from pipelines.pii.validators import PRC_ID_CHECK, PRC_ID_WEIGHTS, luhn_ok

Slot = tuple[str, str]  # (entity, value)
Part = str | Slot


@dataclass
class LabelledDoc:
    text: str
    lang: str
    template: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # (entity, start, end)


def assemble(parts: list[Part], lang: str, template: str) -> LabelledDoc:
    text, spans = [], []
    pos = 0
    for part in parts:
        if isinstance(part, tuple):
            entity, value = part
            spans.append((entity, pos, pos + len(value)))
            text.append(value)
            pos += len(value)
        else:
            text.append(part)
            pos += len(part)
    return LabelledDoc("".join(text), lang, template, spans)


class Values:
    """Faker values of each entity type, plus unlabelled near-misses."""

    def __init__(self, fk: Faker, rng: random.Random) -> None:
        self.fk, self.rng = fk, rng
        # zh_CN's Faker writes 21-character "GB" IBANs, which no bank issues: take en_US ones
        self.iban_fk = Faker("en_US")
        self.iban_fk.seed_instance(rng.random())

    def person(self) -> Slot:
        return ("PERSON", self.fk.name())

    def city(self) -> Slot:
        return ("LOCATION", self.fk.city())

    def email(self) -> Slot:
        return ("EMAIL", self.rng.choice([self.fk.free_email, self.fk.company_email])())

    def phone(self) -> Slot:
        return ("PHONE", self.fk.phone_number())

    def cn_mobile(self) -> Slot:
        m = self.fk.phone_number()
        style = self.rng.randrange(4)
        if style == 1:
            m = f"+86 {m}"
        elif style == 2:
            m = f"{m[:3]}-{m[3:7]}-{m[7:]}"
        elif style == 3:
            m = f"+86-{m[:3]} {m[3:7]} {m[7:]}"
        return ("PHONE", m)

    def prc_id(self) -> Slot:
        return ("PRC_ID", self.fk.ssn())

    def card(self) -> Slot:
        number = self.fk.credit_card_number()
        if len(number) == 16 and self.rng.random() < 0.4:
            sep = self.rng.choice(" -")
            number = sep.join(number[i : i + 4] for i in range(0, 16, 4))
        return ("CREDIT_CARD", number)

    def iban(self) -> Slot:
        return ("IBAN", self.iban_fk.iban())

    def ipv4(self) -> Slot:
        return ("IP_ADDRESS", self.fk.ipv4_public())

    def ipv6(self) -> Slot:
        while True:
            addr = self.fk.ipv6()
            ip = ipaddress.ip_address(addr)
            if ip.is_global and not ip.is_multicast:  # the definition of "public" the recognizer uses
                return ("IP_ADDRESS", addr)

    def ip(self) -> Slot:
        return self.ipv4() if self.rng.random() < 0.7 else self.ipv6()

    # near-misses: never labelled
    def order_number(self) -> str:
        return "1" + self.rng.choice("3589") + "".join(self.rng.choice("0123456789") for _ in range(9))

    def bad_prc_id(self) -> str:
        body = self.fk.ssn()[:17]
        good = PRC_ID_CHECK[sum(int(d) * w for d, w in zip(body, PRC_ID_WEIGHTS, strict=True)) % 11]
        return body + PRC_ID_CHECK[(PRC_ID_CHECK.index(good) + 3) % 11]

    def bad_card(self) -> str:
        while True:
            n = "4" + "".join(self.rng.choice("0123456789") for _ in range(15))
            if not luhn_ok(n):
                return n

    def private_ip(self) -> str:
        return self.fk.ipv4_private()


def _en_templates(v: Values, fk: Faker, r: random.Random) -> dict[str, Callable[[], list[Part]]]:
    def letter() -> list[Part]:
        p = v.person()
        return [
            "Dear ",
            p,
            ",\n\nThank you for your letter of ",
            fk.date(),
            ". ",
            fk.paragraph(3),
            "\n\n",
            "Please contact me at ",
            v.email(),
            " or call ",
            v.phone(),
            ". Your invoice ",
            "INV-",
            str(r.randrange(10**6, 10**7)),
            " for $",
            f"{r.randrange(100, 99999):,}",
            " was paid by card ",
            v.card(),
            ".\n\nYours sincerely,\n",
            v.person(),
            "\n",
            fk.company(),
        ]

    def court() -> list[Part]:
        return [
            "IN THE SUPERIOR COURT OF ",
            fk.state().upper(),
            "\nCase No. ",
            str(r.randrange(10**9, 10**10)),
            "\n\n",
            v.person(),
            ", Plaintiff,\nv.\n",
            v.person(),
            ", Defendant.\n\n",
            fk.paragraph(4),
            " The plaintiff resides in ",
            v.city(),
            " and may be reached at ",
            v.phone(),
            ". Exhibit 4 lists the ",
            "account ",
            v.iban(),
            " and the server address ",
            v.ip(),
            " (internal host ",
            v.private_ip(),
            "). Order number ",
            v.order_number(),
            " was never delivered.\n\nSO ORDERED.",
        ]

    def forum() -> list[Part]:
        return [
            fk.user_name(),
            " wrote:\n> ",
            fk.sentence(),
            "\n\n",
            fk.paragraph(2),
            " My box at ",
            v.ip(),
            " keeps dropping, anyone seen this? Ping me: ",
            v.email(),
            "\n-- ",
            v.person(),
            "\n\n",
            "Reply: try rebooting, ",
            fk.sentence(),
            " Tracking #",
            str(r.randrange(10**11, 10**12)),
            ".",
        ]

    def contact() -> list[Part]:
        return [
            "Contact us\n",
            fk.company(),
            "\n",
            fk.street_address(),
            ", ",
            v.city(),
            "\nPhone: ",
            v.phone(),
            "\nFax: ",
            v.phone(),
            "\nEmail: ",
            v.email(),
            "\nSupport lead: ",
            v.person(),
            " (",
            v.email(),
            ")\n",
            fk.paragraph(2),
            " VAT no. ",
            str(r.randrange(10**8, 10**9)),
            ".",
        ]

    return {"letter": letter, "court": court, "forum": forum, "contact": contact}


def _zh_templates(v: Values, fk: Faker, r: random.Random) -> dict[str, Callable[[], list[Part]]]:
    def court() -> list[Part]:
        return [
            fk.city(),
            "人民法院\n民事判决书\n(",
            str(r.randrange(2015, 2025)),
            ")京0105民初",
            str(r.randrange(1000, 99999)),
            "号\n\n原告:",
            v.person(),
            ",身份证号码",
            v.prc_id(),
            ",联系电话",
            v.cn_mobile(),
            "。\n被告:",
            v.person(),
            ",公民身份号码:",
            v.prc_id(),
            "。\n",
            fk.paragraph(4),
            "被告于本判决生效之日起十日内向原告支付人民币",
            str(r.randrange(1000, 999999)),
            "元。订单号",
            v.order_number(),
            "。案外人身份证",
            v.bad_prc_id(),
            "(校验位错误)。",
        ]

    def forum() -> list[Part]:
        return [
            "楼主:",
            fk.user_name(),
            "\n",
            fk.paragraph(2),
            "有问题加我微信或打电话",
            v.cn_mobile(),
            ",邮箱",
            v.email(),
            "。服务器IP",
            v.ip(),
            ",内网",
            v.private_ip(),
            "。\n回复:",
            fk.sentence(),
            "快递单号",
            v.order_number(),
            "。",
        ]

    def contact() -> list[Part]:
        return [
            "联系我们\n",
            fk.company(),
            "\n地址:",
            fk.address(),
            "\n电话:",
            v.cn_mobile(),
            "\n邮箱:",
            v.email(),
            "\n对公账户:",
            v.iban(),
            "\n",
            fk.paragraph(2),
            "\n银行卡号",
            v.card(),
            ",卡号",
            v.bad_card(),
            "已注销。",
        ]

    def letter() -> list[Part]:
        return [
            v.person(),
            "您好:\n",
            fk.paragraph(3),
            "\n请于",
            fk.date(),
            "前回复至",
            v.email(),
            "或致电",
            v.cn_mobile(),
            "。付款账户",
            v.card(),
            "。\n此致\n",
            v.person(),
        ]

    return {"court": court, "forum": forum, "contact": contact, "letter": letter}


def generate(n_docs: int = 400, seed: int = 0) -> list[LabelledDoc]:
    """``n_docs`` documents, half English and half Chinese, templates in rotation."""
    docs: list[LabelledDoc] = []
    for lang, locale, make in (("en", "en_US", _en_templates), ("zh", "zh_CN", _zh_templates)):
        fk = Faker(locale)
        fk.seed_instance(seed)
        r = random.Random(f"{seed}-{lang}")
        templates = make(Values(fk, r), fk, r)
        names = sorted(templates)
        for i in range(n_docs // 2):
            name = names[i % len(names)]
            docs.append(assemble(templates[name](), lang, name))
    return docs
