"""`training.eval` against hand computation on a tiny random-init Llama, answer metrics on fixed
strings, the overlap guard, and one clear error per bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, tiny_llama, write_jsonl

from corpus.html import fmt_num
from training.eval import (
    EvalError,
    EvalOptions,
    LoadedModel,
    Scorer,
    continuation_request,
    evaluate,
    load_model,
    mcq_prompt,
    perplexity_requests,
)
from training.eval_sets import EvalSetError, SetSpec, load_set
from training.qa_metrics import char_tokens, exact_match, lcs_length, rouge_l, score_answer, token_f1, word_tokens

TEXTS = [
    "The court dismissed the appeal and ordered costs.",
    "被告人颜某在本市洪山区马湖新村足球场马路边捡拾到被害人谢某的手机一部。",
    "Short.",
    "A much longer document about contracts. " * 12,
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama with the bundled model's tokenizer: a real HF model directory."""
    from transformers import AutoTokenizer

    from common.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    model = tiny_llama(vocab_size=len(tok), max_position_embeddings=256)
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> LoadedModel:
    return load_model(str(tiny_model_dir), device="cpu")


def _token_logprobs(model, ids: list[int]) -> np.ndarray:
    """log p(ids[t] | ids[:t]) for t >= 1, one unbatched, unpadded forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return lp.double().numpy()


def test_perplexity_is_exp_of_the_mean_nll_and_bpb_the_nll_per_byte(lm, tmp_path):
    path = write_jsonl(
        tmp_path / "held.jsonl", [{"text": t, "source": "a" if k % 2 else "b"} for k, t in enumerate(TEXTS)]
    )
    s = load_set(SetSpec("ppl", str(path), "held"))
    # small batches: several batches, left padding of rows of different lengths
    res = evaluate(lm, [s], EvalOptions(batch_tokens=64, progress=False))
    nll, tokens = [], []
    for t in TEXTS:
        ids = [lm.tokenizer.eos_token_id, *lm.tokenizer(t, add_special_tokens=False)["input_ids"]]
        nll.append(-_token_logprobs(lm.model, ids).sum())
        tokens.append(len(ids) - 1)
    assert res["perplexity"]["held"] == pytest.approx(math.exp(sum(nll) / sum(tokens)), rel=1e-5)
    nbytes = sum(len(t.encode()) for t in TEXTS)
    assert res["bits_per_byte"]["held"] == pytest.approx(sum(nll) / math.log(2) / nbytes, rel=1e-5)
    b = res["groups"]["held"]["source"]["b"]  # texts 0 and 2
    assert b["perplexity"] == pytest.approx(math.exp((nll[0] + nll[2]) / (tokens[0] + tokens[2])), rel=1e-5)
    assert b["n"] == 2 and res["sets"]["held"]["tokens"] == sum(tokens)


def test_perplexity_windows_score_every_token_once_with_left_context():
    ids = list(range(100, 130))
    reqs = perplexity_requests(ids, 1, window=8, stride=5)
    assert sum(r.scored for r in reqs) == len(ids)
    scored = [tok for r in reqs for tok in r.ids[len(r.ids) - r.scored :]]
    assert scored == ids
    assert all(len(r.ids) <= 8 and r.scored < len(r.ids) for r in reqs)
    assert reqs[1].ids[0] == ids[4]  # the second window keeps 3 tokens of context before its new ones


def test_windowed_scoring_equals_hand_computed_windows(lm):
    scorer = Scorer(lm.model, lm.tokenizer, lm.device, EvalOptions(batch_tokens=40, progress=False))
    ids = lm.tokenizer(TEXTS[3], add_special_tokens=False)["input_ids"]
    reqs = perplexity_requests(ids, lm.tokenizer.eos_token_id, window=16, stride=12)
    got = scorer.logprobs(reqs)
    want = [_token_logprobs(lm.model, r.ids)[-r.scored :].sum() for r in reqs]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the path for ZeRO-3 (suffix logits from the model's own forward) gives the same numbers
    inside = Scorer(lm.model, lm.tokenizer, lm.device, EvalOptions(batch_tokens=40, progress=False), head_outside=False)
    np.testing.assert_allclose(inside.logprobs(reqs), want, rtol=1e-5)


def test_mcq_picks_the_option_with_the_highest_length_normalised_loglik(lm, tmp_path):
    rows = [
        {
            "question": "Which court hears appeals?",
            "options": {"A": "the Court of Appeal", "B": "no", "C": "a tribunal of first instance", "D": "x"},
            "answer": "A",
        },
        {
            "question": "合同无效的后果是什么？",
            "options": ["返还财产", "赔偿损失", "继续履行合同义务", "无"],
            "answer": 2,
        },
        {"question": "What is 2 + 2?", "options": {"A": "four", "B": "five"}, "answer": "B"},
    ]
    path = write_jsonl(tmp_path / "mcq.jsonl", rows)
    s = load_set(SetSpec("mcq", str(path), "m"))
    res = evaluate(lm, [s], EvalOptions(batch_tokens=48, progress=False))["mcq"]["m"]
    acc = acc_norm = 0
    for item in s.items:
        context, conts = mcq_prompt(item, "cloze")
        lls = []
        for cont in conts:
            req = continuation_request(lm.tokenizer, context, cont, None)
            lls.append(_token_logprobs(lm.model, req.ids)[-req.scored :].sum())
        lens = [len(c.strip()) for c in conts]
        acc += int(np.argmax(lls)) == item["answer"]
        acc_norm += int(np.argmax(np.array(lls) / lens)) == item["answer"]
    assert res["n"] == 3
    assert res["acc"] == pytest.approx(acc / 3) and res["acc_norm"] == pytest.approx(acc_norm / 3)
    assert res["accuracy"] == res["acc_norm"]


def test_continuation_tokens_are_those_past_the_context():
    class Chars:  # a character tokenizer: every character one token
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    req = continuation_request(Chars(), "Q: x\nA:", " yes", None)
    assert req.scored == 4 and req.ids[-4:] == [ord(c) for c in " yes"]
    cut = continuation_request(Chars(), "long context " * 10, " ok", 8)
    assert len(cut.ids) == 8 and cut.scored == 3


def test_answer_metrics_on_fixed_strings():
    assert exact_match("The Court of Appeal.", "court of appeal") == 1.0
    assert exact_match("合同 无效。", "合同无效") == 1.0
    assert token_f1("a b c d".split(), "a b e".split()) == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert token_f1([], []) == 1.0 and token_f1(["a"], []) == 0.0
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    assert rouge_l(list("abcd"), list("acdx")) == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    s = score_answer("the cat sat on the mat", "the cat is on the mat")
    # articles dropped: pred [cat sat on mat], ref [cat is on mat]: 3 common, LCS 3
    assert s.f1 == pytest.approx(0.75) and s.rouge_l == pytest.approx(0.75) and s.em == 0.0
    assert s.f1_char == s.f1  # English: characters view keeps words whole


def test_chinese_is_scored_on_jieba_words_and_on_characters():
    assert word_tokens("被告人在本市捡拾到手机") == ["被告人", "在", "本市", "捡拾", "到", "手机"]
    assert char_tokens("合同无效, 2024年") == ["合", "同", "无", "效", "2024", "年"]
    s = score_answer("本市被告人", "被告人在本市")
    # words: pred [本市, 被告人], ref [被告人, 在, 本市]: F1 = 2*(1*2/3)/(1+2/3) = 0.8; LCS 1 -> 0.4
    assert s.f1 == pytest.approx(0.8) and s.rouge_l == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # characters: 5 of 5 pred chars in the 6 ref chars; LCS 3 (被告人)
    assert s.f1_char == pytest.approx(2 * 1 * (5 / 6) / (1 + 5 / 6))
    assert s.rouge_l_char == pytest.approx(2 * 0.6 * 0.5 / 1.1)


def test_qa_generation_is_scored_and_saved(lm, tmp_path):
    rows = [
        {"prompt": "中国的首都是哪里？", "answer": "北京"},
        {"meta": json.dumps({"prompt": "Name the court.", "response": "The High Court"}), "text": "x"},
    ]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    s = load_set(SetSpec("qa", str(path), "q"))
    res = evaluate(lm, [s], EvalOptions(max_new_tokens=6, gen_batch=2, progress=False))
    q = res["qa"]["q"]
    assert q["n"] == 2 and set(q) >= {"em", "f1", "rouge_l", "f1_char", "rouge_l_char"}
    samples = res["samples"]["q"]
    assert [x["answer"] for x in samples] == ["北京", "The High Court"] and all(
        isinstance(x["generated"], str) for x in samples
    )
    for x in samples:  # the saved scores are the metrics of the saved generation
        assert x["f1"] == score_answer(x["generated"], x["answer"]).f1


def test_overlap_guard_flags_items_that_are_in_the_train_split(lm, tmp_path):
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps import Normalize, Split
    from training.eval import check_overlap

    leaked = (
        "公诉机关指控：2016年3月28日20时许，被告人颜某在本市洪山区马湖新村足球场马路边"
        "捡拾到被害人谢某的手机一部，并分多次盗走人民币3723元。"
    )
    clean = "本院认为，原告与被告签订的房屋租赁合同系双方真实意思表示，不违反法律、行政法规的强制性规定，应属有效。"
    english = (
        "The tribunal found that the employer had failed to follow a fair procedure before the dismissal took effect."
    )
    docs = [{"text": f"第{k}号文书。" + leaked + "此致。"} for k in range(30)] + [
        {"text": english + f" Case {k}."} for k in range(30)
    ]
    src = write_jsonl(tmp_path / "train.jsonl", docs)
    root = tmp_path / "corpus"
    run_build(
        BuildConfig(root=root, workers=1, sources=[SourceSpec(src)], steps=[Normalize(), Split(validation_ratio=0.05)]),
        progress=False,
    )
    items = write_jsonl(
        tmp_path / "ev.jsonl",
        [
            {"text": leaked, "id": "leak"},
            {"text": clean, "id": "clean"},
            {"text": english, "id": "en"},
            {"text": "短", "id": "tiny"},
        ],
    )
    s = load_set(SetSpec("ppl", str(items), "ev"))
    logged = []
    report = check_overlap([s], root, 13, 0.7, log=logged.append)["ev"]
    assert report["contaminated"] == 2 and report["contaminated_ids"] == ["leak", "en"]
    assert report["too_short"] == 1 and report["overlapping"] == 2 and "2/4 items share a 13-gram" in logged[0]
    res = evaluate(lm, [s], EvalOptions(progress=False), {"ev": report})
    assert res["contaminated"] is True and res["contamination"]["ev"]["contaminated"] == 2


def test_bad_inputs_get_one_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(EvalSetError, match=r"missing\.jsonl: evaluation file not found"):
        load_set(SetSpec("ppl", str(tmp_path / "missing.jsonl"), "x"))
    bad = write_jsonl(
        tmp_path / "mcq.jsonl",
        [
            {"question": "q", "options": {"A": "a", "B": "b"}, "answer": "A"},
            {"question": "q2", "options": {"A": "a", "B": "b"}},
        ],
    )
    with pytest.raises(EvalSetError, match=r"mcq\.jsonl:2: MCQ row has no 'answer'"):
        load_set(SetSpec("mcq", str(bad), "m"))
    wrong = write_jsonl(tmp_path / "mcq2.jsonl", [{"question": "q", "options": {"A": "a", "B": "b"}, "answer": "E"}])
    with pytest.raises(EvalSetError, match=r"mcq2\.jsonl:1: MCQ 'answer' 'E' is not one of the options"):
        load_set(SetSpec("mcq", str(wrong), "m"))
    with pytest.raises(EvalError, match="not a model directory"):
        load_model(str(tmp_path))
    # the CLI: exit status 2 and one line on stderr, before any model is loaded
    result = run_cli("-m", "training.eval", "--model", str(tmp_path), "--mcq", str(bad), "--no-overlap", cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {bad}:2: MCQ row has no 'answer'"
    result = run_cli(
        "-m", "training.eval", "--model", str(tmp_path), "--ppl", str(TEXTS_FILE(tmp_path)), "--no-overlap"
    )
    assert result.returncode == 2 and "not a model directory: no config.json" in result.stderr.strip().splitlines()[-1]


def TEXTS_FILE(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in TEXTS])


def test_cli_writes_results_and_the_comparison_page(tiny_model_dir, tmp_path):
    texts = TEXTS_FILE(tmp_path)
    out = tmp_path / "r.json"
    result = run_cli(
        "-m",
        "training.eval",
        "--model",
        str(tiny_model_dir),
        "--ppl",
        f"held={texts}",
        "--no-overlap",
        "--quiet",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data) >= {"model", "adapter", "perplexity", "bits_per_byte", "mcq", "qa", "contaminated", "samples"}
    assert data["perplexity"]["held"] > 1 and "held" in result.stdout
    other = tmp_path / "r2.json"
    other.write_text(json.dumps({**data, "perplexity": {"held": data["perplexity"]["held"] / 2}}))
    page = tmp_path / "cmp.html"
    cmp = run_cli("-m", "training.eval_report", str(out), str(other), "--out", str(page))
    assert cmp.returncode == 0, cmp.stderr
    html = page.read_text()
    assert "<svg" in html and "r2" in html and fmt_num(data["perplexity"]["held"]) in html
