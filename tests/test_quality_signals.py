"""Heuristic signals against values computed by hand on tiny English and Chinese documents."""

from __future__ import annotations

import math

import polars as pl
import pytest

from quality.signals import SIGNAL_SCHEMA, compute_signals

EN = "The cat sat.\nThe cat sat.\n\nA dog ran to the park..."
ZH = "第一条　为了规范合同行为，保护当事人的合法权益，制定本法。\n目录\n第二条　合同应当公平。"


def row(text: str) -> dict:
    return compute_signals(pl.Series([text])).row(0, named=True)


def test_english_by_hand() -> None:
    s = row(EN)
    n_chars = len(EN)
    assert s["script"] == "latin"
    assert s["n_chars"] == n_chars
    assert s["n_words"] == 12  # The cat sat The cat sat A dog ran to the park
    assert s["n_lines"] == 3  # the blank line does not count
    assert s["mean_word_len"] == pytest.approx(((3 + 3 + 3) * 2 + 1 + 3 + 3 + 2 + 3 + 4) / 12)
    assert s["stop_words"] == 2  # "the" (any case) and "to"
    assert s["ellipsis_ratio"] == pytest.approx(1 / 12)
    assert s["ellipsis_lines_frac"] == pytest.approx(1 / 3)
    assert s["hash_ratio"] == 0.0
    assert s["alpha_frac"] == 1.0
    assert s["dup_line_frac"] == pytest.approx(1 / 3)
    assert s["dup_line_char_frac"] == pytest.approx(12 / n_chars)
    assert s["char_dup_frac"] == pytest.approx(12 / (n_chars - 3))  # FineWeb: newlines excluded
    assert s["dup_para_frac"] == 0.0
    assert s["line_punct_frac"] == 1.0  # "..." ends in "." as in FineWeb
    assert s["short_line_frac"] == 1.0  # every line <= 30 characters
    assert s["c4_sentences"] == 2  # the ellipsis line is not a C4 line
    assert s["sentences"] == 3  # wherever a sentence ends, "park..." too
    assert s["newline_ratio"] == pytest.approx(3 / 12)
    # "The cat" and "cat sat" both occur twice: 2 x (3 + 1 + 3) characters
    assert s["top_2gram_frac"] == pytest.approx(14 / n_chars)
    assert s["top_3gram_frac"] == pytest.approx(2 * 11 / n_chars)  # "The cat sat"
    assert s["dup_5gram_frac"] == 0.0
    assert not s["has_lorem_ipsum"] and not s["has_curly_bracket"]


def test_chinese_by_hand() -> None:
    s = row(ZH)
    assert s["script"] == "cjk"
    assert s["n_chars"] == 44
    assert s["n_cjk_chars"] == 36 and s["n_words"] == 36  # one word unit per Han character
    # jieba-dictionary words (quality.segment): 第一条 为了 规范 合同 行为 保护 当事人 合法 权益 制定 本法
    # 目录 第二条 合同 应当 公平 (16 words, 35 of the 36 Han characters) + 的 = 17 words
    assert s["mean_word_len"] == pytest.approx(36 / 17)
    assert s["dict_word_frac"] == pytest.approx(35 / 36)
    assert s["n_lines"] == 3
    assert s["short_line_frac"] == pytest.approx(2 / 3)  # "目录" and the 11-character article (<= 12)
    assert s["line_punct_frac"] == pytest.approx(2 / 3)  # lines ending in "。"
    assert s["c4_sentences"] == 2  # "目录" is no sentence
    assert s["stop_words"] == 3  # 为, 了, 的
    assert s["alpha_frac"] == pytest.approx(36 / 40)  # 36 characters + 4 punctuation chunks
    assert s["tokens_est"] == 37  # 36 Han characters + ceil(4 other non-space characters / 4)
    assert s["newline_ratio"] == pytest.approx(2 / 36)
    assert s["top_2gram_frac"] == 0.0  # no 4-character sequence repeats


def test_chinese_repetition_counts_characters() -> None:
    """A repeated Chinese phrase is repetition even without spaces (datatrove sees one long word)."""
    phrase = "本站提供最新最全的法律法规下载欢迎收藏本站"
    s = row("。".join([phrase] * 6) + "。")
    assert s["script"] == "cjk"
    assert s["dup_10gram_frac"] > 0.7  # 20-character grams repeat five times out of six
    assert s["top_4gram_frac"] == pytest.approx(6 * 8 / len(phrase * 6 + "。" * 6))  # 8-character grams


def test_chinese_sentences_and_numbered_articles() -> None:
    """Sentences end in 。！？； (and ?!; as Chinese text writes them); a numbered article or item line
    is one sentence even without a mark; a chapter heading is none."""
    lines = {
        "第一条　为了保护民事主体的合法权益；调整民事关系": 1,  # ； ends a clause; also a numbered article
        "（一）停止侵害": 1,  # numbered item without a mark
        "第三章　法人": 0,  # a heading, not a sentence
        "当事人应当遵循诚信原则。对此有疑问！": 2,
        "下列哪项正确?A:甲;B:乙": 2,  # an exam question: half-width marks without spaces
        "2、被告人退赔全部损失": 1,
        "一、基本事实。二、争议焦点。": 2,  # marks counted, the numbered line not counted twice
    }
    for text, expected in lines.items():
        assert row(text)["c4_sentences"] == row(text)["sentences"] == expected, text
    assert row("\n".join(lines))["c4_sentences"] == sum(lines.values())
    # a case fact written as one long sentence is one, with or without its final 。
    fact = (
        "经审理查明，2016年3月28日20时许，被告人颜某在本市洪山区马湖新村足球场马路边捡拾到被害人谢某的手机一部，"
        "并分多次通过支付宝小额免密支付功能秘密盗走被害人支付宝内人民币3723元"
    )
    assert row(fact)["c4_sentences"] == 1 and row(fact + "。")["c4_sentences"] == 1
    assert row("案发后，被告人家属退赔损失。其后，被害人出具谅解书")["c4_sentences"] == 2


def test_wrapped_english_sentences() -> None:
    """C4 counts sentences only in lines ending in a mark; hard-wrapped text keeps its sentences."""
    wrapped = (
        "Permission is hereby granted, free of charge, to any person obtaining a\ncopy of this software. The above "
        "copyright notice shall be included in\nall copies. THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY"
    )
    s = row(wrapped)
    assert s["c4_sentences"] == 0 and s["sentences"] == 2


def test_english_sentence_ends_in_brackets_quotes_and_colons() -> None:
    """A mark before a closing bracket or quote ends a sentence; a prose line ending in a colon (it
    introduces a list or a quotation) is one sentence; code lines ending in a colon are not."""
    assert row("(Leave off the ham and you call it Chicken Pontiac, says Ramsey.)")["sentences"] == 1
    assert row('He said it was "final." The court agreed.')["sentences"] == 2
    assert row("Important aspects of the Kennedy textile plans are these:")["sentences"] == 1
    assert row("The purpose of this provision was thus explained in the Court's opinion: \"")["sentences"] == 1
    assert row("Important aspects of the plan:")["c4_sentences"] == 0  # C4's own count is unchanged
    code = "if x is None:\nfor key in sorted(keys):\nclass Reader(Base):\nelse:"
    assert row(code)["sentences"] == 0
    assert row("Menu: Home")["sentences"] == 0  # a colon inside a line is no sentence end


def test_code_lines() -> None:
    code = "import os\nx = 1\ndef f():\n    return x\nThis is prose."
    assert row(code)["code_lines_frac"] == pytest.approx(3 / 5)  # import, assignment, def; not "return x"
    statute = "Section 12. Notice.\n(a) The employer shall give notice;\nimport duties are owed.\n（一）停止侵害;"
    assert row(statute)["code_lines_frac"] == 0.0  # item lines end in ";" (NFKC turns ； into ;)
    assert row("function f() { return 1; }")["curly_brackets"] == 1


def test_code_and_lorem_flags() -> None:
    s = compute_signals(pl.Series(["function f() { return 1; }", "Lorem Ipsum dolor sit amet."]))
    assert s.get_column("has_curly_bracket").to_list() == [True, False]
    assert s.get_column("has_lorem_ipsum").to_list() == [False, True]


def test_batch_independent_and_typed() -> None:
    """Signals of a document do not depend on its neighbours (n-grams never cross documents)."""
    texts = [EN, ZH, "", "x", EN + " The cat sat.", ZH]
    together = compute_signals(pl.Series(texts))
    alone = pl.concat([compute_signals(pl.Series([t])) for t in texts])
    assert together.schema == pl.Schema(SIGNAL_SCHEMA)
    assert together.equals(alone)
    assert together.row(2, named=True)["n_words"] == 0  # empty text: zeros, no division errors
    for name, dtype in SIGNAL_SCHEMA.items():
        if dtype == pl.Float64 and name not in ("mean_word_len", "dict_word_frac"):
            assert all(v is not None and math.isfinite(v) for v in together.get_column(name))
