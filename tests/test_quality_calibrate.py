"""Calibrated per-language thresholds: quantiles, the CLI, the step reading the files, and what they keep.

The statute and the ad-spam page below are written for the test; the shipped thresholds
(``configs/quality``) come from real references (docs/QUALITY.md). A test on the shared real data
runs only where ``../shared/data`` is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from common.config import ConfigError
from corpus.schema import make_doc_id
from pipelines.step import ShardContext
from pipelines.steps.quality import Quality
from quality.calibrate import _quantile, calibrate_rule, main
from quality.rules import DEFAULT_RULES, LangThresholds, configure_rules, evaluate
from quality.signals import compute_signals
from quality.thresholds import load_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "quality"
SHARED = REPO.parent / "shared" / "data" / "zh_legal_dev.jsonl"
RULE = {r.name: r for r in DEFAULT_RULES}

CN = "零一二三四五六七八九"
SUBJECTS = (
    "进货查验 食品安全追溯 产品质量检验 价格监测 广告审查 计量器具检定 标准化管理 知识产权保护 消费者投诉处理 "
    "特种设备安全 网络交易监管 药品经营许可 化妆品标签管理 电梯维护保养 农贸市场管理 商品条码管理 "
    "检验检测机构资质认定 企业信用信息公示 合同格式条款监督 直销行为规范 食用农产品市场销售 医疗器械使用"
).split()
DUTIES = ["市场监督管理部门", "县级以上人民政府", "乡镇人民政府和街道办事处", "行业协会", "经营者"]
TEMPLATES = [
    "违反本条例第{m}条规定，未建立{s}制度的，由{d0}责令限期改正；逾期不改正的，处{a}千元以上{b}万元以下的罚款。",
    "{d}应当依照有关法律、法规的规定，做好本行政区域内的{s}工作，所需经费列入本级财政预算。",
    "经营者应当建立健全{s}制度，如实记录相关信息，记录保存期限不得少于{y}年。",
    "有下列情形之一的，依照本条例第{m}条的规定处理：\n（一）拒绝、阻碍{s}监督检查的；\n（二）伪造、变造有关记录的；\n（三）提供虚假材料的。",
    "{d}发现违反{s}规定的行为，应当及时制止，并向有关部门报告；有关部门接到报告后，应当在{y}个工作日内依法处理。",
    "鼓励公民、法人和其他组织对{s}工作进行社会监督。对做出显著成绩的单位和个人，按照国家有关规定给予表彰。",
    "{d0}可以委托具备相应条件的技术机构开展{s}工作，并对受委托机构的活动进行监督。",
    "从事{s}活动的单位，应当配备与其规模相适应的专业人员，并定期组织培训和考核。",
    "国家机关工作人员在{s}工作中滥用职权、玩忽职守、徇私舞弊的，依法给予处分；构成犯罪的，依法追究刑事责任。",
    "本条例所称{s}，是指依照本条例第{m}条的规定，对相关活动实施的登记、检查和记录。",
    "{d}应当建立{s}信息公开制度，通过政府网站等途径向社会公布有关信息，接受公众查询。",
    "当事人对依照本条例作出的处理决定不服的，可以依法申请行政复议或者提起行政诉讼。",
    "{d}应当制定{s}应急预案，定期组织演练；发生突发事件时，立即启动应急预案并采取处置措施。",
    "任何单位和个人不得以欺骗、贿赂等不正当手段取得与{s}有关的许可、认证或者资质。",
    "{s}的具体办法，由{d0}会同有关部门另行制定，报本级人民政府批准后施行。",
    "违反本条例规定，造成他人人身、财产损害的，依法承担民事责任；构成违反治安管理行为的，由公安机关依法给予处罚。",
]


def cn(n: int) -> str:
    if n < 10:
        return CN[n]
    return (CN[n // 10] if n >= 20 else "") + "十" + (CN[n % 10] if n % 10 else "")


def statute(articles: int = 64) -> str:
    """A local regulation in the shape real ones have: chapters, numbered articles, items, and the
    formulas statutes repeat (依照本条例第X条的规定, 责令限期改正, 依法追究刑事责任)."""
    lines = ["某市市场监督管理条例", "第一章　总则"]
    for n in range(1, articles + 1):
        template = TEMPLATES[n % len(TEMPLATES)] if n % 3 else TEMPLATES[(n * 5 + 3) % len(TEMPLATES)]
        body = template.format(
            s=SUBJECTS[n % len(SUBJECTS)],
            d=DUTIES[n % len(DUTIES)],
            d0=DUTIES[0],
            m=cn(max(1, n - 3)),
            a=n % 5 + 1,
            b=n % 5 + 2,
            y=n % 3 + 2,
        )
        lines.append(f"第{cn(n)}条　{body}")
        if n % 20 == 0 and n < articles:
            lines.append(f"第{cn(n // 20 + 1)}章　{['监督管理', '法律责任', '附则'][n // 20 - 1]}")
    return "\n".join(lines)


def ad_spam(n_chars: int) -> str:
    cities, kinds = (
        ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安"],
        ["离婚", "刑事辩护", "交通事故", "劳动仲裁"],
    )
    lines, i = [], 0
    while sum(len(line) + 1 for line in lines) < n_chars:
        offer = "免费咨询热线24小时在线！点击进入官网立即预约，首次咨询免费，优惠多多！"
        lines.append(f"【{cities[i % 8]}{kinds[i % 4]}律师】{offer}")
        if i % 3 == 0:
            lines.append("本站提供最新最全的法律法规下载，欢迎收藏本站！")
        i += 1
    return "\n".join(lines)[:n_chars]


def band_signals(values: list[float], n_chars: int | list[int], signal: str) -> pl.DataFrame:
    lengths = n_chars if isinstance(n_chars, list) else [n_chars] * len(values)
    bands = ["short" if n < 300 else ("medium" if n <= 3000 else "long") for n in lengths]
    return pl.DataFrame({signal: values, "n_chars": lengths, "band": bands})


def test_thresholds_at_the_stated_quantiles() -> None:
    values = [float(v) for v in range(1000)]  # 0 .. 999 in the medium band
    lengths = [1000 + 2 * i for i in range(1000)]  # the larger values in the longer documents
    medium = band_signals([v / 1000 for v in values], lengths, "dup_5gram_frac")
    sig = pl.concat([medium, band_signals([0.0] * 50, 100, "dup_5gram_frac")])
    lt, raw = calibrate_rule(RULE["gopher_dup_5gram"], sig, "zh", 0.01, 20)
    assert lt is not None
    # the split-conformal rank ceil((n + 1)(1 - q)) = ceil(990.99) = 991st smallest of 1,000
    assert raw["medium"] == pytest.approx(sorted(values)[991 - 1] / 1000)  # 0.990
    assert lt.medium == pytest.approx(0.99)
    # a clean short band (quantile 0) never becomes stricter than the published default (0.15)
    assert raw["short"] == 0.0 and lt.short == RULE["gopher_dup_5gram"].cjk
    # no long references: filled with the 20 nearest in length (the longest medium ones, 0.980-0.999),
    # a sample too small to show its 0.99 quantile, so its maximum is widened by its upper spread
    top = np.array(values[-20:]) / 1000
    assert lt.long == pytest.approx(top.max() + np.quantile(top, 0.9) - np.quantile(top, 0.5), abs=1e-4)
    # a min rule sits at the q quantile (rounded down, away from the reference)
    sents = band_signals([float(v % 50) for v in range(1000)], 1000, "sentences")
    lt, raw = calibrate_rule(RULE["c4_too_few_sentences"], sents, "zh", 0.05, 20)
    # floor((n + 1) q) = floor(50.05) = 50th smallest: each of 0..49 is there 20 times, so 2
    assert raw["medium"] == float(sorted(v % 50 for v in range(1000))[50 - 1]) == 2.0
    assert lt is not None and lt.medium == 2.0  # below the cjk default of 3: the reference needs it
    assert lt.good == 24.5  # the reference median: the soft score's full margin


def test_threshold_holds_for_new_documents_not_only_the_sample() -> None:
    """The point of the conformal rank: a good document the calibration never saw breaks a rule with
    probability <= q. The plain sample quantile falls short of that when the sample is small for q
    (300 references, q = 0.002: its 0.998 quantile is the maximum, which 1 in 301 new ones exceed)."""
    rng = np.random.default_rng(0)
    q, n, trials = 0.002, 300, 400
    conformal, plain = [], []
    for _ in range(trials):
        ref, new = rng.random(n), rng.random(2000)
        t = _quantile(ref, q, "max")
        assert t is not None and t > ref.max()  # rank ceil(301 * 0.998) = 301 > n: widened beyond the sample
        conformal.append(float((new > t).mean()))
        plain.append(float((new > np.quantile(ref, 1 - q, method="higher")).mean()))
    assert np.mean(plain) > q  # ~1/301
    assert np.mean(conformal) <= q
    # a sample large enough for q: exactly the conformal rank, no widening
    big = np.arange(1, 1001, dtype=float)  # 1..1000, q = 0.01: rank ceil(1001 * 0.99) = 991
    assert _quantile(big, 0.01, "max") == 991.0
    assert _quantile(big, 0.01, "min") == 10.0  # rank floor(1001 * 0.01) = 10


def fixture_files(tmp_path: Path) -> tuple[Path, Path]:
    fx = [json.loads(line) for line in (REPO / "tests" / "data" / "quality_fixtures.jsonl").read_text().splitlines()]
    good = [{"text": r["text"]} for r in fx if r["label"] == "good" and r["lang"] == "zh"]
    good += [{"text": statute(40 + k)} for k in range(3)]
    junk = [{"text": r["text"], "lang": r["lang"]} for r in fx if r["label"] == "junk"]
    ref, bad = tmp_path / "good.jsonl", tmp_path / "junk.jsonl"
    ref.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in good) + "\n", encoding="utf-8")
    bad.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in junk) + "\n", encoding="utf-8")
    return ref, bad


def test_calibrate_cli_writes_a_file_the_step_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, junk = fixture_files(tmp_path)
    out = tmp_path / "quality" / "zh.yaml"
    assert (
        main(["--reference", str(ref), "--junk", str(junk), "--lang", "zh", "--out", str(out), "--min-band-docs", "2"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "good removed" in printed and "junk caught" in printed and "gopher_dup_5gram" in printed
    assert "reference, all" in printed and "junk (zh) removed" in printed
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert data["lang"] == "zh" and data["rules"]["gopher_short_doc"] is None  # length rules are off
    assert set(data["rules"]["gopher_dup_5gram"]) == {"short", "medium", "long", "good"}
    assert "python -m quality.calibrate --reference" in out.read_text(encoding="utf-8")  # the command is recorded
    calibrated = load_dir(out.parent)
    assert isinstance(calibrated["zh"]["gopher_dup_5gram"], LangThresholds)
    # the step: thresholds by language, decisions explained with the band the threshold came from
    step = Quality(thresholds_from=str(out.parent), detect_language=False)
    assert step.params()["calibrated"]["zh"]["gopher_dup_5gram"]  # part of the stage identity
    texts = [ad_spam(1500), "一二三四五六七八九十" * 3]
    docs = pl.DataFrame(
        {
            "doc_id": [make_doc_id("t", str(i), t) for i, t in enumerate(texts)],
            "source": ["import:t"] * 2,
            "url": [None, None],
            "title": [None, None],
            "text": texts,
            "lang": ["zh", "zh"],
            "created_at": pl.Series([None, None], dtype=pl.Datetime("us", "UTC")),
            "meta": [None, None],
        },
        schema_overrides={"url": pl.String, "title": pl.String, "meta": pl.String},
    )
    res = step.process(docs, ShardContext(0, tmp_path / "step", tmp_path))
    assert res.rejected.height == 2
    assert all("(zh, " in d for d in res.rejected["detail"])
    table = pl.read_parquet(tmp_path / "step" / "tables" / "quality_signals" / "part-00000.parquet")
    assert table.filter(pl.col("failed_rule").is_not_null())["threshold_from"].str.starts_with("zh, ").all()
    assert table["failed_value"].null_count() == 0 and table["failed_threshold"].null_count() == 0


def test_bad_inputs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    assert main(["--reference", str(bad), "--lang", "zh", "--out", str(tmp_path / "zh.yaml")]) == 2
    assert f"{bad}: reference has no 'text' field" in capsys.readouterr().err
    folder = tmp_path / "q"
    folder.mkdir()
    (folder / "zh.yaml").write_text("lang: zh\nrules: {gopher_typo: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"zh.yaml: unknown rule 'gopher_typo'"):
        Quality.from_params({"thresholds_from": str(folder)}, where="cfg.yaml: steps[1]")
    (folder / "zh.yaml").write_text("lang: en\nrules: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"does not match the file name"):
        Quality.from_params({"thresholds_from": str(folder)}, where="cfg.yaml: steps[1]")


def test_long_formulaic_statute_kept_ad_spam_of_the_same_length_removed() -> None:
    law = statute()
    spam = ad_spam(len(law))
    assert len(law) > 3000 and len(spam) == len(law)
    sig = compute_signals(pl.Series([law, spam])).with_columns(pl.lit("zh").alias("lang"))
    assert sig["dup_5gram_frac"][0] > 0.3  # formulaic: Gopher's 0.15 (scaled to Han characters) rejects it
    assert evaluate(sig, configure_rules())["reason"][0] is not None
    verdict = evaluate(sig, configure_rules(calibrated=load_dir(SHIPPED)))
    assert verdict["reason"][0] is None, verdict["detail"][0]
    assert verdict["reason"][1] is not None
    assert verdict["threshold_from"][1] == "zh, >3000 chars"


def test_short_complete_case_fact_kept() -> None:
    """A 150-character case fact is a whole document; length limits belong to length_filter."""
    fact = (
        "公诉机关指控：2016年3月28日20时许，被告人颜某在本市洪山区马湖新村足球场马路边捡拾到被害人谢某的手机一部，"
        "并在同年3月28日21时起，分多次通过支付宝小额免密支付功能，秘密盗走被害人谢某支付宝内人民币3723元。"
        "案发后，被告人颜某家属已赔偿被害人全部损失，并取得谅解。"
    )
    sig = compute_signals(pl.Series([fact])).with_columns(pl.lit("zh").alias("lang"))
    assert evaluate(sig, configure_rules())["reason"][0] == "c4_too_few_sentences"  # script defaults: 3 sentences
    assert evaluate(sig, configure_rules(calibrated=load_dir(SHIPPED)))["reason"][0] is None


@pytest.mark.skipif(not SHARED.is_file(), reason="needs the shared real data (../shared/data)")
def test_shipped_thresholds_keep_real_chinese_legal_text() -> None:
    rows = pl.read_ndjson(SHARED)
    sig = compute_signals(rows["text"]).with_columns(pl.lit("zh").alias("lang"))
    kept = evaluate(sig, configure_rules(calibrated=load_dir(SHIPPED)))["reason"].null_count() / rows.height
    assert kept >= 0.97  # half of these were calibration data; the held-out figures are in docs/QUALITY.md


def test_repetition_rules_apply_from_the_word_floor() -> None:
    """Below Gopher's 50-word floor one repeated phrase decides a repetition fraction: the rule does
    not apply there (no failure, no margin); from the floor up it does, as before."""
    section = (
        "The State shall not deny to any person equality before the law. "
        "The State shall not deny to any person the equal protection of the laws."
    )  # 27 words, 'The State shall not deny to any person' twice
    spam = " ".join(["Buy cheap legal forms online today, best prices guaranteed."] * 8)  # 72 words
    sig = compute_signals(pl.Series([section, spam]))
    assert sig["n_words"].to_list()[0] < 50 <= sig["n_words"].to_list()[1]
    assert sig["dup_5gram_frac"][0] > RULE["gopher_dup_5gram"].latin  # the signal alone would reject it
    rules = configure_rules(disable=["gopher_short_doc", "c4_too_few_sentences", "gopher_few_stop_words"])
    verdict = evaluate(sig, rules)
    assert verdict["reason"][0] is None
    assert verdict["reason"][1] is not None and verdict["reason"][1].startswith(("gopher_dup", "gopher_top"))
    rep = next(r for r in rules if r.name == "gopher_dup_5gram")
    assert sig.select(rep.fails()).to_series().to_list() == [False, True]  # Rule.fails agrees with evaluate
