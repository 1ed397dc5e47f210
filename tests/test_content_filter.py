"""content_filter: flagged words with CJK adjacency and Latin word boundaries, URL blocklists,
per-category limits, a catalog column to tune them on, and one-line errors for bad lists."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from common.config import ConfigError
from pipelines.config import BuildConfig, SourceSpec
from pipelines.flagged_words import WordMatcher, parse_list
from pipelines.runner import run_build
from pipelines.step import ShardContext
from pipelines.steps.content_filter import ContentFilter
from pipelines.steps.normalize import Normalize
from pipelines.url_blocklist import load_blocklists

REPO = Path(__file__).resolve().parents[1]
ZH, EN, URLS = (REPO / "configs" / "content" / f for f in ("zh.txt", "en.txt", "url_blocklist.txt"))


def matcher_of(tmp_path: Path, text: str) -> WordMatcher:
    path = tmp_path / "list.txt"
    path.write_text(text, encoding="utf-8")
    return WordMatcher(*parse_list(path))


def hit_terms(m: WordMatcher, texts: list[str]) -> list[list[str]]:
    doc, term, _ = m.hits(pl.Series(texts))
    out: list[list[str]] = [[] for _ in texts]
    for d, t in zip(doc.tolist(), term.tolist(), strict=True):
        out[d].append(m.terms[t].text)
    return out


def frame(texts: list[str], urls: list[str | None] | None = None) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {"doc_id": [f"d{i}" for i in range(n)], "source": ["t"] * n, "url": urls or [None] * n, "text": texts},
        schema_overrides={"url": pl.String},
    )


def run(step: ContentFilter, df: pl.DataFrame, tmp_path: Path):
    out = step.process(df, ShardContext(0, tmp_path, tmp_path))
    assert out.kept.height + out.rejected.height == df.height
    return out


def test_cjk_terms_match_inside_longer_words_unless_an_allowed_phrase_holds_them(tmp_path: Path) -> None:
    m = matcher_of(tmp_path, "[gambling]\n赌场\n网络赌场\n赌博\n!开设赌场罪\n[adult]\n淫\n!淫羊藿\n")
    got = hit_terms(
        m,
        [
            "这是一个网络赌博网站",  # 赌博 inside a longer Chinese word: a hit (no word boundaries in Chinese)
            "被告人犯开设赌场罪",  # inside an allowed phrase: none
            "进入网络赌场",  # leftmost-longest: the longer term once, not 赌场 as well
            "淫羊藿是一味中药，淫秽",  # the herb is allowed; 淫 in 淫秽 is a hit
            "百 家 赌\n博 网",  # whitespace between Han characters (re-wrapped or split on purpose)
        ],
    )
    assert got == [["赌博"], [], ["网络赌场"], ["淫"], ["赌博"]]


def test_latin_terms_need_word_boundaries_and_ignore_case_and_width(tmp_path: Path) -> None:
    m = matcher_of(tmp_path, "[adult]\nass\n[gambling]\ncasino\nfree spins\n")
    got = hit_terms(
        m,
        [
            "a classic class assessment",  # inside words: no hits
            "what an ass.",
            "CASINO网站 and ＣＡＳＩＮＯ",  # a Han character is a boundary; full-width folds by NFKC
            "casinos and xcasino",  # no boundary after / before
            "Free  Spins today, freespins",
        ],
    )
    assert got == [[], ["ass"], ["casino", "casino"], [], []]
    # "Free  Spins": the term has one space; the text two -> whitespace is not collapsed for Latin
    got = hit_terms(m, ["Free Spins today"])
    assert got == [["free spins"]]
    # the boundary check reads UTF-8 bytes: multi-byte letters around a term are inside a word,
    # multi-byte non-letters (Han, CJK punctuation, emoji) are boundaries
    got = hit_terms(m, ["écasino", "casinoß", "。casino，", "赌casino赌", "😀casino😀", "ŝcasino", "casino"])
    assert got == [[], [], ["casino"], ["casino"], ["casino"], [], ["casino"]]


def test_density_and_min_hits_keep_a_gambling_judgment_and_drop_a_gambling_page(tmp_path: Path) -> None:
    step = ContentFilter(word_lists=[str(ZH)])
    judgment = (
        "经审理查明，被告人张某某于2019年间在其经营的茶楼内设置赌场，组织他人参与赌博，从中抽头渔利，"
        "共计获利人民币三万余元。案发后，公安机关在该赌场内查获赌资若干。"
        + "上述事实，有证人证言、书证、搜查笔录、扣押清单及被告人的供述等证据证实，足以认定。" * 6
        + "本院认为，被告人以营利为目的，开设赌场，其行为已构成开设赌场罪，依法应予惩处。"
    )
    page = "百家乐 六合彩 时时彩 老虎机，在线赌场注册即送彩金，网络赌场官方下注平台。点击进入官网！"
    out = run(step, frame([judgment, page]), tmp_path)
    assert out.kept.get_column("doc_id").to_list() == ["d0"]
    flags = out.kept.get_column("content_flags").struct.unnest()
    assert flags.get_column("gambling")[0] == pytest.approx(2.0)  # 设置赌场, 该赌场 (开设赌场 is allowed)
    (row,) = out.rejected.to_dicts()
    assert row["reason"] == "flagged:gambling"
    detail = json.loads(row["detail"])
    assert detail["hits"] >= 3 and detail["per_1k_chars"] > 10.0 and "百家乐" in detail["terms"]


def test_category_limits_count_only_and_absolute_limits(tmp_path: Path) -> None:
    page = "百家乐 六合彩 时时彩 老虎机，网络赌场。加微信领取，代开发票，代开发票。"
    count_only = ContentFilter(word_lists=[str(ZH)], categories={"gambling": {"reject": False}})
    out = run(count_only, frame([page, page.split("加微信")[0]]), tmp_path)
    # gambling only counts now; the spam terms (3 hits in 37 characters) still reject the first page
    assert out.rejected.get_column("reason").to_list() == ["flagged:spam"]
    assert out.kept.get_column("content_flags").struct.field("gambling").to_list() == [5.0]
    one_strike = ContentFilter(word_lists=[str(ZH)], categories={"spam": {"max_hits": 0}})
    out = run(one_strike, frame(["正文很长。" * 200 + "代开发票"]), tmp_path)
    assert out.rejected.get_column("reason").to_list() == ["flagged:spam"]
    annotate = ContentFilter(word_lists=[str(ZH)], url_blocklist=str(URLS), filter=False)
    out = run(annotate, frame([page], ["https://casino.example/"]), tmp_path)
    assert out.rejected.height == 0 and out.kept.get_column("content_flags").struct.field("gambling")[0] == 5.0


def test_url_blocklist_subdomains_prefixes_patterns(tmp_path: Path) -> None:
    urls = [
        "https://casino.example/",
        "http://www.m.Casino.Example./page",  # subdomain, upper case, trailing dot
        "https://notcasino.example/",  # not a subdomain
        "https://user@adult.example:8443/x",
        "https://news.example/sponsored/2024/ad",
        "https://news.example/politics/story",  # same host, other path
        "https://www.bet365.example/odds",
        "https://promo.casino77.net/",  # the re: rule
        None,
    ]
    rules = load_blocklists([URLS]).match(pl.Series(urls, dtype=pl.String))
    assert [r.category if r else None for r in rules] == [
        "gambling",
        "gambling",
        None,
        "adult",
        "spam",
        None,
        "gambling",
        "gambling",
        None,
    ]
    out = run(ContentFilter(url_blocklist=str(URLS)), frame(["text"] * len(urls), urls), tmp_path)
    assert out.rejected.height == 6
    assert "content_flags" not in out.kept.columns  # no word lists: no column


def test_bad_lists_fail_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\nterm\tgambling\tlots\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: weight 'lots' is not a number"):
        ContentFilter(word_lists=[str(bad)])
    bad.write_text("[Gambling Sites]\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:1: category 'Gambling Sites'"):
        ContentFilter(word_lists=[str(bad)])
    bad.write_text("re:([unclosed\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:1: bad regular expression"):
        ContentFilter(url_blocklist=str(bad))
    with pytest.raises(ValueError, match=r"missing.txt: word list not found"):
        ContentFilter(word_lists=[str(tmp_path / "missing.txt")])
    with pytest.raises(ValueError, match=r"categories: \['violence'\] are in no list"):
        ContentFilter(word_lists=[str(ZH)], categories={"violence": {"max_hits": 1}})
    with pytest.raises(ConfigError, match="parameter 'max_hits_per_1k_chars' must be"):
        ContentFilter.from_params({"max_hits_per_1k_chars": "3"}, where="cfg.yaml: steps[0]")


def test_list_contents_are_part_of_the_stage_identity(tmp_path: Path) -> None:
    path = tmp_path / "zh.txt"
    path.write_text("[gambling]\n赌场\n", encoding="utf-8")
    before = ContentFilter(word_lists=[str(path)]).params()
    path.write_text("[gambling]\n赌场\n百家乐\n", encoding="utf-8")
    assert ContentFilter(word_lists=[str(path)]).params() != before


def test_build_counts_rejects_by_category_and_tunes_in_sql(tmp_path: Path) -> None:
    rows = [
        {
            "text": "本院认为，被告人开设赌场，其行为已构成开设赌场罪，依法应予惩处。赌场设于其住所。",
            "url": "https://court.example/1",
        },
        {"text": "百家乐 六合彩 时时彩 老虎机 在线赌场 注册即送彩金", "url": "https://spam.example/2"},
        {"text": "Visit our online casino for free spins and casino bonus codes!", "url": "https://x.example/3"},
        {"text": "The tenant must pay rent on time under the lease agreement.", "url": "https://m.casino.example/4"},
        {"text": "The court held that the contract was void for uncertainty.", "url": "https://court.example/5"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    step = ContentFilter(word_lists=[str(ZH), str(EN)], url_blocklist=str(URLS))
    cfg = BuildConfig(root=tmp_path / "root", workers=1, sources=[SourceSpec(src)], steps=[Normalize(), step])
    result = run_build(cfg, progress=False)
    assert result.docs_in == 5 and result.docs_out + result.docs_rejected == 5
    con = duckdb.connect(str(tmp_path / "root" / "catalog.duckdb"), read_only=True)
    reasons = dict(con.execute("SELECT url, reason FROM rejects WHERE step = 'content_filter'").fetchall())
    assert reasons == {
        "https://spam.example/2": "flagged:gambling",
        "https://x.example/3": "flagged:gambling",
        "https://m.casino.example/4": "blocked_url:gambling",
    }
    # the column a threshold is tuned on, per 1,000 characters
    (per_1k,) = con.execute(
        "SELECT content_flags.gambling * 1000 / length(text) FROM documents WHERE url = 'https://court.example/1'"
    ).fetchone()
    assert 0 < per_1k < 40  # one hit (赌场设于...; 开设赌场 is allowed) in ~40 characters: under min_hits
    stats = con.execute("SELECT docs_in, docs_out, drops FROM step_stats WHERE step = 'content_filter'").fetchone()
    assert stats[0] == 5 and stats[1] == 2
