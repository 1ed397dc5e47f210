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

    def zh_address(self) -> Slot:
        """Province -> city -> district -> street + number (+ building / unit / room, postcode)."""
        fk, r = self.fk, self.rng
        if r.random() < 0.2:
            return ("ADDRESS", fk.address())  # Faker's own format (odd units, trailing postcode)
        parts = [fk.province(), fk.city(), fk.district() + "区", fk.street_name(), f"{r.randrange(1, 999)}号"]
        if r.random() < 0.3:
            parts = parts[1:]  # municipalities and local documents omit the province
        if r.random() < 0.5:
            parts.append(f"{r.randrange(1, 30)}栋{r.randrange(1, 6)}单元{r.randrange(101, 2800)}室")
        elif r.random() < 0.3:
            parts.append(f"{r.randrange(1, 30)}号楼{r.randrange(101, 2800)}室")
        if r.random() < 0.15:
            parts.append(f"（邮编：{fk.postcode()}）")
        return ("ADDRESS", "".join(parts))

    def anonymised(self) -> str:
        """A name the court already anonymised: not personal data, never labelled."""
        surname = self.fk.last_name()
        return surname + self.rng.choice(["某", "某某", "某甲", "某乙", "xx", "××", "某1"])

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
            ("ADDRESS", fk.street_address()),
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
            ("ADDRESS", fk.address()),
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

    def parties() -> list[Part]:
        """A civil judgment's heading and facts: parties, agents, addresses, IDs, names in running
        text, plus what must stay: court pseudonyms (张某), firms, companies, the court."""
        plaintiff, agent, rep, defendant, witness = (v.person() for _ in range(5))
        judge, clerk = v.person(), v.person()
        company = fk.company()
        anon = v.anonymised()
        return [
            ("LOCATION", fk.city()),
            "人民法院\n民事判决书\n（",
            str(r.randrange(2015, 2025)),
            "）民初",
            str(r.randrange(100, 9999)),
            "号\n原告：",
            plaintiff,
            "，",
            r.choice(["男", "女"]),
            "，",
            r.choice(["汉族", "回族", "满族", "壮族"]),
            "，",
            fk.date(pattern="%Y年%m月%d日"),
            "出生，公民身份号码",
            v.prc_id(),
            "，住",
            v.zh_address(),
            "。\n委托诉讼代理人：",
            agent,
            "，",
            fk.city(),
            r.choice(["中伦", "金杜", "君合", "大成", "天元"]),
            "律师事务所律师。\n被告：",
            company,
            "，住所地",
            v.zh_address(),
            "。\n法定代表人：",
            rep,
            "，该公司总经理。\n被告：",
            defendant,
            "，",
            r.choice(["男", "女"]),
            "，",
            fk.date(pattern="%Y年%m月%d日"),
            "出生，住",
            v.zh_address(),
            "，联系电话",
            v.cn_mobile(),
            "。\n第三人：",
            anon,
            "，住",
            ("LOCATION", fk.city()),
            "。\n原告",
            ("PERSON", plaintiff[1]),
            "与被告",
            company,
            "、",
            ("PERSON", defendant[1]),
            "民间借贷纠纷一案，本院立案后依法适用简易程序公开开庭进行了审理。原告",
            ("PERSON", plaintiff[1]),
            "及其委托诉讼代理人",
            ("PERSON", agent[1]),
            "到庭参加诉讼。\n经审理查明：",
            fk.date(pattern="%Y年%m月%d日"),
            "，",
            ("PERSON", defendant[1]),
            "向",
            ("PERSON", plaintiff[1]),
            "借款人民币",
            str(r.randrange(10, 900)),
            "万元，由",
            ("PERSON", plaintiff[1]),
            "通过银行账户",
            v.card(),
            "转账支付。证人",
            witness,
            "出庭作证称，",
            anon[:1] + "某某",
            "曾于案发当日在场。",
            fk.paragraph(2),
            "\n审判员　",
            judge,
            "\n书记员　",
            clerk,
        ]

    return {"court": court, "forum": forum, "contact": contact, "letter": letter, "parties": parties}


def _zh_tw_templates(v: Values, fk: Faker, r: random.Random) -> dict[str, Callable[[], list[Part]]]:
    def appeal() -> list[Part]:
        appellant, agent, appellee = v.person(), v.person(), v.person()
        return [
            "臺灣高等法院民事判決\n上訴人（原審被告）：",
            appellant,
            "，",
            r.choice(["男", "女"]),
            "，住",
            ("ADDRESS", fk.address()),
            "。\n委託訴訟代理人：",
            agent,
            "律師\n被上訴人：",
            appellee,
            "，身分證統一編號略。\n上列當事人間請求返還借款事件，",
            ("PERSON", appellant[1]),
            "對於民國",
            str(r.randrange(100, 113)),
            "年判決提起上訴，本院判決如下：上訴駁回。證人",
            v.anonymised(),
            "到庭證述屬實。聯絡電話",
            ("PHONE", fk.phone_number()),
            "。",
        ]

    return {"appeal": appeal}


def generate(n_docs: int = 400, seed: int = 0) -> list[LabelledDoc]:
    """``n_docs`` documents, half English and half Chinese, templates in rotation."""
    docs: list[LabelledDoc] = []
    for lang, locale, make in (
        ("en", "en_US", _en_templates),
        ("zh", "zh_CN", _zh_templates),
        ("zh", "zh_TW", _zh_tw_templates),
    ):
        fk = Faker(locale)
        fk.seed_instance(seed)
        r = random.Random(f"{seed}-{locale}")
        templates = make(Values(fk, r), fk, r)
        names = sorted(templates)
        count = n_docs // 2 if locale != "zh_TW" else n_docs // 10  # Traditional: an extra tenth
        for i in range(count):
            name = names[i % len(names)]
            docs.append(assemble(templates[name](), lang, name))
    return docs
