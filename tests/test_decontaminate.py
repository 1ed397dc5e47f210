"""decontaminate: evaluation items found through re-wrapping, re-punctuation, full-width forms
and case, in Chinese and English; clean legal text that shares phrases kept; cut leaves the rest
intact; the contamination table, the audit, and one-line errors for bad evaluation files."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from corpus.audit import run_audit
from pipelines.config import BuildConfig, SourceSpec
from pipelines.dedup.shingle import shingle_texts, token_hashes
from pipelines.overlap import NgramIndex, ngrams, read_eval_items, token_spans
from pipelines.runner import run_build
from pipelines.steps.decontaminate import Decontaminate, cut_pieces
from pipelines.steps.normalize import Normalize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ZH_ITEM = {
    "id": "zh-1",
    "question": "甲公司与乙公司签订买卖合同，约定乙公司于三月底前交付二百台机床，后乙公司因原材料涨价拒绝交货，"
    "甲公司遂另行高价购买，关于甲公司的损失，下列哪一说法是正确的？",
    "options": {
        "A": "甲公司只能请求乙公司继续履行合同",
        "B": "甲公司有权请求乙公司赔偿另行购买所多支出的价款",
        "C": "乙公司可以以情势变更为由免除全部责任",
        "D": "甲公司无权解除合同",
    },
    "answer": "B",
}
EN_ITEM = {
    "id": "en-1",
    "question": "A tenant withheld rent for three months after the landlord failed to repair a leaking roof "
    "despite repeated written requests. Which of the following best describes the tenant's position?",
    "options": [
        "The tenant may set off the reasonable cost of repairs against future rent.",
        "The tenant forfeits the lease by withholding any rent at all.",
        "The landlord may evict without notice because rent is unpaid.",
        "The tenant must pay all arrears before raising the repair issue.",
    ],
    "answer": 0,
}
SHORT_ITEM = {"id": "zh-short", "question": "下列哪一选项正确？", "options": ["甲", "乙"], "answer": 0}
SHORT_FIELDS = {"id": "zh-fields", "question": "关于诉讼时效下列说法正确的是", "options": ["诉讼时效期间为三年", "甲"]}
# a statute quoted by an exam option and by every judgment on the point: not contamination
STATUTE = "尚未完全丧失辨认或者控制自己行为能力的精神病人犯罪的，应当负刑事责任"
STATUTE_ITEM = {
    "id": "zh-statute",
    "question": "下列哪种情形可以采取简易程序进行处理：",
    "options": {
        "A": "被告人是盲、聋、哑人",
        "B": "被告人是" + STATUTE,
        "C": "有重大社会影响的",
        "D": "被告人是未成年人",
    },
    "answer": "D",
}
CLEAN_ZH = (
    "本院认为，被告人王某某以非法占有为目的，秘密窃取他人财物，数额较大，其行为已构成盗窃罪。"
    "根据本法第十条的规定，当事人应当按照约定全面履行自己的义务。经鉴定，被告人系" + STATUTE + "。"
    "公诉机关指控的事实清楚，证据确实、充分，指控的罪名成立，本院予以支持。"
)
FILLER_ZH = "经审理查明，原告与被告于二〇一八年签订房屋租赁合同一份，约定租期三年，月租金五千元。" * 8


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def item_text(item: dict) -> str:
    options = item["options"].values() if isinstance(item["options"], dict) else item["options"]
    return item["question"] + "\n" + "\n".join(options)


def rewrap(text: str, words: int = 8) -> str:
    """The re-wrapping that fooled a public tool: a line break every ``words`` words."""
    ws = text.split()
    return "\n".join(" ".join(ws[i : i + words]) for i in range(0, len(ws), words))


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_ngram_hashes_are_the_shinglers_and_token_spans_locate_them() -> None:
    texts = [
        "根据本法第十条的规定，当事人应当履行义务。",
        "The court held that the statute must be read as a whole.",
        "ＡＢＣ１２３ ﬁne ¼",
    ]
    grams, counts = ngrams(pl.Series(texts), [5])
    sh = shingle_texts(pl.Series(texts), ngram=5, cjk_ngram=5)
    for i in range(2):
        assert np.array_equal(np.sort(grams.hashes[grams.doc == i]), np.sort(sh.of(i)))
    _, expected, _ = token_hashes(pl.Series(texts))
    assert [len(token_spans(t)) for t in texts] == expected.tolist() == counts.tolist()


def test_index_checks_short_items_by_whole_fields_and_reads_any_text_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "exam.jsonl", [ZH_ITEM, EN_ITEM, SHORT_ITEM, SHORT_FIELDS])
    items = read_eval_items(path)
    assert items.name == "exam" and items.ids == ["zh-1", "en-1", "zh-short", "zh-fields"]
    assert items.fields[0][0] == ZH_ITEM["question"] and len(items.fields[1]) == 5  # question + 4 options
    index = NgramIndex.build(items.fields, n=13, min_ngram=8)
    assert index.item_ngrams[0] > 40 and index.item_ngrams[1] > 15
    assert index.item_ngrams[2] == 0  # one generic 8-character question: not a signature of the item
    assert index.item_ngrams[3] == 2  # two whole fields of 13 and 9 characters (22 >= 13 together)
    found = index.match(pl.Series(["题目：关于诉讼时效，下列说法正确的是( )。A.诉讼时效期间为三年 B.甲"]))
    assert found.found.tolist() == [2] and found.item.tolist() == [3]
    pl.DataFrame([{"id": "p1", "text": ZH_ITEM["question"]}]).write_parquet(tmp_path / "held.parquet")
    assert read_eval_items(tmp_path / "held.parquet").fields == [[ZH_ITEM["question"]]]


def run_step(step: Decontaminate, texts: list[str], tmp_path: Path, meta: list[str | None] | None = None):
    from pipelines.step import StepContext

    ctx = StepContext(-1, tmp_path / "stage", tmp_path)
    step.reduce(ctx)
    df = pl.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(len(texts))],
            "source": ["t"] * len(texts),
            "url": [None] * len(texts),
            "text": texts,
            "meta": meta or [None] * len(texts),
        },
        schema_overrides={"url": pl.String, "meta": pl.String},
    )
    out = step.process(df, StepContext(0, tmp_path / "stage", tmp_path))
    assert out.kept.height + out.rejected.height == df.height
    table = pl.read_parquet(tmp_path / "stage" / "tables" / "contamination" / "part-00000.parquet")
    return out, table


def test_contamination_is_found_through_rewrapping_punctuation_width_and_case(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "exam.jsonl", [ZH_ITEM, EN_ITEM, STATUTE_ITEM])
    zh, en = item_text(ZH_ITEM), item_text(EN_ITEM)
    copies = [
        rewrap(en, 8),  # 8 words a line
        en.upper().replace(",", " ,").replace(".", " ; "),  # case and punctuation
        fullwidth(en),  # full-width Latin letters and punctuation
        "Q: " + en.replace("\n", " (A) ", 1) + " Answer: A",  # labels added
        zh.replace("，", ",").replace("？", "?"),  # half-width punctuation
        zh.replace("，", "").replace("。", ""),  # punctuation removed
        "\n".join(zh[i : i + 17] for i in range(0, len(zh), 17)),  # re-wrapped mid-word
        "【真题】" + zh.replace("二百", "２００") + "\n答案：B",  # full-width digits, a header
    ]
    clean = [CLEAN_ZH, FILLER_ZH, "The court held that the contract was void for uncertainty and dismissed it."]
    out, table = run_step(Decontaminate(eval_sets=[str(path)]), copies + clean, tmp_path)
    removed = out.rejected.get_column("doc_id").to_list()
    assert removed == [f"d{i}" for i in range(len(copies))]
    details = [json.loads(d) for d in out.rejected.get_column("detail")]
    assert {d["item_id"] for d in details[:4]} == {"en-1"} and {d["item_id"] for d in details[4:]} == {"zh-1"}
    assert all(d["eval_set"] == "exam" and d["overlap"] >= 0.7 for d in details)
    assert details[0]["ngram"].split()[:3] == ["A", "tenant", "withheld"]  # the original text, as written
    # the clean judgment quotes the statute an exam option quotes: a recorded near miss, kept
    near = table.filter(pl.col("doc_id") == f"d{len(copies)}").to_dicts()
    assert [(r["item_id"], r["action"]) for r in near] == [("zh-statute", "kept")] and near[0]["overlap"] < 0.7
    assert set(table.filter(pl.col("action") == "dropped").get_column("doc_id")) == set(removed)


def test_cut_removes_the_item_and_a_window_and_leaves_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "exam.jsonl", [ZH_ITEM])
    before, after = FILLER_ZH, CLEAN_ZH * 3
    embedded = before + "\n" + item_text(ZH_ITEM) + "\n" + after
    many = "\n".join([FILLER_ZH + item_text(ZH_ITEM)] * 12)  # 12 copies: too many pieces
    step = Decontaminate(eval_sets=[str(path)], mode="cut", cut_window=20, min_piece_chars=50, max_splits=10)
    instruction = json.dumps({"prompt": item_text(ZH_ITEM), "response": "B"}, ensure_ascii=False)
    out, table = run_step(step, [embedded, many, embedded, CLEAN_ZH], tmp_path, meta=[None, None, instruction, None])
    kept = {r["doc_id"]: r["text"] for r in out.kept.to_dicts()}
    cut = kept["d0"]
    assert ZH_ITEM["question"][:20] not in cut and ZH_ITEM["options"]["B"] not in cut
    pieces = cut.split("\n\n")
    assert len(pieces) == 2
    assert before.startswith(pieces[0]) and len(pieces[0]) > len(before) - 60  # window + sentence end only
    assert after.endswith(pieces[1]) and len(pieces[1]) > len(after) - 60
    assert kept["d3"] == CLEAN_ZH  # untouched
    rejected = {r["doc_id"]: json.loads(r["detail"])["cut"] for r in out.rejected.to_dicts()}
    assert "more than max_splits" in rejected["d1"] and "instruction row" in rejected["d2"]
    assert dict(table.select("doc_id", "action").iter_rows()) == {"d0": "cut", "d1": "dropped", "d2": "dropped"}


def test_cut_pieces_widen_to_sentence_ends() -> None:
    text = "第一句话在这里。第二句话包含污染内容在中间位置。第三句话在这里。"
    start = text.index("污染")
    assert cut_pieces(text, [(start, start + 2)], 2, 1) == ["第一句话在这里。", "第三句话在这里。"]
    assert cut_pieces(text, [(start, start + 2)], 2, 9) == []  # pieces too short


def test_bad_evaluation_files_fail_when_the_config_is_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "q"}\n{"id": 2, "question": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        Decontaminate(eval_sets=[str(bad)])
    bad.write_text('{"id": 1, "question": "q"}\n{"id": 1, "question": "r"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: item id '1' used twice"):
        Decontaminate(eval_sets=[str(bad)])
    with pytest.raises(ValueError, match=r"missing.jsonl: evaluation file not found"):
        Decontaminate(eval_sets=[str(tmp_path / "missing.jsonl")])
    with pytest.raises(ValueError, match="needs eval_sets"):
        Decontaminate()
    good = write_jsonl(tmp_path / "a.jsonl", [ZH_ITEM])
    with pytest.raises(ValueError, match="used twice"):
        Decontaminate(eval_sets=[str(good), f"a={good}"])
    with pytest.raises(ValueError, match="mode must be"):
        Decontaminate(eval_sets=[str(good)], mode="erase")  # type: ignore[arg-type]


def test_build_drops_contamination_records_it_and_the_audit_rescans(tmp_path: Path) -> None:
    exam = write_jsonl(tmp_path / "exam.jsonl", [ZH_ITEM, EN_ITEM])
    docs = [
        {"url": "u/zh-copy", "text": "练习题：" + item_text(ZH_ITEM).replace("，", ",")},
        {"url": "u/en-copy", "text": rewrap(item_text(EN_ITEM))},
        {"url": "u/clean", "text": CLEAN_ZH},
        {"url": "u/later", "text": FILLER_ZH + "第九条 民事主体从事民事活动，应当有利于节约资源、保护生态环境。"},
    ]
    src = write_jsonl(tmp_path / "corpus.jsonl", docs)
    root = tmp_path / "root"
    cfg = BuildConfig(
        root=root, workers=1, sources=[SourceSpec(src)], steps=[Normalize(), Decontaminate(eval_sets=[str(exam)])]
    )
    result = run_build(cfg, progress=False)
    assert (result.docs_in, result.docs_out, result.docs_rejected) == (4, 2, 2)
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT url, reason FROM rejects ORDER BY url").fetchall() == [
        ("u/en-copy", "contaminated"),
        ("u/zh-copy", "contaminated"),
    ]
    rows = con.execute(
        "SELECT d.url, c.eval_set, c.item_id, c.action FROM contamination c JOIN raw_documents d USING (doc_id) "
        "WHERE c.overlap >= 0.7 ORDER BY d.url"
    ).fetchall()
    assert rows == [("u/en-copy", "exam", "en-1", "dropped"), ("u/zh-copy", "exam", "zh-1", "dropped")]
    con.close()
    (res,) = run_audit(root, ["eval_contamination"])
    assert res.status == "pass", res.message
    # the evaluation set grows after the build: a published document now holds one of its items
    added = {"id": "zh-2", "question": docs[3]["text"][-60:], "options": ["对", "错"], "answer": 0}
    write_jsonl(exam, [ZH_ITEM, EN_ITEM, added])
    (res,) = run_audit(root, ["eval_contamination"])
    assert res.status == "fail" and [r[3] for r in res.violations.rows] == ["zh-2"]
    assert res.violations.rows[0][0].endswith(".parquet")  # the shard that holds it


@pytest.mark.skipif(not (SHARED / "zh_legal_exam_dev.jsonl").exists(), reason="needs ../shared/data")
def test_real_exam_copies_found_and_real_legal_text_kept(tmp_path: Path) -> None:
    """The 500 JEC-QA questions of zh_legal_exam_dev as the evaluation set; zh_legal_dev holds the
    same questions reformatted ('A:...;B:...', another punctuation) and 1,499 clean court texts."""
    dev = [json.loads(line) for line in (SHARED / "zh_legal_dev.jsonl").open(encoding="utf-8")]
    texts = [unicodedata.normalize("NFKC", d["text"]) for d in dev]
    step = Decontaminate(eval_sets=[str(SHARED / "zh_legal_exam_dev.jsonl")])
    out, _ = run_step(step, texts, tmp_path)
    kinds = {f"d{i}": d["kind"] for i, d in enumerate(dev)}
    removed = [kinds[i] for i in out.rejected.get_column("doc_id")]
    assert removed.count("exam_question") >= 0.98 * 500
    assert set(removed) == {"exam_question"}  # no case facts or judgment passages
