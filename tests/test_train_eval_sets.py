"""``eval_sets:`` in the training config: `training.run` scores them with `training.eval` at
every eval (the start, eval_every, the end) into metrics.jsonl, TensorBoard, the report and the
summary; a bad entry stops the run with one line before the model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, write_jsonl

from training.config import TrainConfig, TrainingError
from training.run import main

HELD = [
    {"text": "The court dismissed the appeal and ordered the appellant to pay the costs.", "lang": "en"},
    {"text": "本院认为，被告人的行为已构成盗窃罪，依法应予惩处。", "lang": "zh"},
]
MCQ = [
    {"question": "Which court heard the appeal?", "options": {"A": "the High Court", "B": "a farm"}, "answer": "A"},
    {"question": "合同是否有效？", "options": ["有效", "无效", "部分无效"], "answer": 1},
]


SMALL = {  # one layer: the vocabulary (SmolLM2's tokenizer) is most of the model anyway
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 128,
}


def _sets(tmp_path: Path) -> list[dict]:
    held = write_jsonl(tmp_path / "held.jsonl", HELD)
    mcq = write_jsonl(tmp_path / "exam.jsonl", MCQ)
    return [
        {"kind": "ppl", "path": str(held), "name": "held", "group_by": ["lang"]},
        {"kind": "mcq", "path": str(mcq), "name": "exam"},
        {"kind": "mcq", "path": str(tmp_path / "absent.jsonl"), "optional": True},
    ]


def test_a_run_with_eval_sets_logs_them_at_every_eval_and_the_end(train_corpus, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "root": str(train_corpus),
                "output_dir": str(out),
                "from_scratch": SMALL,
                "lora": None,
                "seq_len": 64,
                "micro_batch": 2,
                "lr": 3.0e-3,
                "warmup_steps": 1,
                "max_steps": 3,
                "eval_every": 2,
                "eval_batches": 0,
                "zero_stage": 0,
                "save_every": 100,
                "eval_sets": _sets(tmp_path),
            }
        )
    )
    result = run_cli("-m", "training.run", "--config", str(config), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval set skipped: absent" in result.stderr and "overlap guard: held: 0/2 items" in result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    got = [(r["step"], r["set"]) for r in rows if r["kind"] == "eval_set"]
    # the start, every eval_every steps and the last step (3 is not a multiple of 2)
    assert got == [(s, n) for s in (0, 2, 3) for n in ("held", "exam")]
    held = {r["step"]: r for r in rows if r.get("set") == "held"}
    exam = {r["step"]: r for r in rows if r.get("set") == "exam"}
    assert all(r["perplexity"] > 1 and r["bits_per_byte"] > 0 for r in held.values())
    assert held[3]["perplexity"] < held[0]["perplexity"]  # the model being trained is the one scored
    assert all(set(r) >= {"acc", "acc_norm"} and r["acc_norm"] in (0.0, 0.5, 1.0) for r in exam.values())
    # the number logged at the end is what training.eval gives the exported model on the same set
    from training.eval import evaluate, load_model
    from training.eval_sets import SetSpec, load_set

    ppl_set = load_set(SetSpec.from_config(_sets(tmp_path)[0], "held"))
    again = evaluate(load_model(str(out), device="cpu"), [ppl_set])
    assert again["perplexity"]["held"] == pytest.approx(held[3]["perplexity"], rel=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_sets_end"]["held"]["perplexity"] == pytest.approx(held[3]["perplexity"])
    assert summary["eval_sets_start"]["exam"]["acc_norm"] == exam[0]["acc_norm"]
    report = (out / "training_report.html").read_text()
    assert "Evaluation sets" in report and "held" in report and "acc_norm" in report
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/held/perplexity")] == [0, 2, 3]
    assert {"eval/exam/acc_norm", "train/loss"} <= set(events.Tags()["scalars"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "mc", "path": "x.jsonl"}, "eval_sets[0]: 'kind' must be one of ppl, mcq, qa, got 'mc'"),
        ({"kind": "ppl"}, "eval_sets[0]: 'path' must be a file path or catalog:<where>"),
        ({"kind": "ppl", "path": "nowhere.jsonl"}, "eval_sets[0]: nowhere.jsonl: evaluation file not found"),
        ({"kind": "ppl", "path": "x.jsonl", "limt": 5}, "eval_sets[0]: unknown key(s) ['limt']"),
        ({"kind": "ppl", "path": "x.jsonl", "limit": 0}, "eval_sets[0]: 'limit' must be a positive integer, got 0"),
        ("held.jsonl", "eval_sets[0]: expected a mapping with 'kind' and 'path'"),
    ],
)
def test_a_bad_entry_names_the_entry_and_what_is_wrong(entry, message):
    with pytest.raises(TrainingError) as err:
        TrainConfig.load(None, [f"eval_sets=[{json.dumps(entry)}]"])
    assert str(err.value).startswith(f"--set: {message}"), err.value
    assert "\n" not in str(err.value)


def test_config_checks_names_and_a_bad_row_stops_the_run_before_the_model(train_corpus, tmp_path, capsys):
    held = write_jsonl(tmp_path / "held.jsonl", HELD)
    twice = [{"kind": "ppl", "path": str(held)}, {"kind": "ppl", "path": str(held)}]
    with pytest.raises(TrainingError, match=r"eval_sets\[1\]: the name 'held' is used twice"):
        TrainConfig.load(None, [f"eval_sets={json.dumps(twice)}"])
    with pytest.raises(TrainingError, match=r"eval_sets=\[\] is not allowed; expected a non-empty list"):
        TrainConfig.load(None, ["eval_sets=[]"])
    bad = write_jsonl(tmp_path / "exam.jsonl", [MCQ[0], {"question": "q?", "options": ["a", "b"]}])
    entry = json.dumps([{"kind": "mcq", "path": str(bad)}])
    sets = ["--set", f"root={train_corpus}", "--set", f"output_dir={tmp_path / 'run'}", "--set", f"eval_sets={entry}"]
    # in process: the sets are read right after the shard selection, so nothing heavier has started
    assert main(["--config", str(tmp_path / "none.yaml"), *sets]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: eval_sets: {bad}:2: MCQ row has no 'answer'"
    assert not any(line.startswith(("model:", "engine:")) for line in err), err
