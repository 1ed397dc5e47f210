"""End-to-end builds through the real CLI and runner: accounting, determinism, resume, bad input."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, query, run_cli, write_config, write_jsonl

from common.config import ConfigError
from pipelines.config import load_config
from pipelines.runner import run_build

STEPS = ["normalize", {"length_filter": {"min_chars": 20}}, "exact_dedup", {"split": {"validation_ratio": 0.1}}]


def final_checksums(root: Path) -> list[tuple[str, str, int]]:
    return query(root, "SELECT path, checksum, rows FROM shards WHERE stage = 'final' ORDER BY path")


def test_default_build_accounts_for_every_document(tmp_path, sample_jsonl):
    root = tmp_path / "data"
    result = run_cli("-m", "pipelines.build", "--config", "configs/default.yaml", "--root", str(root), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "exact_duplicate" in result.stdout and "0:ingest" in result.stdout

    n_input = sum(1 for line in sample_jsonl.read_text().splitlines() if line.strip())
    [(docs,)] = query(root, "SELECT count(*) FROM documents")
    [(rejected,)] = query(root, "SELECT count(*) FROM rejects")
    assert docs + rejected == n_input
    [(status, docs_in, docs_out)] = query(root, "SELECT status, docs_in, docs_out FROM runs WHERE kind = 'build'")
    assert (status, docs_in, docs_out) == ("succeeded", n_input, docs)

    reasons = dict(query(root, "SELECT reason, count(*) FROM rejects GROUP BY reason"))
    assert reasons["empty_text"] == 5 and reasons["too_short"] == 3 and reasons["exact_duplicate"] >= 25
    # every duplicate points at a known document that exact_dedup itself kept (a later step may remove it)
    orphans = query(
        root,
        "SELECT count(*) FROM rejects r WHERE reason = 'exact_duplicate' AND dup_of NOT IN "
        "(SELECT doc_id FROM documents UNION ALL SELECT doc_id FROM rejects WHERE step <> 'exact_dedup')",
    )
    assert orphans == [(0,)]
    # no exact duplicate texts left, ids unique, splits present in the Hive layout
    assert query(root, "SELECT count(*) - count(DISTINCT lower(text)) FROM documents") == [(0,)]
    assert query(root, "SELECT count(*) - count(DISTINCT doc_id) FROM documents") == [(0,)]
    assert {r[0] for r in query(root, "SELECT DISTINCT split FROM documents")} == {"train", "validation"}
    first_shards = (root / "shards").glob("bucket=*/split=train/part-00000-00000.parquet")
    buckets = sorted(p.parent.parent.name for p in first_shards)
    assert buckets == ["bucket=0", "bucket=1", "bucket=2", "bucket=3"]  # the default curriculum: 4 buckets
    # step stats: docs out of one step are docs in of the next
    stats = query(root, "SELECT step, docs_in, docs_out FROM step_stats ORDER BY step_index")
    configured = [s.name for s in load_config(REPO / "configs" / "default.yaml").steps]
    assert [s[0] for s in stats] == ["ingest", *configured]
    assert all(a[2] == b[1] for a, b in itertools.pairwise(stats))
    # the mojibake generated in the sample is repaired
    assert query(root, "SELECT count(*) FROM documents WHERE text LIKE '%â€%'") == [(0,)]


def test_exact_dedup_keeps_first_in_stable_order_across_shards(tmp_path):
    long = "The tenant shall keep the premises in good and substantial repair. " * 40
    records = [{"text": f"Document {i}. " + long, "url": f"u{i}"} for i in range(60)]
    records += [{"text": "DOCUMENT 7.  " + long.upper(), "url": "copy-of-7"}, {"text": records[3]["text"], "url": "x"}]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    cfg = load_config(
        write_config(tmp_path / "c.yaml", tmp_path / "data", [src], ["normalize", "exact_dedup"], work_shard_mb=0.02)
    )
    result = run_build(cfg, progress=False)
    assert len(result.stages) == 3 and len(list(result.stages[1].directory.glob("part-*.parquet"))) > 3
    root = tmp_path / "data"
    dups = query(root, "SELECT r.url, d.url FROM rejects r JOIN documents d ON r.dup_of = d.doc_id ORDER BY 1")
    assert dups == [("copy-of-7", "u7"), ("x", "u3")]
    assert query(root, "SELECT count(*) FROM documents") == [(60,)]


def test_builds_are_deterministic_and_resume_after_sigkill(tmp_path, sample_jsonl):
    def config(name: str) -> Path:
        return write_config(tmp_path / f"{name}.yaml", tmp_path / name, [sample_jsonl], STEPS, work_shard_mb=0.03)

    reference = run_build(load_config(config("ref")), progress=False)
    assert len(list(reference.stages[1].directory.glob("done/process-*.json"))) >= 10  # fused: no parts

    # Kill a build with SIGKILL once the second step has finished a few shards, then rerun.
    cfg = config("killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.build", "--config", str(cfg), "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "killed" / "work").glob("02-length_filter-*/done/process-*.json"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the build finished before it could be killed"
    assert not (tmp_path / "killed" / "shards").exists()
    assert not (tmp_path / "killed" / "catalog.duckdb").exists()  # a build writes the catalog once, at the end

    done_before = {p.name for p in (tmp_path / "killed" / "work").glob("01-normalize-*/done/process-*.json")}
    resumed = run_cli("-m", "pipelines.build", "--config", str(cfg), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len(done_before) >= 3
    assert query(tmp_path / "killed", "SELECT status FROM runs") == [("succeeded",)]
    assert final_checksums(tmp_path / "killed") == final_checksums(tmp_path / "ref")
    ref_rejects = query(tmp_path / "ref", "SELECT path, checksum FROM shards WHERE stage = 'rejects' ORDER BY 1")
    assert (
        query(tmp_path / "killed", "SELECT path, checksum FROM shards WHERE stage = 'rejects' ORDER BY 1")
        == ref_rejects
    )

    # a rerun with nothing changed skips all work and republishes identical bytes; --force recomputes
    again = run_cli("-m", "pipelines.build", "--config", str(cfg), "--quiet", "--force")
    assert again.returncode == 0, again.stderr
    assert final_checksums(tmp_path / "killed") == final_checksums(tmp_path / "ref")


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: _truncated_parquet(d), r"bad\.parquet: not a readable Parquet file"),
        (lambda d: _write(d / "bad.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n'), r"bad\.jsonl:2: invalid UTF-8"),
        (
            lambda d: _write(d / "bad.jsonl", b'{"text": "ok"}\n{"body": "no text"}\n'),
            r"bad\.jsonl:2: record has no 'text' field",
        ),
        (lambda d: _notext_parquet(d), r"bad\.parquet: no 'text' column"),
        (lambda d: _write(d / "bad.jsonl", b'{"text": "ok"}\n{"text": \n'), r"bad\.jsonl:2: invalid JSON"),
    ],
)
def test_bad_input_fails_the_run_by_name_and_keeps_published_output(tmp_path, sample_jsonl, make_input, message):
    root = tmp_path / "data"
    good = run_cli(
        "-m",
        "pipelines.build",
        "--config",
        str(write_config(tmp_path / "c.yaml", root, [sample_jsonl], STEPS)),
        "--quiet",
    )
    assert good.returncode == 0, good.stderr
    before = final_checksums(root)
    bad_file = make_input(tmp_path)
    result = run_cli("-m", "pipelines.build", "--config", str(tmp_path / "c.yaml"), "--input", str(bad_file), "--quiet")
    assert result.returncode == 1
    assert result.stderr.count("\n") <= 2, "a clear one-line error, not a traceback"

    assert re.search(message, result.stderr), result.stderr
    [(status, error)] = query(root, "SELECT status, error FROM runs ORDER BY started_at DESC LIMIT 1")
    assert status == "failed" and re.search(message, error)
    assert final_checksums(root) == before
    assert not list((root / "raw" / "import").glob(".*staging*"))


def test_config_errors_name_the_key(tmp_path):
    bad_step = tmp_path / "a.yaml"
    bad_step.write_text("steps:\n  - normalize\n  - dedupe_everything\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: steps\[1\]: unknown step 'dedupe_everything'"):
        load_config(bad_step)
    bad_param = tmp_path / "b.yaml"
    bad_param.write_text("steps:\n  - length_filter: {min_chars: 5, max_char: 10}\n")
    with pytest.raises(ConfigError, match=r"steps\[0\]: unknown parameter\(s\) 'max_char' for step 'length_filter'"):
        load_config(bad_param)
    bad_value = tmp_path / "c.yaml"
    bad_value.write_text("steps:\n  - split: {validation_ratio: 1.5}\n")
    with pytest.raises(ConfigError, match=r"validation_ratio must be in \[0, 1\)"):
        load_config(bad_value)
    result = run_cli("-m", "pipelines.build", "--config", str(bad_param))
    assert result.returncode == 2 and "max_char" in result.stderr


def test_parquet_input_maps_extra_columns_into_meta(tmp_path):
    table = pa.table(
        {
            "text": ["A statute of general application applies here. " * 3, ""],
            "url": ["http://x/1", "http://x/2"],
            "court": ["High Court", None],
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    cfg = load_config(write_config(tmp_path / "c.yaml", tmp_path / "data", [src], ["normalize"]))
    run_build(cfg, progress=False)
    rows = query(tmp_path / "data", "SELECT source, meta FROM documents")
    assert rows[0][0] == "import:in" and json.loads(rows[0][1]) == {"court": "High Court"}
    assert query(tmp_path / "data", "SELECT reason FROM rejects") == [("empty_text",)]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_parquet(d: Path) -> Path:
    pq.write_table(pa.table({"text": ["x" * 1000] * 100}), d / "full.parquet")
    data = (d / "full.parquet").read_bytes()
    return _write(d / "bad.parquet", data[: len(data) // 2])


def _notext_parquet(d: Path) -> Path:
    pq.write_table(pa.table({"body": ["hello"]}), d / "bad.parquet")
    return d / "bad.parquet"
