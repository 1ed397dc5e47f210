"""Traditional/Simplified Chinese: normalize's chinese_script and minhash_dedup on the converted
form (a Hong Kong / Taiwan copy of a mainland statute is a near duplicate once converted)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.chinese_script import converter, to_script, written_in
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.step import ShardContext
from pipelines.steps.minhash_dedup import MinHashDedup
from pipelines.steps.normalize import Normalize

# Articles 3-8 of the PRC Civil Code (public law text), as published on the mainland.
STATUTE = (
    "第三条 民事主体的人身权利、财产权利以及其他合法权益受法律保护，任何组织或者个人不得侵犯。"
    "第四条 民事主体在民事活动中的法律地位一律平等。"
    "第五条 民事主体从事民事活动，应当遵循自愿原则，按照自己的意思设立、变更、终止民事法律关系。"
    "第六条 民事主体从事民事活动，应当遵循公平原则，合理确定各方的权利和义务。"
    "第七条 民事主体从事民事活动，应当遵循诚信原则，秉持诚实，恪守承诺。"
    "第八条 民事主体从事民事活动，不得违反法律，不得违背公序良俗。"
)


def test_only_texts_written_in_the_other_script_are_converted() -> None:
    hk = converter("s2hk").convert(STATUTE)
    assert hk != STATUTE and "體" in hk
    texts = pl.Series([hk, "陕西省乾县人民法院审理查明", "The court held.", None, ""])
    assert written_in(texts, "traditional").tolist() == [True, False, False, False, False]
    out, changed = to_script(texts, "simplified")
    assert changed.tolist() == [True, False, False, False, False]
    assert out[0] == STATUTE  # this passage round-trips exactly
    assert out[1] == "陕西省乾县人民法院审理查明"  # t2s would have made it 干县: Simplified text is left alone
    back, changed = to_script(pl.Series([STATUTE]), "traditional")
    assert changed.tolist() == [True] and back[0] == converter("s2t").convert(STATUTE)


def frame(rows: list[dict]) -> pl.DataFrame:
    base = {"doc_id": "", "source": "t", "url": None, "title": None, "meta": None}
    return pl.DataFrame([{**base, **r} for r in rows], schema_overrides={"url": pl.String, "meta": pl.String})


def test_normalize_converts_text_title_and_instruction_parts_and_records_the_original_script(tmp_path: Path) -> None:
    tw = converter("s2tw")
    rows = [
        {
            "doc_id": "tw",
            "text": tw.convert(STATUTE),
            "title": tw.convert("中华人民共和国民法典"),
            "meta": '{"court": "x"}',
        },
        {"doc_id": "cn", "text": STATUTE, "title": "民法典"},
        {
            "doc_id": "synth",
            "text": tw.convert("问：什么是诚信原则？答：民事主体从事民事活动，应当遵循诚信原则。"),
            "meta": json.dumps(
                {"prompt": tw.convert("什么是诚信原则？"), "response": tw.convert("秉持诚实，恪守承诺。")}
            ),
        },
    ]
    out = Normalize(chinese_script="simplified").process(frame(rows), ShardContext(0, tmp_path, tmp_path))
    got = {r["doc_id"]: r for r in out.kept.to_dicts()}
    assert got["tw"]["text"] == unicodedata.normalize("NFKC", STATUTE)  # NFKC: full-width punctuation too
    assert got["tw"]["title"] == "中华人民共和国民法典"
    assert json.loads(got["tw"]["meta"]) == {"court": "x", "original_script": "traditional", "script_conversion": "t2s"}
    assert got["cn"]["meta"] is None  # nothing converted, nothing recorded
    assert json.loads(got["synth"]["meta"])["original_script"] == "traditional"
    # the runner rewrites an instruction row's prompt/response with the step's rewrite_texts
    step = Normalize(chinese_script="simplified")
    parts = step.rewrite_texts([tw.convert("什么是诚信原则？"), tw.convert("秉持诚实，恪守承诺。")], out.kept)
    assert parts == ["什么是诚信原则?", "秉持诚实,恪守承诺。"]


def test_bad_script_options_are_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown OpenCC configuration 'x2y'"):
        Normalize(chinese_script="simplified", opencc_config="x2y")
    with pytest.raises(ValueError, match="opencc_config needs chinese_script"):
        Normalize(opencc_config="t2s")
    with pytest.raises(ValueError, match="chinese_script must be one of"):
        MinHashDedup(chinese_script="cantonese")


def build(tmp_path: Path, name: str, dedup: MinHashDedup, normalize: Normalize) -> duckdb.DuckDBPyConnection:
    hk = converter("s2hk").convert(STATUTE + "第九条 民事主体从事民事活动，应当有利于节约资源、保护生态环境。")
    rows = [
        {"url": "https://npc.example/civil-code", "text": STATUTE},
        {
            "url": "https://hk.example/civil-code",
            "text": "轉載自內地法規資料庫。" + hk,
        },  # a header and one more article
        {
            "url": "https://npc.example/other",
            "text": "第十条 处理民事纠纷，应当依照法律；法律没有规定的，可以适用习惯。",
        },
    ]
    src = tmp_path / f"{name}.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    root = tmp_path / name
    cfg = BuildConfig(root=root, workers=1, sources=[SourceSpec(src)], steps=[normalize, dedup])
    result = run_build(cfg, progress=False)
    assert result.docs_out + result.docs_rejected == result.docs_in == 3
    return duckdb.connect(str(root / "catalog.duckdb"), read_only=True)


def test_a_traditional_copy_of_a_statute_is_a_near_duplicate_once_converted(tmp_path: Path) -> None:
    plain = build(tmp_path, "plain", MinHashDedup(threshold=0.6), Normalize())
    assert plain.execute("SELECT count(*) FROM rejects").fetchone() == (0,)  # different characters: no match
    for name, dedup, normalize in (
        ("shingled", MinHashDedup(threshold=0.6, chinese_script="simplified"), Normalize()),
        ("converted", MinHashDedup(threshold=0.6), Normalize(chinese_script="simplified")),
    ):
        con = build(tmp_path, name, dedup, normalize)
        rows = con.execute("SELECT url, reason, dup_of FROM rejects").fetchall()
        keeper = con.execute("SELECT doc_id FROM raw_documents WHERE url = 'https://npc.example/civil-code'").fetchone()
        assert rows == [("https://hk.example/civil-code", "near_duplicate", keeper[0])], name
        kept = dict(con.execute("SELECT url, text FROM documents").fetchall())
        assert kept["https://npc.example/civil-code"] == unicodedata.normalize("NFKC", STATUTE)
