"""`quality.annotate` against a scripted local OpenAI-compatible server: scores land in the catalog
and in the JSONL train_classifier reads, an invalid answer is retried (then accepted, or rejected
with its reason), a rerun is served from the cache, and the sample is stratified by SQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import ConfigError
from quality.annotate import SampleConfig, load_config, main, sample_query
from quality.rubric import parse_score
from quality.train_classifier import read_jsonl
from tests.conftest import query
from tests.synth_support import REPO, FaultServer, make_raw_corpus

KEY = "sk-annotate"


class RubricServer(FaultServer):
    """Answers the rubric: the score is the document's ``SCORE=<n>`` (``SCORE=9`` is out of range)."""

    def content(self, body: dict[str, Any], user: str, tag: str, action: str, n: int) -> str:
        if action in ("garbage", "schema"):
            return super().content(body, user, tag, action, n)
        score = re.search(r"SCORE=(\d)", user).group(1)  # type: ignore[union-attr]
        return json.dumps({"reasons": f"Document {tag} is a court text.", "score": int(score)})


def doc(tag: str, score: int, lang: str = "en", extra: str = "") -> dict[str, Any]:
    body = "被告人应当赔偿原告的全部损失。" if lang == "zh" else "The defendant shall pay the claimant's losses."
    return {"text": f"DOC={tag} SCORE={score} {extra} {body}", "lang": lang, "url": f"https://e.test/{tag}"}


DOCS = [
    doc("a", 5),
    doc("b", 1),
    doc("c", 4, "zh"),
    doc("d", 0, "zh"),
    doc("retry", 3, extra="FAULTS=garbage,schema"),  # two invalid answers, then a valid one
    doc("bad", 2, extra="ALWAYS=garbage"),  # never valid: rejected after 1 + invalid_retries
    doc("range", 9),  # a score the rubric schema does not allow: retried, then rejected
]


def write_config(path: Path, root: Path, base_url: str, **sample: Any) -> Path:
    cfg = {
        "job": "t",
        "root": str(root),
        "templates_dir": str(REPO / "configs" / "prompts"),
        "endpoint": {"base_url": base_url, "model": "scripted", "api_key_env": "ANNOTATE_TEST_KEY"},
        "limits": {"concurrency": 4, "invalid_retries": 2, "backoff_s": 0.01},
        "sample": {"table": "raw_documents", "per_group": 10, **sample},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_annotations_retries_rejects_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ANNOTATE_TEST_KEY", KEY)
    root = tmp_path / "corpus"
    make_raw_corpus(root, DOCS)
    with RubricServer(KEY) as server:
        config = write_config(tmp_path / "annotate.yaml", root, server.base_url)
        assert main(["--config", str(config)]) == 0
        first_calls = len(server.calls)
        out = capsys.readouterr().out
        assert "7 documents -> 5 annotated, 2 rejected (invalid_json: 1, schema_violation: 1)" in out

        rows = query(root, "SELECT doc_id, lang, score, rationale, model, prompt_id, attempts FROM quality_annotations")
        by_tag = {re.search(r"Document (\w+)", r[3]).group(1): r for r in rows}  # type: ignore[union-attr]
        assert {t: r[2] for t, r in by_tag.items()} == {"a": 5, "b": 1, "c": 4, "d": 0, "retry": 3}
        assert by_tag["c"][5] == "annotate.zh.v2" and by_tag["a"][5] == "annotate.en.v2"  # rubric by language
        assert by_tag["retry"][6] == 3 and by_tag["a"][6] == 1
        assert {r[4] for r in rows} == {"scripted"}
        rejects = dict(query(root, "SELECT reason, tries FROM quality_annotation_rejects"))
        assert rejects == {"invalid_json": 3, "schema_violation": 3}  # 1 + invalid_retries each
        assert first_calls == 4 + 3 + 3 + 3  # four clean, and three tries for each of the other three

        labelled = root / "annotations" / "t.jsonl"
        examples = read_jsonl(labelled, "text", label_field="score", min_label=3)
        assert sorted(e.label for e in examples) == [0, 0, 1, 1, 1]
        lines = [json.loads(x) for x in labelled.read_text(encoding="utf-8").splitlines()]
        assert {x["label"] for x in lines if x["score"] >= 3} == {"good"}

        # a rerun: every answer comes from the cache, the tables are replaced, not appended to
        assert main(["--config", str(config)]) == 0
        assert len(server.calls) == first_calls
        assert "requests sent: 0" in capsys.readouterr().out
        assert query(root, "SELECT count(*) FROM quality_annotations")[0][0] == 5
        runs = query(root, "SELECT status, docs_out FROM runs WHERE run_id LIKE 'annotate%' ORDER BY started_at")
        assert runs == [("succeeded", 5), ("succeeded", 5)]


def test_sample_is_stratified_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOTATE_TEST_KEY", KEY)
    root = tmp_path / "corpus"
    make_raw_corpus(root, [doc(f"en{i}", 4) for i in range(6)] + [doc(f"zh{i}", 4, "zh") for i in range(6)])
    with RubricServer(KEY) as server:
        config = write_config(tmp_path / "a.yaml", root, server.base_url, per_group=2)
        assert main(["--config", str(config)]) == 0
    picked = query(root, "SELECT lang, doc_id FROM quality_annotations ORDER BY lang, doc_id")
    assert [lang for lang, _ in picked] == ["en", "en", "zh", "zh"]  # 2 per (source, lang) group
    sql, params = sample_query(SampleConfig(per_group=2, group_by=["lang"], seed=1))
    assert "PARTITION BY lang" in sql and params == ["1", 2]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample: {group_by: [text]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: sample.group_by must list columns of source, lang"):
        load_config(bad)
    bad.write_text("sample: {per_grup: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: sample: unknown key\(s\) 'per_grup'"):
        load_config(bad)
    assert load_config(REPO / "configs" / "annotate.yaml").sample.group_by == ["source", "lang"]


def test_score_must_be_a_digit_from_0_to_5() -> None:
    assert parse_score({"score": 4}) == (4, None) and parse_score({"score": " 4 "}) == (4, None)
    assert parse_score({"score": True})[0] is None and parse_score({"score": -1})[0] is None
    assert parse_score({"score": "7"})[0] is None and parse_score({"score": "x"})[0] is None


def test_no_valid_answer_fails_the_run_and_keeps_the_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("ANNOTATE_TEST_KEY", KEY)
    root = tmp_path / "corpus"
    make_raw_corpus(root, [doc("x", 3, extra="ALWAYS=garbage"), doc("y", 3, extra="ALWAYS=schema")])
    with RubricServer(KEY) as server:
        assert main(["--config", str(write_config(tmp_path / "a.yaml", root, server.base_url))]) == 2
    err = capsys.readouterr().err
    assert "no annotation: all 2 answers were rejected" in err and "quality_annotation_rejects" in err
    assert sorted(r for (r,) in query(root, "SELECT reason FROM quality_annotation_rejects")) == [
        "invalid_json",
        "schema_violation",
    ]
    assert query(root, "SELECT status FROM runs WHERE run_id LIKE 'annotate%'") == [("failed",)]
    assert query(root, "SELECT count(*) FROM quality_annotations")[0][0] == 0
