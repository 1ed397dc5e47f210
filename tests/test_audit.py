"""corpus.audit: every check passes on good builds and fails, naming the culprit, on broken ones."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from report_corpus import build_once, copy_corpus, final_shard, rewrite_rows, rows_of

from corpus.audit import AuditError, all_checks, main, run_audit
from corpus.catalog import Catalog
from corpus.store import CorpusLayout

PII_SCAN_AVAILABLE = importlib.util.find_spec("pipelines.pii") is not None


@pytest.fixture(scope="session")
def plain_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), "plain")


@pytest.fixture(scope="session")
def full_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), "full")


def result(root: Path, name: str, extra: list[Path] | None = None):
    (res,) = run_audit(root, [name], extra or [])
    return res


def column(res, name: str) -> list:
    i = res.violations.columns.index(name)
    return [row[i] for row in res.violations.rows]


def test_builtin_checks_are_documented() -> None:
    checks = all_checks()
    expected = {
        "accounting",
        "bucket_order",
        "bucket_sizes",
        "doc_ids_unique",
        "empty_texts",
        "exact_duplicates",
        "pii_left",
        "shard_files",
        "split_disjoint",
    }
    assert expected <= set(checks)
    for check in checks.values():
        assert len(check.description) > 40, check.name
        assert check.summary.endswith("."), check.name


def test_plain_build_passes(plain_corpus: Path) -> None:
    statuses = {r.check.name: (r.status, r.message) for r in run_audit(plain_corpus)}
    for name in ("accounting", "doc_ids_unique", "empty_texts", "exact_duplicates", "shard_files", "split_disjoint"):
        assert statuses[name][0] == "pass", (name, statuses[name])
    for name in ("bucket_order", "bucket_sizes", "pii_left"):  # no bucketing, no PII step in this build
        assert statuses[name][0] == "skip", (name, statuses[name])
    assert "pii_redact did not run" in statuses["pii_left"][1]


def test_full_build_passes(full_corpus: Path) -> None:
    results = {r.check.name: r for r in run_audit(full_corpus)}
    for name, r in results.items():
        if name == "pii_left" and not PII_SCAN_AVAILABLE:
            assert r.status == "error" and "pipelines.pii.scan" in r.message
            continue
        if name == "eval_contamination":  # the default steps have no decontaminate (tests/test_decontaminate.py)
            assert r.status == "skip" and "decontaminate" in r.message
            continue
        assert r.status == "pass", (name, r.status, r.message, r.violations.rows[:3])


def test_missing_shard(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    victim = final_shard(root, "validation")
    victim.unlink()
    res = result(root, "shard_files")
    assert res.status == "fail"
    assert column(res, "path") == [victim.relative_to(root).as_posix()]
    assert column(res, "problem") == ["missing on disk"]


def test_checksum_mismatch(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    victim = sorted((root / "raw").rglob("*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    victim.write_bytes(bytes(data))
    res = result(root, "shard_files")
    assert res.status == "fail"
    assert column(res, "problem") == ["sha256 differs"]
    assert column(res, "stage") == ["raw"]


def test_split_overlap_by_doc_id(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    train, val = final_shard(root, "train"), final_shard(root, "validation")
    leaked = rows_of(train)[0]
    rewrite_rows(root, val, [*rows_of(val), leaked])
    res = result(root, "split_disjoint")
    assert res.status == "fail"
    assert sorted(column(res, "overlap_by")) == ["doc_id", "text_hash"]
    assert leaked["doc_id"] in column(res, "key")
    assert result(root, "doc_ids_unique").status == "fail"


def test_split_overlap_by_text_only(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    train, val = final_shard(root, "train"), final_shard(root, "validation")
    row = dict(rows_of(train)[3])
    # Same text up to case and whitespace, under a new id: only the text hash can catch it.
    row["text"] = "  " + row["text"].upper().replace(" ", "   ") + "\n"
    row["doc_id"] = "rewritten-id"
    rewrite_rows(root, val, [*rows_of(val), row])
    res = result(root, "split_disjoint")
    assert res.status == "fail"
    assert column(res, "overlap_by") == ["text_hash"]
    assert result(root, "doc_ids_unique").status == "pass"


def test_duplicate_left_in_final_shards(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    train = final_shard(root, "train")
    rows = rows_of(train)
    rewrite_rows(root, train, [*rows, {**rows[7], "doc_id": "copy-of-7"}])
    res = result(root, "exact_duplicates")
    assert res.status == "fail"
    assert column(res, "copies") == [2]
    assert sorted(column(res, "doc_ids")[0]) == sorted([rows[7]["doc_id"], "copy-of-7"])
    # the extra row also breaks the accounting: documents no longer match runs.docs_out
    acc = result(root, "accounting")
    assert acc.status == "fail" and "documents rows != docs_out" in column(acc, "problem")


def test_accounting_catches_lost_rejects_and_bad_run_counts(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    rejects = sorted((root / "rejects").rglob("*.parquet"))
    victim = next(p for p in rejects if "exact_dedup" in p.as_posix())
    rewrite_rows(root, victim, rows_of(victim)[1:])
    with Catalog.open(CorpusLayout.at(root)) as cat:
        cat.conn.execute("UPDATE runs SET docs_in = docs_in + 1")
    res = result(root, "accounting")
    problems = column(res, "problem")
    assert res.status == "fail"
    assert "rejects rows != docs_rejected" in problems
    assert "rejects for step/reason != step_stats drops" in problems
    assert "docs_out + docs_rejected != docs_in" in problems
    assert "first step docs_in != runs.docs_in" in problems
    assert "rows of the raw shards the build read != docs_in" in problems


def test_accounting_passes_with_raw_data_waiting_for_the_next_build(plain_corpus: Path, tmp_path: Path) -> None:
    """A crawl after the build adds raw documents that no build has read yet: not a violation."""
    from crawl_support import crawl

    root = copy_corpus(plain_corpus, tmp_path / "c")
    crawl(root, settings={"DEMO_SITE_PORT": "0"})
    res = result(root, "accounting")
    assert res.status == "pass", res.violations.rows


def test_empty_text(plain_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(plain_corpus, tmp_path / "c")
    train = final_shard(root, "train")
    rows = rows_of(train)
    rows[2]["text"] = " \n\u3000 "
    rewrite_rows(root, train, rows)
    res = result(root, "empty_texts")
    assert res.status == "fail"
    assert column(res, "doc_id") == [rows[2]["doc_id"]]


def _move_bucket(root: Path, old: str, new: str) -> None:
    """Rename a bucket's directory and its catalog paths (as if the bucket were named ``new``)."""
    (root / "shards" / f"bucket={old}").rename(root / "shards" / f"bucket={new}")
    with Catalog.open(CorpusLayout.at(root)) as cat:
        cat.conn.execute("UPDATE shards SET path = replace(path, ?, ?)", [f"bucket={old}/", f"bucket={new}/"])
        cat.refresh_views()


def test_bucket_gap(full_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(full_corpus, tmp_path / "c")
    _move_bucket(root, "2", "3")  # bucket 2 is now missing: it came out empty
    res = result(root, "bucket_sizes")
    assert res.status == "fail"
    assert column(res, "bucket") == ["2"]
    assert column(res, "problem") == ["numbered bucket missing (empty)"]


def test_bucket_order(full_corpus: Path, tmp_path: Path) -> None:
    root = copy_corpus(full_corpus, tmp_path / "c")
    assert result(root, "bucket_order").status == "pass"
    with Catalog.open(CorpusLayout.at(root)) as cat:  # a curriculum that put bucket 2 before bucket 1
        cat.conn.execute("UPDATE curriculum_buckets SET bucket_index = 3 - bucket_index WHERE bucket_index IN (1, 2)")
    res = result(root, "bucket_order")
    assert res.status == "fail"
    assert column(res, "problem") == ["difficulty below the previous bucket's maximum"]
    assert result(root, "bucket_sizes").status == "pass"


def test_leaked_email(full_corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("pipelines.pii.scan")
    root = copy_corpus(full_corpus, tmp_path / "c")
    train = final_shard(root, "train", "1")
    rows = rows_of(train)
    rows[0]["text"] += " Write to jane.doe@example.com for the file."
    rewrite_rows(root, train, rows)
    res = result(root, "pii_left")
    assert res.status == "fail", res.message
    assert column(res, "doc_id") == [rows[0]["doc_id"]]
    assert "EMAIL" in column(res, "entity_type")[0].upper()
    assert column(res, "found_masked") == ["ja" + "*" * 16 + "om"]  # jane.doe@example.com, masked
    start, end = column(res, "start")[0], column(res, "end")[0]
    assert rows[0]["text"][start:end] == "jane.doe@example.com"


def test_user_checks_from_cli_and_config(plain_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checks = tmp_path / "my_checks"
    checks.mkdir()
    (checks / "long_enough.sql").write_text(
        "-- Every document has at least 300 characters.\n"
        "SELECT doc_id, length(text) AS chars FROM documents WHERE length(text) < 300 ORDER BY doc_id;\n"
    )
    (checks / "has_validation.sql").write_text(
        "-- The validation split is not empty.\n"
        "SELECT 'validation is empty' AS problem\n"
        "WHERE (SELECT count(*) FROM documents WHERE split = 'validation') = 0\n"
    )
    root = str(plain_corpus)
    assert main(["--root", root, "--checks-dir", str(checks), "--check", "has_validation"]) == 0
    assert "PASS  has_validation: The validation split is not empty." in capsys.readouterr().out

    assert main(["--root", root, "--checks-dir", str(checks), "--check", "long_enough", "--check", "shard_files"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  long_enough: Every document has at least 300 characters." in out
    assert "doc_id" in out and "chars" in out and "violation(s)" in out
    assert "PASS  shard_files" in out

    config = tmp_path / "build.yaml"
    config.write_text(f"root: {root}\naudit_checks: [{checks}]\nsteps: [normalize]\n")
    assert main(["--config", str(config), "--check", "long_enough"]) == 1
    assert main(["--config", str(config), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "long_enough" in listing and "accounting" in listing

    assert main(["--root", root, "--check", "no_such_check"]) == 2
    assert "unknown check" in capsys.readouterr().err


def test_bad_setups_are_named(plain_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "accounting.sql").write_text("-- mine\nSELECT 1 WHERE false\n")
    with pytest.raises(AuditError, match="already used"):
        all_checks([clash])
    empty = tmp_path / "empty_check"
    empty.mkdir()
    (empty / "nothing.sql").write_text("-- only a comment\n")
    with pytest.raises(AuditError, match=r"nothing\.sql: no query"):
        all_checks([empty])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "typo.sql").write_text("-- A typo.\nSELEC doc_id FROM documents\n")
    assert main(["--root", str(plain_corpus), "--checks-dir", str(broken), "--check", "typo"]) == 1
    assert "ERROR typo" in capsys.readouterr().out
    assert main(["--root", str(tmp_path / "nowhere")]) == 2
    assert "no catalog" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "nowhere" / "catalog.duckdb")
