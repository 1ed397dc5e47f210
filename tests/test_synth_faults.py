"""The synthesis job against a real local HTTP endpoint that misbehaves on a script."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from pipelines.synth.config import load_config
from pipelines.synth.job import run_job
from tests.synth_support import REPO, FaultServer, expected_answer, make_raw_corpus, write_synth_config

SECRET = "sk-test-SECRET-4242"
DOCS = {
    "d1": "FAULTS=429",  # Retry-After: 1, then fine
    "d2": "FAULTS=500,500",
    "d3": "FAULTS=slow",  # slower than the 1 s request timeout
    "d4": "FAULTS=garbage",  # not JSON: retried as a new request with seed + 1
    "d5": "FAULTS=schema",  # JSON missing a required key
    "d6": "ALWAYS=garbage",  # rejected after 1 + invalid_retries attempts
    "d7": "ALWAYS=500",  # rejected after 1 + max_retries requests
    "d8": "",
    "d9": "",
}
GOOD = ["d1", "d2", "d3", "d4", "d5", "d8", "d9"]


def _rows(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as c:
        return c.execute(
            "SELECT doc_id, source, text, lang, created_at, meta FROM raw_documents "
            "WHERE source LIKE 'synth:%' ORDER BY doc_id"
        ).fetchall()


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "corpus"
    make_raw_corpus(
        root,
        [
            {"text": f"DOC={tag} The tenant shall pay rent monthly. {script}", "lang": "en", "url": f"u/{tag}"}
            for tag, script in DOCS.items()
        ],
    )
    monkeypatch.setenv("FAULT_KEY", SECRET)
    return root


def _config(tmp_path: Path, root: Path, server: FaultServer, concurrency: int) -> Path:
    return write_synth_config(
        tmp_path / "synth.yaml",
        root=str(root),
        endpoint={"base_url": server.base_url, "model": "m", "api_key_env": "FAULT_KEY", "timeout_s": 1.0},
        limits={"concurrency": concurrency, "max_retries": 2, "invalid_retries": 2, "backoff_s": 0.01},
        seeds={"table": "raw_documents"},
        generation={"max_tokens": 64},
        prices={"prompt": 1.0, "completion": 2.0},
    )


def test_faults_are_retried_or_rejected_and_rows_are_exact(job: Path, tmp_path: Path) -> None:
    with FaultServer(SECRET) as server:
        cfg = load_config(_config(tmp_path, job, server, concurrency=4))
        result = run_job(cfg, progress=False)
        calls = list(server.calls)
        assert server.bad_auth == 0  # the key from the environment was sent

        # exactly the documents that eventually got a valid answer, with the server's answers
        rows = _rows(job)
        assert result.rows == len(rows) == len(GOOD)
        got = {json.loads(r[5])["seed_url"].split("/")[1]: json.loads(r[5]) for r in rows}
        assert sorted(got) == GOOD
        for tag, meta in got.items():
            want = expected_answer(tag)
            assert (meta["prompt"], meta["response"]) == (want["question"], want["answer"])
            assert meta["prompt_id"] == "qa.en.v1" and meta["model"] == "m" and meta["task"] == "qa"
        assert got["d4"]["attempts"] == 2 and got["d4"]["params"]["seed"] == 1  # the retry used seed + 1
        assert got["d4"]["params"]["temperature"] == 0.7 and got["d1"]["params"]["temperature"] == 0.0  # sampled
        assert got["d5"]["attempts"] == 2 and got["d1"]["attempts"] == 1
        assert {r[1] for r in rows} == {"synth:qa"}

        # every call accounted for: 429/500/timeout retried, invalid answers retried then rejected
        per_doc = Counter(tag for _, tag, _ in calls)
        assert per_doc == {"d1": 2, "d2": 3, "d3": 2, "d4": 2, "d5": 2, "d6": 3, "d7": 3, "d8": 1, "d9": 1}
        assert result.stats.requests == len(calls) == 19
        assert result.stats.transport_retries == 1 + 2 + 1 + 2
        t429, t_next = [t for t, tag, _ in calls if tag == "d1"]
        assert t_next - t429 >= 0.95  # Retry-After: 1 was honoured (backoff alone would be <= 10 ms)
        assert result.rejects == {"invalid_json": 1, "request_failed": 1}

        with duckdb.connect(str(job / "catalog.duckdb"), read_only=True) as c:
            rejects = c.execute(
                "SELECT reason, attempts, detail, response FROM synth_rejects ORDER BY reason"
            ).fetchall()
            usage = c.execute(
                "SELECT requests, cache_hits, prompt_tokens, completion_tokens, cost_usd FROM synth_usage"
            ).fetchone()
            run = c.execute("SELECT kind, status, docs_in, docs_out, docs_rejected FROM runs").fetchone()
        # attempts = every try of the prompt: 1 + invalid_retries generations, 1 + max_retries requests
        assert [(r[0], r[1]) for r in rejects] == [("invalid_json", 3), ("request_failed", 3)]
        assert "after 3 requests" in rejects[1][2]
        assert "HTTP 500" in rejects[1][2] and rejects[0][3].startswith("Sure!")
        responses = 19 - 7  # requests that got a 200: not the 429, two 500s, the timeout, d7's three 500s
        assert usage == (19, 0, 50 * responses, 20 * responses, (50 * responses * 1.0 + 20 * responses * 2.0) / 1e6)
        assert run == ("synth", "succeeded", 9, 7, 2)

        # a rerun is served from the cache: only the request that never got a response goes out again
        before = len(server.calls)
        again = run_job(cfg, progress=False)
        assert len(server.calls) - before == 3 and again.stats.cache_hits == 12  # every response received, valid or not
        assert _rows(job) == rows

    # the key never reaches the disk (config, catalog, cache, shards)
    for path in job.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_bad_key_stops_the_job_with_a_clear_error(job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.synth.client import SynthError

    with FaultServer("another-key") as server:
        cfg = load_config(_config(tmp_path, job, server, concurrency=2))
        with pytest.raises(SynthError, match=r"HTTP 401.*FAULT_KEY") as err:
            run_job(cfg, progress=False)
    assert SECRET not in str(err.value)
    with duckdb.connect(str(job / "catalog.duckdb"), read_only=True) as c:
        assert c.execute("SELECT status FROM runs WHERE kind = 'synth'").fetchone() == ("failed",)


def test_a_killed_job_resumes_without_repeating_answered_requests(tmp_path: Path, monkeypatch) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    root = tmp_path / "corpus"
    make_raw_corpus(root, [{"text": f"DOC=k{i} The lessee pays rent.", "lang": "en"} for i in range(8)])
    monkeypatch.setenv("FAULT_KEY", SECRET)
    with FaultServer(SECRET, delay_s=0.4) as server:
        config = write_synth_config(
            tmp_path / "synth.yaml",
            root=str(root),
            endpoint={"base_url": server.base_url, "model": "m", "api_key_env": "FAULT_KEY", "timeout_s": 10.0},
            limits={"concurrency": 1},
            seeds={"table": "raw_documents"},
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.synthesize", "--config", str(config), "--quiet"], env=env
        )
        deadline = time.monotonic() + 120
        while len(server.calls) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(root / "state" / "synth" / "cache.sqlite") as db:
            cached = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        assert 3 <= cached < 8  # killed mid-way, with answers already stored
        sent_before = len(server.calls)

        result = run_job(load_config(config), progress=False)
        assert result.stats.cache_hits == cached and result.stats.requests == 8 - cached
        assert len(server.calls) - sent_before == 8 - cached
        assert result.rows == 8 and not result.rejects
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as c:
        statuses = c.execute("SELECT status FROM runs WHERE kind = 'synth' ORDER BY started_at").fetchall()
    assert statuses == [("interrupted",), ("succeeded",)]  # the rerun marks the killed run


def test_a_job_whose_every_request_fails_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (#16.3): all requests failing used to exit 0 with the run 'succeeded' and no warning."""
    import os
    import subprocess
    import sys

    root = tmp_path / "corpus"
    make_raw_corpus(root, [{"text": f"DOC=z{i} The lessee pays rent. ALWAYS=500", "lang": "en"} for i in range(2)])
    monkeypatch.setenv("FAULT_KEY", SECRET)
    earlier = root / "raw" / "synth" / "t" / "part-00000.parquet"  # an earlier run's output must survive
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"earlier output")
    with FaultServer(SECRET) as server:
        config = _config(tmp_path, root, server, concurrency=2)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.synthesize", "--config", str(config), "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert "error: no rows written: all 2 prompts were rejected (request_failed: 2)" in err
    assert err.count("warning: prompt ") == 2 * 3  # each retry as it happens, then the give-up
    assert "HTTP 500: boom; retry 1/2 in" in err and "giving up after 3 requests" in err
    assert earlier.read_bytes() == b"earlier output"
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as c:
        run = c.execute("SELECT status, error FROM runs WHERE kind = 'synth'").fetchone()
        rejects = c.execute("SELECT reason, attempts FROM synth_rejects").fetchall()
        usage = c.execute("SELECT requests, rows_written, rejected FROM synth_usage").fetchone()
    assert run[0] == "failed" and "request_failed: 2" in run[1]
    assert rejects == [("request_failed", 3), ("request_failed", 3)]
    assert usage == (6, 0, 2)


def test_the_default_timeout_suits_the_cpu_model() -> None:
    """Regression (#16.3): the old fixed 120 s timed out every request of the shipped job on CPU."""
    from pipelines.synth.config import EndpointConfig

    cfg = load_config(REPO / "configs" / "synth.yaml")
    assert cfg.endpoint.timeout_s is None
    assert cfg.endpoint.request_timeout_s(cfg.generation.max_tokens) >= 2 * 92  # a prompt took 92 s on CPU
    assert EndpointConfig(timeout_s=5.0).request_timeout_s(160) == 5.0
