"""`python -m training.ablate` end to end: two recipes, tiny random-init proxies, a SIGKILL in the
middle, a resume that does not retrain the finished recipe, and the table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SAMPLE, run_cli, write_jsonl

from training.ablate import AblationError, load_ablation

PROXY = {
    "from_scratch": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 128,
    },
    "lora": None,
    "tokens": 1536,
    "seq_len": 64,
    "micro_batch": 4,
    "lr": 3.0e-3,
    "warmup_steps": 1,
    "seeds": [1],
    "train": {"zero_stage": 0},
}


def _config(tmp_path: Path) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "workers": 1,
                "sources": [str(SAMPLE)],
                "steps": ["normalize", "exact_dedup", {"split": {"validation_ratio": 0.1}}],
            }
        )
    )
    held = write_jsonl(
        tmp_path / "held.jsonl",
        [
            {"text": "The court dismissed the appeal and ordered costs.", "lang": "en"},
            {"text": "本院认为，合同有效。", "lang": "zh"},
        ],
    )
    mcq = write_jsonl(
        tmp_path / "mcq.jsonl",
        [{"question": "Which court?", "options": {"A": "the High Court", "B": "none"}, "answer": "A"}],
    )
    cfg = {
        "output_dir": str(tmp_path / "abl"),
        "base": str(base),
        "recipes": {"raw": {"steps": ["normalize", {"split": {"validation_ratio": 0.1}}]}, "dedup": {}},
        "proxy": PROXY,
        "eval": [
            {"kind": "ppl", "path": str(held), "name": "held", "group_by": ["lang"]},
            {"kind": "mcq", "path": str(mcq), "name": "mc"},
            {"kind": "mcq", "path": str(tmp_path / "absent.jsonl"), "optional": True},
        ],
    }
    path = tmp_path / "ablate.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.slow
def test_two_recipe_ablation_resumes_after_sigkill_without_retraining(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "abl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "training.ablate", "--config", str(config)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first = out / "recipes" / "raw" / "seed1"
    try:
        deadline = time.monotonic() + 900
        while not (first / "eval.json").exists():  # the first recipe is trained and scored
            assert proc.poll() is None, "the ablation stopped before its first proxy was scored"
            assert time.monotonic() < deadline, "the first proxy did not finish in time"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the ablation and its training child, mid second recipe
        proc.wait()
    stamp = (first / "summary.json").stat().st_mtime_ns
    log_size = (first / "train.log").stat().st_size

    result = run_cli("-m", "training.ablate", "--config", str(config), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "[raw seed 1] train: done earlier" in result.stdout
    assert (first / "summary.json").stat().st_mtime_ns == stamp and (first / "train.log").stat().st_size == log_size
    report = json.loads((out / "ablation.json").read_text())
    rows = {r["recipe"]: r for r in report["recipes"]}
    assert list(rows) == ["raw", "dedup"]
    assert rows["dedup"]["docs_kept"] < rows["raw"]["docs_kept"]  # exact duplicates removed
    assert rows["dedup"]["tokens_kept"] < rows["raw"]["tokens_kept"]
    reused = {s["stage"] for s in rows["dedup"]["stages"] if s["reused"]}
    assert {"ingest", "normalize"} <= reused  # the shared prefix came from the raw recipe's stage cache
    for r in rows.values():
        assert set(r["metrics"]) >= {"ppl held", "bpb held", "acc_norm mc", "train loss (last)"}
        assert r["metrics"]["ppl held"]["n"] == 1 and r["metrics"]["ppl held"]["mean"] > 1
    assert report["config"]["tokens_per_proxy"] == 1536 and report["config"]["skipped_eval"]
    table = result.stdout
    assert "| recipe" in table and "ppl held" in table and "± " in table and "| dedup" in table
    html = (out / "ablation.html").read_text()
    assert "<svg" in html and "dedup" in html
    # a third run finds everything done: nothing is built, trained or scored again
    again = run_cli("-m", "training.ablate", "--config", str(config), timeout=300)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 4


def test_config_errors_name_the_key(tmp_path):
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["recipes"]["bad"] = {"drop": ["quality"]}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    from training.ablate import recipe_build_config

    cfg = load_ablation(config)
    with pytest.raises(AblationError, match=r"recipe bad: drop: no step 'quality'"):
        recipe_build_config(cfg.recipes[-1], cfg, tmp_path / "r")
    with pytest.raises(AblationError, match=r"proxy.tokens must be a positive integer"):
        load_ablation(config, ["proxy.tokens=0"])
    with pytest.raises(AblationError, match=r"unknown key\(s\) \['epochs'\]"):
        load_ablation(config, ["proxy.epochs=3"])
    raw["recipes"] = {"nosplit": {"steps": ["normalize"]}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_ablation(config)
    with pytest.raises(AblationError, match="no 'split' step"):
        recipe_build_config(cfg.recipes[0], cfg, tmp_path / "r")
    missing = run_cli("-m", "training.ablate", "--config", str(tmp_path / "nope.yaml"))
    assert (
        missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: config file not found"
    )
