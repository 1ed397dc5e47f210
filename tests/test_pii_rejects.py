"""`rejects_text`: a document rejected before `pii_redact` keeps no raw PII in rejects (names and
addresses included under the default, structured values only under ``structured``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import write_config, write_jsonl

from common.config import ConfigError
from corpus.audit import run_audit
from pipelines.config import load_config
from pipelines.pii.scrub import RejectsPolicy, apply_rejects_text, rejects_policies, scrub_structured
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, LengthFilter, Normalize
from pipelines.steps.pii_redact import PiiRedact

ID = "11010519491231002X"
EMAIL = "wang.fang@163.com"
DOC = (
    f"原告王芳，身份证号{ID}，邮箱{EMAIL}，电话13812345678。本院认为，原告的诉讼请求有事实和法律依据，"
    "应予支持。被告应于本判决生效之日起十日内支付货款。如果未按本判决指定的期间履行给付金钱义务，应当依照"
    "《中华人民共和国民事诉讼法》第二百六十条之规定，加倍支付迟延履行期间的债务利息。"
)


def test_scrub_replaces_structured_values_only() -> None:
    (out,) = scrub_structured([f"call 13812345678 or {EMAIL}; order 13812345678 is not a phone"])
    assert out.startswith("call <PHONE> or <EMAIL>;") and EMAIL not in out


def test_policies_on_reject_rows() -> None:
    df = pl.DataFrame({"doc_id": ["a", "b"], "text": [DOC, None]})
    assert apply_rejects_text(df, RejectsPolicy("raw")).equals(df)
    assert apply_rejects_text(df, RejectsPolicy("none")).get_column("text").to_list() == [None, None]
    red = apply_rejects_text(df, RejectsPolicy("redacted")).get_column("text").to_list()
    assert ID not in red[0] and EMAIL not in red[0] and "<PRC_ID>" in red[0] and red[1] is None
    assert apply_rejects_text(df, RejectsPolicy("structured")).equals(
        apply_rejects_text(df, RejectsPolicy("redacted"))
    )  # no redactor: the same
    with pytest.raises(ValueError, match="rejects_text must be one of"):
        apply_rejects_text(df, RejectsPolicy("hidden"))


def test_policies_of_a_plan() -> None:
    steps = [Normalize(), ExactDedup(), PiiRedact(), LengthFilter()]
    policies = rejects_policies(steps, "redacted")
    assert [p.redactor for p in policies] == [steps[2], steps[2], None, None]
    assert policies[0].identity() != RejectsPolicy("redacted").identity()  # the redactor's settings count
    assert (
        policies[0].identity() != rejects_policies([Normalize(), PiiRedact(ner_languages=[])], "redacted")[0].identity()
    )
    assert all(p.redactor is None for p in rejects_policies(steps, "structured"))
    assert all(p.redactor is None for p in rejects_policies(steps[:2], "redacted"))


def _build(tmp: Path, rejects_text: str | None) -> Path:
    src = write_jsonl(tmp / "in.jsonl", [{"text": DOC, "lang": "zh"}, {"text": DOC + " ", "lang": "zh"}])
    extra = {} if rejects_text is None else {"rejects_text": rejects_text}
    steps = ["normalize", "exact_dedup", {"pii_redact": {"ner_languages": []}}]
    run_build(load_config(write_config(tmp / "b.yaml", tmp / "c", [src], steps, **extra)), progress=False)
    return tmp / "c"


@pytest.mark.parametrize("mode", [None, "none", "raw"])
def test_duplicate_rejected_before_pii_redact(tmp_path: Path, mode: str | None) -> None:
    root = _build(tmp_path, mode)
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    ((step, text),) = con.sql("SELECT step, text FROM rejects").fetchall()
    con.close()
    assert step == "exact_dedup"
    (pii_left,) = run_audit(root, ["pii_left"])
    if mode is None:  # default: redacted
        assert ID not in text and EMAIL not in text and "<PRC_ID>" in text and "本院认为" in text
        assert pii_left.status == "pass", pii_left.violations.rows
        assert not [p for p in (root / "work").rglob("rejects-*.parquet") if ID in pl.read_parquet(p).write_csv()]
    elif mode == "none":
        assert text is None and pii_left.status == "pass"
    else:  # raw: kept on purpose, and the audit says so
        assert ID in text
        assert pii_left.status == "fail"
        rels = {row[0] for row in pii_left.violations.rows}
        assert rels == {"rejects"}


def test_bad_policy_names_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "b.yaml", tmp_path / "c", [], ["normalize"], rejects_text="secret")
    with pytest.raises(ConfigError, match="rejects_text must be one of redacted, structured, none, raw"):
        load_config(cfg)


COURT_DOC = (
    "北京市朝阳区人民法院\n民事判决书\n原告：陈静，女，1988年5月6日出生，公民身份号码11010519491231002X，"
    "住北京市朝阳区建国路88号3栋1201室。\n委托诉讼代理人：王建国，北京市中伦律师事务所律师。\n"
    "被告：刘洋，男，住上海市浦东新区陆家嘴环路1000号，联系电话13912345678。\n第三人：张某某。\n"
    "原告陈静与被告刘洋民间借贷纠纷一案，本院依法适用简易程序公开开庭进行了审理。2019年3月，刘洋向陈静借款"
    "人民币十万元，约定半年内归还，至今未还。本院认为，合法的借贷关系受法律保护，被告应当偿还借款本金及利息。"
)


@pytest.mark.parametrize("mode", ["redacted", "structured"])
def test_court_document_names_and_addresses_replaced_in_documents_and_rejects(tmp_path: Path, mode: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": COURT_DOC, "lang": "zh"}, {"text": COURT_DOC + " "}])
    steps = ["normalize", "exact_dedup", "pii_redact"]
    cfg = write_config(tmp_path / "b.yaml", tmp_path / "c", [src], steps, rejects_text=mode)
    run_build(load_config(cfg), progress=False)
    con = duckdb.connect(str(tmp_path / "c" / "catalog.duckdb"), read_only=True)
    ((text,),) = con.sql("SELECT text FROM documents").fetchall()
    ((reject,),) = con.sql("SELECT text FROM rejects").fetchall()
    con.close()
    for value in ("陈静", "王建国", "刘洋", "建国路88号", "陆家嘴环路1000号", ID, "13912345678"):
        assert value not in text, value
    assert text.count("<PERSON>") == 7 and text.count("<ADDRESS>") == 2
    assert "张某某" in text and "人民法院" in text and "本院认为" in text  # pseudonyms and the rest stay
    assert ID not in reject and "13912345678" not in reject and "<PRC_ID>" in reject
    if mode == "redacted":  # the duplicate, rejected before pii_redact, is redacted by it: as the document
        assert reject.strip() == text.strip()
    else:  # structured only: the names stay in the reject row
        assert "陈静" in reject and "<PERSON>" not in reject
