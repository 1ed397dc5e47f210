"""`python -m training.ablate` end to end: two recipes, tiny random-init proxies, a SIGKILL in the
middle, a resume that does not retrain the finished recipe, the table; bad inputs, one line each.

Kept fast (it took 9 minutes in CI): one-layer proxies of two steps, builds without NER, the run
that is killed is the only ablation started as its own process (the resume and the no-op rerun go
through `main` in this process, whose torch is already loaded; proxies still train in their own
`training.run` process, as always)."""

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
from conftest import REPO, SAMPLE, write_jsonl

from training.ablate import AblationError, load_ablation, main, recipe_build_config

PROXY = {
    "from_scratch": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
    },
    "lora": None,
    "tokens": 512,  # 2 steps of 4 x 64 tokens
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


def test_two_recipe_ablation_resumes_after_sigkill_without_retraining(tmp_path, capsys):
    config = _config(tmp_path)
    out = tmp_path / "abl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "training.ablate", "--config", str(config)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first = out / "recipes" / "raw" / "seed1"
    try:
        deadline = time.monotonic() + 600
        while not (first / "eval.json").exists():  # the first recipe is trained and scored
            assert proc.poll() is None, "the ablation stopped before its first proxy was scored"
            assert time.monotonic() < deadline, "the first proxy did not finish in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the ablation and its training child, in the second recipe
        proc.wait()
    stamp = (first / "summary.json").stat().st_mtime_ns
    log_size = (first / "train.log").stat().st_size
    scored = (first / "eval.json").stat().st_mtime_ns

    assert main(["--config", str(config)]) == 0  # the resume
    printed = capsys.readouterr().out
    assert "[raw seed 1] train: done earlier" in printed and "[dedup seed 1] train: last loss" in printed
    assert (first / "summary.json").stat().st_mtime_ns == stamp and (first / "train.log").stat().st_size == log_size
    assert (first / "eval.json").stat().st_mtime_ns == scored  # not rescored either
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
        run = json.loads((out / "recipes" / r["recipe"] / "seed1" / "summary.json").read_text())
        assert run["steps"] == 2 and r["metrics"]["train loss (last)"]["mean"] == run["last_loss"]
    assert report["config"]["tokens_per_proxy"] == 512 and report["config"]["skipped_eval"]
    table = printed[printed.index("| recipe") :]
    header, rule, *body = table.splitlines()[:4]
    assert "ppl held" in header and "acc_norm mc" in header and set(rule) <= {"|", "-"}
    assert [line.split("|")[1].strip() for line in body] == ["raw", "dedup"] and all("± " in b for b in body)
    html = (out / "ablation.html").read_text()
    assert "<svg" in html and "dedup" in html
    # a third run finds everything done: nothing is built, trained or scored again
    assert main(["--config", str(config)]) == 0
    again = capsys.readouterr().out
    assert again.count("done earlier") == 4 and "| dedup" in again
    assert (first / "eval.json").stat().st_mtime_ns == scored


def test_bad_inputs_get_one_clear_error(tmp_path, capsys):
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["recipes"]["bad"] = {"drop": ["quality"]}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_ablation(config)
    with pytest.raises(AblationError, match=r"recipe bad: drop: no step 'quality'"):
        recipe_build_config(cfg.recipes[-1], cfg, tmp_path / "r")
    with pytest.raises(AblationError, match=r"proxy.tokens must be a positive integer"):
        load_ablation(config, ["proxy.tokens=0"])
    with pytest.raises(AblationError, match=r"unknown key\(s\) \['epochs'\]"):
        load_ablation(config, ["proxy.epochs=3"])
    with pytest.raises(AblationError, match=r"eval\[0\]: 'kind' must be one of ppl, mcq, qa, got 'perplexity'"):
        load_ablation(config, ["eval=[{kind: perplexity, path: x.jsonl}]"])
    raw["recipes"] = {"nosplit": {"steps": ["normalize"]}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_ablation(config)
    with pytest.raises(AblationError, match="no 'split' step"):
        recipe_build_config(cfg.recipes[0], cfg, tmp_path / "r")

    def cli(*args: str) -> list[str]:
        assert main(list(args)) == 2
        return capsys.readouterr().err.strip().splitlines()

    assert cli("--config", str(tmp_path / "nope.yaml")) == [f"error: {tmp_path / 'nope.yaml'}: config file not found"]
    # a missing (not optional) evaluation file and an MCQ row without its answer stop it before any build
    config = _config(tmp_path)
    missing = tmp_path / "gone.jsonl"
    assert cli("--config", str(config), "--set", f"eval=[{{kind: ppl, path: {missing}}}]") == [
        f"error: {missing}: evaluation file not found"
    ]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Which?", "options": ["a", "b"]}])
    assert cli("--config", str(config), "--set", f"eval=[{{kind: mcq, path: {bad}}}]") == [
        f"error: {bad}:1: MCQ row has no 'answer'"
    ]
    assert not (tmp_path / "abl" / "recipes").exists()
    # a proxy model directory that is not a model, a proxy.train key training.run does not know
    no_model = ["--set", "proxy.from_scratch=null", "--set", f"proxy.model={tmp_path}"]
    assert cli("--config", str(config), *no_model) == [
        f"error: proxy: model={str(tmp_path)!r} is not a Hugging Face model directory (no config.json)"
    ]
    assert cli("--config", str(config), "--set", "proxy.train={zero_stage: 0, epochs: 2}") == [
        "error: proxy.train: unknown training.run key(s) ['epochs']"
    ]
    assert not (tmp_path / "abl" / "recipes").exists()
