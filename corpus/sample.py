"""Generate the bundled sample corpus: `python -m corpus.sample [--out samples/legal_sample.jsonl]`.

A few hundred legal-flavoured documents in English and Chinese, deterministic for a seed, that
contain what every stage must handle: exact and near duplicates, PII (e-mails, phones, PRC ids
with valid checksums, Luhn-valid cards, IPs), navigation/cookie boilerplate, junk (lorem ipsum,
SEO spam, code dumps, menus), empty documents and mojibake. ``meta.kind`` says what each
document was generated as, so tests and reports can check the stages against it.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("samples/legal_sample.jsonl")

EN_PARTIES = ["Harlow Shipping Ltd", "Meridian Bank plc", "the City of Ashford", "Greenway Builders Inc",
              "Northfield Insurance Co", "Ms Alice Porter", "Mr Daniel Okafor", "Riverside Hospital Trust",
              "Crestline Software LLC", "the State Revenue Authority", "Bluewater Fisheries", "Mr Tomas Lindqvist",
              "Sterling Logistics", "Oakridge Tenants Association", "Pinecrest Pharmaceuticals"]
EN_COURTS = ["Court of Appeal", "High Court", "District Court", "Supreme Court", "Commercial Court",
             "Employment Tribunal", "Court of Chancery", "Circuit Court"]
EN_TOPICS = ["breach of contract", "negligence", "unfair dismissal", "misrepresentation", "a lease dispute",
             "copyright infringement", "data protection", "product liability", "an insurance claim",
             "a shareholder dispute", "a construction defect", "a tax assessment"]
EN_TEMPLATES = [
    "The {court} heard the appeal brought by {a} against {b} concerning {topic}.",
    "{a} contended that {b} had failed to perform its obligations under the agreement dated {date}.",
    "The central question is whether the limitation clause in clause {n} excludes liability for {topic}.",
    "In our judgment the trial judge was entitled to find that the representation was made recklessly.",
    "The claimant seeks damages of {amount} together with interest at the statutory rate.",
    "It is common ground that the parties entered into a written contract on {date}.",
    "The burden of proof rests on the party who asserts the existence of the term.",
    "Section {n} of the Act requires the authority to give reasons for its decision.",
    "We were referred to a number of authorities, none of which is directly in point.",
    "The defendant's conduct fell below the standard of care to be expected of a reasonable operator.",
    "Causation must be established on the balance of probabilities.",
    "The court will not rewrite a bargain that the parties, both commercial entities, freely made.",
    "A term will only be implied where it is necessary to give the contract business efficacy.",
    "The tribunal erred in law by failing to consider the evidence of {a}.",
    "For these reasons the appeal is allowed and the order of the {court} is set aside.",
    "For these reasons the appeal is dismissed with costs payable by {a}.",
    "The notice served on {date} did not comply with the requirements of paragraph {n} of the schedule.",
    "The statutory scheme must be read as a whole and in the light of its purpose.",
    "{b} accepts that the goods were defective but denies that the defect caused the loss.",
    "The judge assessed the witnesses carefully and gave cogent reasons for preferring the evidence of {b}.",
    "Damages in contract aim to put the innocent party in the position it would have been in had the "
    "contract been performed.",
    "The duty of good faith does not require a party to subordinate its own interests to those of the other.",
    "An injunction is a discretionary remedy and the court must weigh the balance of convenience.",
    "The regulator's guidance, while not binding, is a relevant consideration.",
    "Interest shall run from {date} until the date of payment.",
    "The lease contained a covenant by the tenant to keep the premises in good and substantial repair.",
    "Nothing in this judgment should be taken as approving the manner in which the tender was conducted.",
    "The employee was dismissed on {date} without any prior warning or disciplinary hearing.",
    "We consider that a reduction of {pct} per cent for contributory negligence is appropriate.",
    "The policy excluded losses arising from {topic}, and the insurer relied on that exclusion.",
]
ZH_COURTS = ["北京市第一中级人民法院", "上海市浦东新区人民法院", "广东省高级人民法院", "浙江省杭州市中级人民法院",
             "江苏省南京市鼓楼区人民法院", "四川省成都市中级人民法院", "最高人民法院", "深圳市南山区人民法院"]
ZH_PARTIES = ["张某", "李某某", "王某", "某科技有限公司", "某建设工程有限公司", "某银行股份有限公司",
              "赵某", "陈某某", "某物业服务有限公司", "某保险股份有限公司", "刘某", "某贸易有限公司"]
ZH_TOPICS = ["买卖合同纠纷", "民间借贷纠纷", "劳动争议", "房屋租赁合同纠纷", "机动车交通事故责任纠纷",
             "建设工程施工合同纠纷", "著作权侵权纠纷", "保险合同纠纷", "物业服务合同纠纷", "股权转让纠纷"]
ZH_TEMPLATES = [
    "原告{a}与被告{b}{topic}一案，本院于{date}立案后，依法适用普通程序，公开开庭进行了审理。",
    "原告{a}向本院提出诉讼请求：判令被告支付货款人民币{amount}元及逾期付款利息。",
    "被告{b}辩称，双方签订的合同系真实意思表示，但原告交付的货物存在质量问题。",
    "本院经审理认定事实如下：{date}，原告与被告签订了书面合同，约定了价款、履行期限和违约责任。",
    "根据《中华人民共和国民法典》第{n}条的规定，当事人应当按照约定全面履行自己的义务。",
    "当事人对自己提出的诉讼请求所依据的事实，有责任提供证据加以证明。",
    "本院认为，依法成立的合同，对当事人具有法律约束力。",
    "被告未按约定期限履行付款义务，已构成违约，应当承担继续履行和赔偿损失的责任。",
    "关于违约金的数额，原告主张过高，本院依法予以调整，按照未付款项的百分之{pct}计算。",
    "证人出庭作证，陈述了合同履行的经过，其证言与其他证据能够相互印证，本院予以采信。",
    "综上所述，依照《中华人民共和国民事诉讼法》第{n}条之规定，判决如下。",
    "被告{b}于本判决生效之日起十日内向原告{a}支付人民币{amount}元。",
    "如果未按本判决指定的期间履行给付金钱义务，应当依法加倍支付迟延履行期间的债务利息。",
    "案件受理费{amount}元，由被告负担。",
    "如不服本判决，可以在判决书送达之日起十五日内，向本院递交上诉状，上诉于{court}。",
    "劳动者在试用期内被证明不符合录用条件的，用人单位可以解除劳动合同。",
    "出租人应当按照约定将租赁物交付承租人，并在租赁期限内保持租赁物符合约定的用途。",
    "借款人应当按照约定的期限返还借款，对借款期限没有约定的，借款人可以随时返还。",
    "保险人应当及时作出核定，情形复杂的，应当在三十日内作出核定，但合同另有约定的除外。",
    "物业服务人应当按照约定和物业的使用性质，妥善维修、养护、清洁、绿化和经营管理物业服务区域内的业主共有部分。",
    "侵害他人著作权的，应当根据情况，承担停止侵害、消除影响、赔礼道歉、赔偿损失等民事责任。",
    "本案争议焦点在于双方之间是否存在合法有效的合同关系以及被告是否应承担违约责任。",
    "被告经本院合法传唤，无正当理由拒不到庭参加诉讼，本院依法缺席审理。",
    "上述事实，有合同、转账凭证、对账单及当事人陈述等证据在卷佐证。",
    "建设工程竣工经验收合格后，承包人请求参照合同关于工程价款的约定折价补偿的，应予支持。",
    "第{n}条 当事人行使权利、履行义务应当遵循诚信原则，秉持诚实，恪守承诺。",
    "第{n}条 民事主体从事民事活动，不得违反法律，不得违背公序良俗。",
    "机动车发生交通事故造成损害的，依照道路交通安全法律和本法的有关规定承担赔偿责任。",
]
NAV = ["Home | About us | Practice areas | News | Careers | Contact", "Skip to main content",
       "Menu ▾ Search Login Register", "首页 | 新闻中心 | 裁判文书 | 法律法规 | 联系我们"]
COOKIE = ["We use cookies to improve your experience. By continuing to browse you agree to our cookie policy. "
          "Accept all | Manage preferences",
          "本网站使用Cookie以提升您的浏览体验。继续访问即表示您同意我们的隐私政策。"]
FOOTER = ["© 2024 Lexbridge Legal Publishing. All rights reserved. Privacy policy | Terms of use",
          "版权所有 © 2024 某某法律信息网 京ICP备12345678号 | 免责声明 | 网站地图"]
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
         "ex ea commodo consequat.")
SEO = ["best lawyer cheap lawyer near me", "top divorce attorney free consultation", "click here win prize",
       "buy cheap legal forms online", "律师 律师咨询 免费法律咨询 最好的律师 离婚律师", "loan fast loan easy approval"]
CODE = """function init() {{ var x = document.getElementById('menu{n}'); if (x) {{ x.style.display = 'none'; }} }}
$(document).ready(function() {{ $('.nav').toggle(); window.dataLayer = window.dataLayer || []; }});
<script>var _gaq = _gaq || []; _gaq.push(['_setAccount', 'UA-{n}-1']);</script>
.header {{ margin: 0; padding: {n}px; }} .footer {{ color: #333; }}"""
FIRST = ["Alice", "Daniel", "Maria", "John", "Priya", "Oliver", "Grace", "Henry", "Sofia", "Liam"]
LAST = ["Porter", "Okafor", "Garcia", "Smith", "Patel", "Brown", "Chen", "Wilson", "Rossi", "Murphy"]
ZH_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def prc_id(rng: random.Random) -> str:
    """An 18-digit PRC resident id with a valid GB 11643 check character."""
    area = rng.choice(["110101", "310104", "440305", "330106", "510107"])
    birth = (datetime(1960, 1, 1) + timedelta(days=rng.randrange(0, 15000))).strftime("%Y%m%d")
    body = f"{area}{birth}{rng.randrange(0, 1000):03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]
    return body + check


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def cn_mobile(rng: random.Random) -> str:
    number = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    return rng.choice([number, f"+86 {number}", f"{number[:3]}-{number[3:7]}-{number[7:]}"])


class SampleGenerator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.docs: list[dict[str, Any]] = []
        self.serial = 0

    def _slots(self, lang: str) -> dict[str, str]:
        r = self.rng
        date = (datetime(2015, 1, 1) + timedelta(days=r.randrange(0, 3400))).date()
        if lang == "zh":
            parties = r.sample(ZH_PARTIES, 2)
            return {"a": parties[0], "b": parties[1], "court": r.choice(ZH_COURTS), "topic": r.choice(ZH_TOPICS),
                    "date": f"{date.year}年{date.month}月{date.day}日", "n": str(r.randrange(1, 1260)),
                    "amount": f"{r.randrange(1000, 5000000):,}", "pct": str(r.randrange(5, 40))}
        parties = r.sample(EN_PARTIES, 2)
        return {"a": parties[0], "b": parties[1], "court": r.choice(EN_COURTS), "topic": r.choice(EN_TOPICS),
                "date": date.strftime("%d %B %Y"), "n": str(r.randrange(1, 120)),
                "amount": f"£{r.randrange(1000, 5000000):,}", "pct": str(r.randrange(5, 60))}

    def legal_text(self, lang: str, paragraphs: tuple[int, int] = (3, 6)) -> str:
        """Paragraphs of template sentences, no template used twice in one document."""
        r = self.rng
        templates = r.sample(ZH_TEMPLATES if lang == "zh" else EN_TEMPLATES, k=len(ZH_TEMPLATES))
        joiner = "" if lang == "zh" else " "
        paras = []
        for _ in range(r.randint(*paragraphs)):
            slots = self._slots(lang)
            k = r.randint(2, 4)
            take, templates = templates[:k], templates[k:]
            if not take:
                break
            paras.append(joiner.join(t.format(**slots) for t in take))
        return "\n\n".join(paras)

    def add(self, text: str, *, kind: str, lang: str | None, title: str | None = None, **meta: Any) -> dict:
        self.serial += 1
        host = "demo-court.example" if lang != "zh" else "fayuan.example.cn"
        doc = {
            "url": f"https://{host}/doc/{self.serial:04d}",
            "title": title,
            "text": text,
            "lang": lang,
            "created_at": (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=self.serial)).isoformat(),
            "meta": {"kind": kind, **meta},
        }
        self.docs.append(doc)
        return doc

    def generate(self) -> list[dict[str, Any]]:
        r = self.rng
        originals = []
        for i in range(150):
            slots = self._slots("en")
            originals.append(self.add(self.legal_text("en"), kind="legal", lang="en",
                                      title=f"{slots['a']} v {slots['b']} [{2015 + i % 10}] {slots['court']}"))
        for _ in range(130):
            slots = self._slots("zh")
            originals.append(self.add(self.legal_text("zh"), kind="legal", lang="zh",
                                      title=f"{slots['a']}与{slots['b']}{slots['topic']}一审民事判决书"))
        for doc in r.sample(originals, 25):  # exact duplicates, some with cosmetic whitespace/case changes
            text = doc["text"] if r.random() < 0.5 else "  " + doc["text"].replace("\n\n", "\r\n\r\n  ") + "\n"
            self.add(text, kind="exact_duplicate", lang=doc["lang"], title=doc["title"], copy_of=doc["url"])
        for doc in r.sample(originals, 35):  # near duplicates: a sentence changed, boilerplate around
            paras = doc["text"].split("\n\n")
            paras[r.randrange(len(paras))] = self.legal_text(doc["lang"], (1, 1))
            text = "\n\n".join(paras)
            lang_i = 1 if doc["lang"] == "zh" else 0
            if r.random() < 0.5:
                text = f"{NAV[3 if lang_i else 0]}\n\n{text}\n\n{FOOTER[lang_i]}"
            self.add(text, kind="near_duplicate", lang=doc["lang"], title=doc["title"], copy_of=doc["url"])
        for _ in range(30):  # letters and contact pages with PII
            if r.random() < 0.5:
                name = f"{r.choice(FIRST)} {r.choice(LAST)}"
                first, last = (part.lower() for part in name.split())
                email = f"{first}.{last}@{r.choice(['gmail.com', 'lawmail.co.uk'])}"
                text = (f"Dear {name},\n\nFurther to our meeting, please find enclosed the draft settlement "
                        f"agreement. {self.legal_text('en', (1, 2))}\n\nYou can reach me at {email} or on "
                        f"+1 (415) 555-{r.randrange(1000, 9999)}. Payment may be made by card "
                        f"{luhn_card(r)}. Our server logged your upload from 203.0.{r.randrange(256)}."
                        f"{r.randrange(1, 255)}.\n\nYours sincerely,\n{r.choice(FIRST)} {r.choice(LAST)}")
                self.add(text, kind="pii", lang="en", title="Letter to client")
            else:
                name = r.choice(ZH_NAMES)
                text = (f"{self.legal_text('zh', (1, 2))}\n\n当事人{name}，身份证号码{prc_id(r)}，联系电话"
                        f"{cn_mobile(r)}，电子邮箱{name.encode().hex()[:8]}@163.com，住所地"
                        f"{r.choice(['北京市朝阳区', '上海市徐汇区', '广州市天河区'])}。")
                self.add(text, kind="pii", lang="zh", title="当事人信息")
        for doc in r.sample(originals, 20):  # boilerplate-heavy versions of new documents
            lang_i = 1 if doc["lang"] == "zh" else 0
            text = f"{NAV[3 if lang_i else 0]}\n{COOKIE[lang_i]}\n\n{self.legal_text(doc['lang'])}\n\n{FOOTER[lang_i]}"
            self.add(text, kind="boilerplate", lang=doc["lang"], title=doc["title"])
        for i in range(12):
            self.add("\n".join([LOREM] * r.randint(1, 4)), kind="junk_lorem", lang=None, title="Lorem ipsum")
            self.add(" ".join(r.choice(SEO) for _ in range(r.randint(20, 60))), kind="junk_seo", lang=None)
            self.add(CODE.format(n=i * 7 + 3), kind="junk_code", lang=None)
            self.add("\n".join(r.sample(NAV, 3) + r.sample(FOOTER, 1)), kind="junk_nav", lang=None)
        for text in ["", "   ", "\n\n", "", "\t"]:
            self.add(text, kind="empty", lang=None)
        for text in ["Ok.", "Page 2", "见附件"]:
            self.add(text, kind="too_short", lang=None)
        for _ in range(5):  # UTF-8 read as cp1252 somewhere upstream
            good = self.legal_text("en", (1, 2)).replace("claimant", "claimant’s café").replace(".", " — fin.", 1)
            self.add(good.encode("utf-8").decode("cp1252", errors="replace"), kind="mojibake", lang="en")
        r.shuffle(self.docs)
        return self.docs


def write_sample(out: Path, seed: int = 20241122) -> int:
    docs = SampleGenerator(seed).generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return len(docs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corpus.sample", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=20241122)
    args = p.parse_args(argv)
    n = write_sample(args.out, args.seed)
    print(f"wrote {n} documents to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
