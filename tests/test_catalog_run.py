"""The catalog owns a job's run lifecycle (`catalog.run`) and its tables: no job writes SQL itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from conftest import query

from corpus import catalog
from corpus.catalog import Catalog
from corpus.store import CorpusLayout


@pytest.fixture
def layout(tmp_path) -> CorpusLayout:
    return CorpusLayout.at(tmp_path / "data")


def _runs(layout: CorpusLayout) -> list[tuple]:
    return query(layout.root, "SELECT kind, status, error, docs_out FROM runs ORDER BY started_at, run_id")


def test_a_block_that_ends_is_succeeded_one_that_raises_is_failed_or_interrupted(layout):
    with catalog.run(layout, "crawl", command="scrapy crawl x", config={"spider": "x"}) as run:
        assert _runs(layout) == [("crawl", "running", None, None)]
        run.finish(docs_out=3, config={"close_reason": "finished"})
    with pytest.raises(ValueError, match="boom"), catalog.run(layout, "synth", command="s", hint="rerun resumes"):
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), catalog.run(layout, "synth", command="s"):
        raise KeyboardInterrupt
    assert _runs(layout) == [
        ("crawl", "succeeded", None, 3),
        ("synth", "failed", "ValueError: boom (rerun resumes)", None),
        ("synth", "interrupted", "KeyboardInterrupt: ", None),
    ]
    [(config,)] = query(layout.root, "SELECT config->>'close_reason' FROM runs WHERE kind = 'crawl'")
    assert config == "finished"


def test_a_killed_run_is_marked_interrupted_by_the_run_that_resumes_it(layout):
    killed = catalog.Run.start(layout, "synth", command="s", config={"job": "qa"})
    other = catalog.Run.start(layout, "synth", command="s", config={"job": "summaries"})
    with catalog.run(layout, "synth", command="s", config={"job": "qa"}, resumes={"job": "qa"}):
        pass
    rows = dict(query(layout.root, "SELECT run_id, status FROM runs"))
    assert rows[killed.run_id] == "interrupted" and rows[other.run_id] == "running"


def test_a_deferred_run_is_written_at_its_first_visit_or_when_it_fails(layout):
    with catalog.run(layout, "build", command="b", defer=True) as run:
        assert not layout.catalog.exists()  # nothing written while the job works
        with run.catalog() as cat:
            run.finish(docs_out=1, cat=cat)
    with pytest.raises(RuntimeError), catalog.run(layout, "build", command="b", defer=True):
        raise RuntimeError("no input documents")
    assert [r[:2] for r in _runs(layout)] == [("build", "succeeded"), ("build", "failed")]


def test_tables_rows_and_views_without_sql(layout):
    schema = pa.schema(
        [
            pa.field("job", pa.string(), nullable=False),
            pa.field("n", pa.int32()),
            pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    )
    now = datetime.now(UTC)
    with Catalog.open(layout) as cat:
        cat.ensure_table("things", schema)
        cat.ensure_table("things", schema)  # idempotent
        cat.append_rows("things", [("a", 1, now), ("b", 2, now), ("a", 3, now)])
        cat.append_rows("things", [("c", now)], columns=["job", "at"])
        assert cat.rows("things", ["n"], job="a") == [(1,), (3,)]
        assert sorted(cat.rows("things", ["job"], job=["b", "c"])) == [("b",), ("c",)]
        cat.delete_rows("things", job="a")
        cat.define_view("things_b", "things", ["job", "n"], job="b")
        assert cat.rows("things_b", ["job", "n"]) == [("b", 2)]
        assert (cat.table_kind("things"), cat.table_kind("things_b"), cat.table_kind("nothing")) == (
            "table",
            "view",
            None,
        )
        with pytest.raises(Exception, match="NOT NULL"):
            cat.append_rows("things", [(None, 1, now)])
        with pytest.raises(ValueError, match="not a catalog identifier"):
            cat.rows("things; DROP TABLE runs", ["job"])
