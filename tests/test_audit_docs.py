"""docs/AUDITS.md: every ```sql example runs against real builds, from any working directory."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from report_corpus import REPO, build_once

from corpus.audit import run_audit

DOC = REPO / "docs" / "AUDITS.md"


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="session", params=["plain", "full"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), request.param)


def test_doc_has_the_promised_examples() -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 7
    text = "\n".join(blocks)
    for needle in ("GROUP BY source, split", "FROM rejects", "ORDER BY chars DESC", "HAVING count(*) > 1"):
        assert needle in text


def test_examples_run_from_another_directory(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the views hold absolute paths, so the cwd does not matter
    con = duckdb.connect(str(corpus / "catalog.duckdb"), read_only=True)
    try:
        for sql in sql_blocks():
            rows = con.execute(sql).fetchall()
            assert isinstance(rows, list)
        per_source = con.execute(sql_blocks()[1]).fetchall()
        assert sum(r[2] for r in per_source) == con.execute("SELECT count(*) FROM documents").fetchone()[0]
        drops = con.execute(sql_blocks()[2]).fetchall()
        assert {"empty_text", "too_short"} <= {r[1] for r in drops}
    finally:
        con.close()


def test_user_check_example_is_a_working_check(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / "validation_has_every_language.sql").write_text(sql_blocks()[0])
    (res,) = run_audit(corpus, ["validation_has_every_language"], [folder])
    assert res.status in ("pass", "fail"), res.message
    assert res.check.summary == "Every language in train also appears in validation, so per-language eval is possible."
