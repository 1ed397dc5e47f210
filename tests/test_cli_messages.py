"""What a user reads: one-line errors naming the file or key, the summary's time columns, SQL on a
local root."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from conftest import SAMPLE, query, run_cli, write_config, write_jsonl

from common.config import ConfigError
from pipelines.config import load_config

STEPS = ["normalize", {"length_filter": {"min_chars": 20}}]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A small built corpus root (the sample through two map steps), config beside it."""
    tmp = tmp_path_factory.mktemp("cli")
    config = write_config(tmp / "c.yaml", tmp / "data", [SAMPLE], STEPS)
    result = run_cli("-m", "pipelines.build", "--config", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    assert re.search(r"task s +wall s +resumed", result.stdout) and "task s: seconds of the" in result.stdout
    assert not re.search(r"\d+/\d+", result.stdout.split("task s:")[0]), "a first run resumes nothing"
    return tmp


def _build(config: Path, *args: str):
    return run_cli("-m", "pipelines.build", "--config", str(config), "--quiet", *args)


def _one_line_error(result, pattern: str) -> None:
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert re.search(pattern, result.stderr), result.stderr


def test_a_rerun_marks_every_stage_resumed_and_shows_its_own_wall_time(built):
    result = _build(built / "c.yaml")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("\n\n")[0].splitlines()[2:]
    assert [line.split()[0] for line in table] == ["0:ingest", "1:normalize", "2:length_filter"]
    for line in table:
        assert re.search(r"\s(\d+)/\1\s", line), line  # every task of every stage came from the earlier run
    rows = query(built / "data", "SELECT tasks, reused_tasks, wall_seconds < seconds + 5 FROM step_stats")
    assert rows and all(tasks and reused in (0, tasks) and ok for tasks, reused, ok in rows)


def test_sql_on_a_local_root(built):
    result = run_cli("-m", "corpus.remote", "sql", str(built / "data"), "SELECT count(*) AS n FROM documents")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "n" and int(result.stdout.splitlines()[1]) > 0
    _one_line_error(run_cli("-m", "corpus.remote", "sql", str(built / "nothing"), "SELECT 1"), r"nothing.*no catalog")
    _one_line_error(run_cli("-m", "corpus.remote", "sql", str(built / "data"), "SELEC 1"), r"error: Parser Error")
    _one_line_error(run_cli("-m", "corpus.remote", "push", str(built / "data")), r"push needs a URL")


def test_a_directory_as_input_says_so(built):
    _one_line_error(_build(built / "c.yaml", "--input", str(built)), rf"{built}: is a directory; give the input files")


def test_a_truncated_gzip_input_names_the_file(built, tmp_path):
    data = gzip.compress(b"".join(b'{"text": "line %d of a long enough document"}\n' % i for i in range(2000)))
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(data[: len(data) // 2])
    _one_line_error(_build(built / "c.yaml", "--input", str(bad)), r"cut\.jsonl\.gz: truncated or corrupt gzip data")


def test_text_null_is_an_empty_document_and_a_number_an_error(built, tmp_path):
    numbers = write_jsonl(tmp_path / "numbers.jsonl", [{"text": "fine, a string"}, {"text": 42}])
    _one_line_error(
        _build(built / "c.yaml", "--input", str(numbers)), r"numbers\.jsonl:2: 'text' must be a string or null"
    )
    nulls = write_jsonl(tmp_path / "nulls.jsonl", [{"text": None, "url": "null-text"}])
    assert _build(built / "c.yaml", "--input", str(nulls)).returncode == 0
    assert query(built / "data", "SELECT step, reason FROM rejects WHERE url = 'null-text'") == [
        ("ingest", "empty_text")
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            "length_filter: {min_chars: fifty}",
            r"steps\[0\]: step 'length_filter': parameter 'min_chars' must be an integer, got 'fifty'",
        ),
        ("minhash_dedup: {verify: 'yes'}", r"parameter 'verify' must be true or false, got 'yes'"),
        ("curriculum: {weights: {length: heavy}}", r"parameter 'weights' must be a number at key 'length'"),
        ("quality: {keep_languages: en}", r"parameter 'keep_languages' must be a list or null, got 'en'"),
        ("split: {validation_ratio: 0}", None),  # an int where a float is meant is fine
    ],
)
def test_step_parameters_are_type_checked_by_key(tmp_path, params, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"steps:\n  - {params}\n")
    if message is None:
        load_config(path)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    _one_line_error(run_cli("-m", "pipelines.build", "--config", str(path)), message.split(": step ")[-1])


def test_every_stage_records_cpu_seconds_and_peak_rss(built):
    first = "(SELECT run_id FROM runs WHERE kind = 'build' ORDER BY started_at LIMIT 1)"
    rows = query(
        built / "data",
        f"SELECT step, cpu_seconds, peak_rss_mb, seconds FROM step_stats WHERE run_id = {first} ORDER BY step_index",
    )
    assert [r[0] for r in rows] == ["ingest", "normalize", "length_filter"]
    for step, cpu, peak, seconds in rows:
        assert 0 < cpu < seconds + 60, (step, cpu, seconds)  # a worker's start-up may exceed its task time
        assert 30 < peak < 8000, (step, peak)  # a Python process with Polars loaded: tens of MB at least
