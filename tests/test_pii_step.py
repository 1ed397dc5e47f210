"""End to end: a build of the bundled sample (plus a dense contact list) through `pii_redact`."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from common.config import ConfigError
from pipelines.config import load_config
from pipelines.pii.entities import ALL_ENTITIES
from pipelines.pii.recognizers import SPECS
from pipelines.pii.scan import scan_structured
from pipelines.runner import run_build
from pipelines.steps.pii_redact import COUNTS_COLUMN, PiiRedact

ROOT = Path(__file__).resolve().parents[1]
RECOGNIZER_NAMES = {s.name for s in SPECS} | {
    "spacy_ner", "en_names", "en_address", "lac", "zh_role", "zh_bio", "zh_address", "zh_postcode", "zh_repeat",
}  # fmt: skip
CONTACTS = "\n".join(
    f"张{i} 13{i}1234567{i} zhang{i}@163.com 11010519491231002X" for i in range(8)
)  # a leaked contact list: mostly PII
STREETS = (
    "The note on the kitchen table said to meet at the corner of Elm St. and 3rd Ave. at noon, "
    "and to bring the blue folder from the office."
)  # street names without a house number


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pii_build")
    extra = tmp / "extra.jsonl"
    rows = [{"text": CONTACTS, "lang": "zh", "url": "https://leak.example/list"}]
    rows += [{"text": STREETS, "lang": "en", "url": f"https://streets.example/{i}"} for i in range(2)]  # 2nd: a dup
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg_path = tmp / "build.yaml"
    cfg_path.write_text(
        f"""
root: {tmp / "corpus"}
workers: 1
sources:
  - path: {ROOT / "samples/legal_sample.jsonl"}
  - path: {extra}
steps:
  - normalize
  - exact_dedup
  - pii_redact
"""
    )
    run_build(load_config(cfg_path), progress=False)
    return tmp / "corpus"


def test_counts_column_findings_table_and_no_leak(built: Path) -> None:
    con = duckdb.connect(str(built / "catalog.duckdb"), read_only=True)
    fields = [f.name for f in pq.read_schema(next((built / "shards").rglob("*.parquet"))).field(COUNTS_COLUMN).type]
    assert fields == [
        "email",
        "phone",
        "prc_id",
        "credit_card",
        "iban",
        "ip_address",
        "url_credentials",
        "secret",
        "person",
        "location",
        "address",
    ]
    totals = con.sql(
        "SELECT sum(pii_counts.email), sum(pii_counts.phone), sum(pii_counts.prc_id), sum(pii_counts.person) "
        "FROM documents"
    ).fetchall()[0]
    assert totals is not None and all(t > 0 for t in totals)

    cols = [r[0] for r in con.sql("DESCRIBE pii_findings").fetchall()]
    assert cols == ["doc_id", "entity_type", "start", "end", "recognizer", "score"]
    # every kept document's counts agree with its findings rows
    per_doc = " + ".join(f"pii_counts.{f}" for f in fields)
    mismatch = con.sql(
        "SELECT count(*) FROM documents d LEFT JOIN (SELECT doc_id, count(*) n FROM pii_findings GROUP BY 1) f "
        f"USING (doc_id) WHERE coalesce(f.n, 0) != {per_doc}"
    ).fetchall()[0]
    assert mismatch == (0,)

    # the findings table holds offsets and names, never the values
    types = {r[0] for r in con.sql("SELECT DISTINCT entity_type FROM pii_findings").fetchall()}
    names = {r[0] for r in con.sql("SELECT DISTINCT recognizer FROM pii_findings").fetchall()}
    assert types <= set(ALL_ENTITIES)
    assert names <= RECOGNIZER_NAMES, names - RECOGNIZER_NAMES
    assert {"spacy_ner", "lac", "email", "cn_mobile", "prc_id"} <= names

    texts = [r[0] for r in con.sql("SELECT text FROM documents").fetchall()]
    assert scan_structured(texts) == [[] for _ in texts]
    assert sum("<EMAIL>" in t for t in texts) >= 10 and not any("@gmail.com" in t for t in texts)


def test_street_names_without_a_number_redacted_in_documents_and_rejects(built: Path) -> None:
    con = duckdb.connect(str(built / "catalog.duckdb"), read_only=True)
    kept = con.sql("SELECT text FROM documents WHERE text LIKE '%kitchen table%'").fetchall()
    rejected = con.sql("SELECT step, text FROM rejects WHERE text LIKE '%kitchen table%'").fetchall()
    assert len(kept) == 1 and [r[0] for r in rejected] == ["exact_dedup"]  # the copy: rejected before pii_redact
    for text in (kept[0][0], rejected[0][1]):
        assert "the corner of <ADDRESS> and <ADDRESS> at noon" in text, text
        assert "Elm" not in text and "3rd" not in text


def test_dense_document_rejected_with_reason(built: Path) -> None:
    con = duckdb.connect(str(built / "catalog.duckdb"), read_only=True)
    rows = con.sql("SELECT step, reason, detail, text FROM rejects WHERE reason = 'pii_density'").fetchall()
    assert len(rows) == 1
    step, _, detail, text = rows[0]
    assert step == "pii_redact" and "24 findings" in detail
    # the reject row holds the redacted text: no value of the contact list survives anywhere
    assert text.count("<PHONE>") == 8 and "@163.com" not in text and scan_structured([text]) == [[]]
    # its findings are still recorded (offsets into the rejected text)
    n = con.sql(
        "SELECT count(*) FROM pii_findings f JOIN rejects r USING (doc_id) WHERE r.reason = 'pii_density'"
    ).fetchall()[0]
    assert n is not None and n[0] == 24


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="FAX"):
        PiiRedact.from_params({"entities": ["EMAIL", "FAX"]}, where="x.yaml: steps[0]")
    with pytest.raises(ConfigError, match="mode"):
        PiiRedact.from_params({"mode": "mask"}, where="x.yaml: steps[0]")
    with pytest.raises(ConfigError, match="ner_languages"):
        PiiRedact.from_params({"ner_languages": ["ja"]}, where="x.yaml: steps[0]")
