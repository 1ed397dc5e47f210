"""Redaction policies, English NER, and the presidio AnalyzerEngine bridge."""

from __future__ import annotations

from pipelines.pii.engine import analyze_texts, spacy_ner
from pipelines.pii.evaluate import evaluate, evaluate_varied
from pipelines.pii.gate import en_sentence_spans
from pipelines.pii.recognizers import find_structured
from pipelines.pii.redact import redact_text
from pipelines.pii.scan import scan_structured

TEXT = "联系人邮箱a@b.com，电话13812345678，备用电话13812345678，另一个13912345678。身份证11010519491231002X"


def test_placeholders() -> None:
    out = redact_text(TEXT, find_structured(TEXT))
    assert out == "联系人邮箱<EMAIL>，电话<PHONE>，备用电话<PHONE>，另一个<PHONE>。身份证<PRC_ID>"


def test_pseudonyms_consistent_within_document_and_deterministic() -> None:
    findings = find_structured(TEXT)
    out = redact_text(TEXT, findings, mode="pseudonym", doc_key="doc-1", lang="zh")
    assert out == redact_text(TEXT, findings, mode="pseudonym", doc_key="doc-1", lang="zh")
    assert "13812345678" not in out and "a@b.com" not in out and "11010519491231002X" not in out
    phones = [p for p in out.replace("。", "，").split("，") if "555-01" in p]
    assert len(phones) == 3
    fakes = [p[-8:] for p in phones]
    assert fakes[0] == fakes[1] != fakes[2]  # same value -> same fake; another value -> another fake
    # pseudonyms are chosen so the audit scanner does not flag them again
    assert scan_structured([out]) == [[]]
    other = redact_text(TEXT, findings, mode="pseudonym", doc_key="doc-2", lang="zh")
    assert other != out


def test_secrets_never_faked() -> None:
    text = "token Bearer abcdefghijklmnopqrstuvwx and mysql://root:hunter22@10.1.1.1"
    out = redact_text(text, find_structured(text), mode="pseudonym", doc_key="d")
    assert out == "token Bearer <SECRET> and <URL_CREDENTIALS>"


def test_ner_engine_is_ner_only_and_sentences_keep_offsets() -> None:
    assert spacy_ner().pipe_names == ["ner"]
    para = "The contract was signed by Margaret Thompson in Chicago last year. "
    long_text = para * 400  # ~27k chars, 400 sentences (one distinct: the model sees it once)
    spans = en_sentence_spans(long_text)
    assert spans[0][0] == 0 and spans[-1][1] == len(long_text.rstrip()) and len(spans) == 400
    assert all(long_text[s:e] == para.strip() for s, e in spans)
    found = analyze_texts([long_text], ["en"], chunk_chars=10_000)[0]
    people = [long_text[f.start : f.end] for f in found if f.entity == "PERSON"]
    places = [long_text[f.start : f.end] for f in found if f.entity == "LOCATION"]
    assert len(people) >= 390 and set(people) == {"Margaret Thompson"}
    assert set(places) == {"Chicago"}


def test_ner_only_where_enabled() -> None:
    text = "Dear Thomas Lewis, I met Maria Garcia last week. Please call 415-555-2671."
    with_ner, without = analyze_texts([text, text], ["en", None])
    assert {f.entity for f in with_ner} == {"PERSON", "PHONE"}
    assert {f.entity for f in without} == {"PHONE"}


def test_presidio_analyzer_bridge_agrees() -> None:
    from pipelines.pii.presidio_bridge import build_analyzer  # imports presidio (and torch): here only

    text = "Dear Margaret Thompson, mail margaret@gmail.com or call 415-555-2671; 电话13812345678"
    ours = {(f.entity, f.start, f.end) for f in analyze_texts([text], ["en"])[0]}
    theirs = {(r.entity_type, r.start, r.end) for r in build_analyzer("en").analyze(text, language="en")}
    assert ours <= theirs  # presidio also keeps lower-scored overlapping duplicates
    zh = "原告张伟，男，住北京市朝阳区建国路88号，电话13812345678。被告李某某。"
    ours = {(f.entity, f.start, f.end) for f in analyze_texts([zh], ["zh"])[0]}
    theirs = {(r.entity_type, r.start, r.end) for r in build_analyzer("zh").analyze(zh, language="zh")}
    assert ours <= theirs and ("PERSON", 2, 4) in ours and ("ADDRESS", 8, 20) in ours


def test_labelled_set_accuracy_and_no_leaks() -> None:
    report = evaluate(120, ner=True, seed=3)
    for entity in ("EMAIL", "PHONE", "CREDIT_CARD", "IP_ADDRESS", "IBAN"):
        for lang in ("en", "zh"):
            assert report.recall(lang, entity) >= 0.98, (lang, entity)
            assert report.precision(lang, entity) >= 0.9, (lang, entity)
    assert report.recall("zh", "PRC_ID") >= 0.98
    assert report.recall("en", "PERSON") >= 0.85
    assert report.recall("zh", "PERSON") >= 0.95 and report.precision("zh", "PERSON") >= 0.9
    assert report.recall("zh", "ADDRESS") >= 0.9
    assert report.rescan_findings == 0


def test_varied_english_phones() -> None:
    """National phone formats without a country code, on the whole varied set."""
    report = evaluate_varied("all")
    assert report.recall("en-varied", "PHONE") >= 0.9 and report.precision("en-varied", "PHONE") >= 0.9
