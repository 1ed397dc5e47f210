"""`python -m training.eval`: perplexity, multiple choice and generated answers for any model.

    python -m training.eval --ppl ../shared/data/zh_legal_dev.jsonl --mcq ../shared/data/zh_legal_exam_dev.jsonl
    python -m training.eval --model runs/default --ppl "catalog:split = 'validation'" --out results.json
    python -m training.eval --model base_dir --adapter runs/default/adapter --qa held_out_qa.jsonl

**Model**: ``--model`` is a Hugging Face directory, a `training.run` output directory (its
merged ``export/`` is used) or ``default`` (the bundled SmolLM2-135M-Instruct); ``--adapter`` a
peft LoRA adapter put on top. CUDA (bf16) when available, else CPU (fp32); nothing else changes.

**Scoring** (`Scorer`): every request is a token sequence whose last ``k`` tokens are scored.
Requests are sorted by length and packed into batches of about ``batch_tokens`` tokens, left
padded (so the scored tokens are the last positions of every row and position ids restart
after the padding). The model runs with ``logits_to_keep=1``; a hook keeps the decoder's final
hidden states and only the scored positions go through the LM head, in chunks, so no
[tokens x vocabulary] logits tensor is ever built.

- **Perplexity** (``--ppl``): each text, preceded by the EOS token as context, is scored on
  every one of its tokens, in windows of ``max_length`` tokens (a window after the first keeps
  ``max_length - stride`` tokens of context; lm-eval-harness's rolling log-likelihood with
  overlap). Perplexity = exp(total NLL / total tokens) over the set (token-weighted), bits per
  byte = total NLL / ln 2 / total UTF-8 bytes (comparable across tokenizers), per set and per
  value of each group field (``source``, ``bucket``, ... when present).
- **Multiple choice** (``--mcq``): as lm-eval-harness does, the log-likelihood of each option
  as the continuation of the prompt; ``acc`` picks the highest sum, ``acc_norm`` the highest sum
  divided by the option's length in characters (longer options are not penalised for being
  long). ``accuracy`` is ``acc_norm``. ``--mcq-format letters`` lists the options in the
  prompt and scores the letters instead (C-Eval/CMMLU style; ``acc_norm == acc`` there).
- **Generation** (``--qa``): greedy answers (the chat template when the tokenizer has one, as
  training formats instruction rows), scored by `training.qa_metrics` on words (jieba for
  Chinese) and on characters.

**Overlap guard**: before scoring, every item's text is checked against the training split of
``--train-root`` (default ``./data`` when it has a catalog) with CJK-aware 13-grams
(`pipelines.overlap`); the counts are printed and stored under ``contamination``, and
``contaminated`` is true when any item crosses the threshold.

``--out results.json`` has the shape ``{"model", "adapter", "perplexity": {set: x},
"bits_per_byte": {set: x}, "mcq": {set: {"accuracy", "acc", "acc_norm", "n"}}, "qa": {set:
{"em", "f1", "rouge_l", "f1_char", "rouge_l_char", "n"}}, "groups", "contamination",
"contaminated", "samples"}``; `training.eval_report` puts several side by side in one page.
Exit status: 0 done, 2 a bad input (one line naming the file/record/key).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.eval_sets import EvalSet, EvalSetError, SetSpec, load_sets
from training.qa_metrics import mean_scores, score_answer

LN2 = math.log(2)


class EvalError(ValueError):
    """Evaluation cannot start; the message names what is wrong."""


@dataclass
class EvalOptions:
    batch_tokens: int = 4096  # tokens per forward pass, padding included
    max_length: int = 1024  # window of the perplexity scoring (capped by the model's positions)
    stride: int = 768  # tokens a perplexity window advances (the rest is context)
    head_chunk: int = 1024  # scored positions per LM-head call
    max_new_tokens: int = 64
    gen_batch: int = 8
    samples: int = 5  # items per set kept in the results for reading
    mcq_format: str = "cloze"  # or "letters"
    progress: bool = True


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: Any
    name: str
    adapter: str | None = None


# -- model -----------------------------------------------------------------------------------
def resolve_eval_model(path: str | None) -> Path:
    """An HF directory, a training.run output (its ``export/``) or the default model."""
    from common.models import ModelNotFoundError, resolve_model_path

    if path is None or path == "default":
        try:
            return resolve_model_path(None)
        except ModelNotFoundError as exc:
            raise EvalError(str(exc)) from None
    p = Path(path)
    if not p.exists():
        raise EvalError(f"{p}: model directory not found")
    if (p / "config.json").exists():
        return p
    if (p / "export" / "config.json").exists():
        return p / "export"
    hint = (
        " (a training.run output without export/: pass its adapter/ with --adapter)" if (p / "adapter").exists() else ""
    )
    raise EvalError(f"{p}: not a model directory: no config.json, and no export/ of a training.run output{hint}")


def load_model(path: str | None, adapter: str | None = None, device: str = "auto") -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model_dir = resolve_eval_model(path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"{model_dir}: cannot load the model or its tokenizer: {first}") from None
    if adapter:
        if not (Path(adapter) / "adapter_config.json").exists():
            raise EvalError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.to(device).eval()
    return LoadedModel(model, tokenizer, torch.device(device), str(path or "default"), adapter)


def model_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


# -- scoring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    ids: list[int]
    scored: int  # the last `scored` tokens are scored (each predicted from everything before it)


class Scorer:
    """Summed log-probabilities of the scored tokens of many requests, batched (module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, device: Any, opts: EvalOptions, *, head_outside: bool = True):
        """``head_outside=False``: take the suffix logits from the model's own forward instead of
        calling the LM head on kept hidden states (ZeRO-3 gathers the head's weight only inside
        the forward)."""
        self.model, self.tokenizer, self.device, self.opts = model, tokenizer, device, opts
        self.head_outside = head_outside
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head = base.get_output_embeddings()
        self.decoder = base.get_decoder()

    @contextmanager
    def _hidden_states(self) -> Iterator[dict[str, Any]]:
        box: dict[str, Any] = {}

        def keep(module: Any, args: Any, output: Any) -> None:
            box["h"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

        handle = self.decoder.register_forward_hook(keep)
        try:
            yield box
        finally:
            handle.remove()

    def logprobs(self, requests: Sequence[Request], desc: str = "score") -> np.ndarray:
        """Sum of log p(token | prefix) over each request's scored tokens (float64, nats)."""
        import torch

        out = np.zeros(len(requests), np.float64)
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].ids))
        batches: list[list[int]] = []
        i = 0
        while i < len(order):
            width = len(requests[order[i]].ids)
            size = max(1, self.opts.batch_tokens // max(width, 1))
            batches.append(order[i : i + size])
            i += size
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), self._hidden_states() as box:
                for batch in tqdm(batches, desc=desc, unit="batch", disable=not self.opts.progress, leave=False):
                    sums = self._batch([requests[k] for k in batch], box)
                    out[batch] = sums
        finally:
            if was_training:
                self.model.train()
        return out

    def _batch(self, reqs: list[Request], box: dict[str, Any]) -> np.ndarray:
        import torch

        width = max(len(r.ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        scored = torch.zeros((len(reqs), width), dtype=torch.bool)  # token positions whose log-prob counts
        for row, r in enumerate(reqs):
            if not 0 < r.scored < len(r.ids):
                raise ValueError(f"a request scores {r.scored} of {len(r.ids)} tokens")
            ids[row, width - len(r.ids) :] = torch.tensor(r.ids)
            mask[row, width - len(r.ids) :] = 1
            scored[row, width - r.scored :] = True
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        predicting = scored[:, 1:].to(self.device)  # position t predicts token t + 1
        targets = ids[:, 1:][predicting]
        rows = torch.arange(len(reqs), device=self.device)[:, None].expand(-1, width - 1)[predicting]
        sums = torch.zeros(len(reqs), dtype=torch.float64, device=self.device)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "use_cache": False}
        if not self.head_outside:  # the logits of the last k + 1 positions (scored tokens are a suffix)
            keep = max(r.scored for r in reqs) + 1
            logits = self.model(**inputs, logits_to_keep=keep).logits[:, :-1].float()
            lp = torch.log_softmax(logits[predicting[:, -(keep - 1) :]], dim=-1).gather(1, targets[:, None])[:, 0]
            return sums.index_add_(0, rows, lp.double()).cpu().numpy()
        self.model(**inputs, logits_to_keep=1)
        hidden = box.pop("h")
        h = hidden[:, :-1][predicting]
        for lo in range(0, len(targets), self.opts.head_chunk):
            logits = self.head(h[lo : lo + self.opts.head_chunk]).float()
            lp = torch.log_softmax(logits, dim=-1).gather(1, targets[lo : lo + self.opts.head_chunk, None])[:, 0]
            sums.index_add_(0, rows[lo : lo + self.opts.head_chunk], lp.double())
        return sums.cpu().numpy()


def _context_token(tokenizer: Any) -> int:
    """The token every text is predicted after: EOS (in training, every document follows the
    previous one's EOS, so that is the context a document start has), else BOS."""
    tok = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    if tok is None:
        raise EvalError("the tokenizer has neither an EOS nor a BOS token to start a text with")
    return int(tok)


def perplexity_requests(ids: list[int], first: int, window: int, stride: int) -> list[Request]:
    """Windows over ``[first] + ids`` that together score every token of ``ids`` exactly once."""
    seq = [first, *ids]
    out, prev_end, begin = [], 1, 0
    while prev_end < len(seq):
        end = min(begin + window, len(seq))
        out.append(Request(seq[begin:end], end - prev_end))
        prev_end, begin = end, begin + stride
    return out


def eval_perplexity(scorer: Scorer, s: EvalSet, opts: EvalOptions) -> dict[str, Any]:
    tok = scorer.tokenizer
    limit = model_positions(scorer.model)
    window = min(opts.max_length, limit) if limit else opts.max_length
    stride = min(opts.stride, window - 1) if window > 1 else 1
    first = _context_token(tok)
    texts = [it["text"] for it in s.items]
    encoded = tok(texts, add_special_tokens=False)["input_ids"]
    reqs, owner = [], []
    for k, ids in enumerate(encoded):
        for r in perplexity_requests(list(ids), first, window, stride):
            reqs.append(r)
            owner.append(k)
    lp = scorer.logprobs(reqs, desc=f"ppl {s.name}")
    nll = np.zeros(len(texts))
    np.add.at(nll, np.asarray(owner, np.int64), -lp)
    tokens = np.array([len(ids) for ids in encoded], np.int64)
    nbytes = np.array([len(t.encode("utf-8")) for t in texts], np.int64)

    def agg(sel: np.ndarray) -> dict[str, Any]:
        n_tok, n_bytes, total = int(tokens[sel].sum()), int(nbytes[sel].sum()), float(nll[sel].sum())
        return {
            "perplexity": math.exp(total / n_tok) if n_tok else None,
            "bits_per_byte": total / LN2 / n_bytes if n_bytes else None,
            "nll": total,
            "tokens": n_tok,
            "bytes": n_bytes,
            "n": int(sel.sum()),
        }

    everything = np.ones(len(texts), bool)
    groups: dict[str, dict[str, Any]] = {}
    for key in s.group_by:
        values = sorted({it["groups"][key] for it in s.items if key in it["groups"]})
        if values:
            groups[key] = {v: agg(np.array([it["groups"].get(key) == v for it in s.items])) for v in values}
    per_doc = nll / np.maximum(tokens, 1)
    samples = [
        {"id": it["id"], "text": it["text"][:300], "tokens": int(tokens[k]), "perplexity": math.exp(per_doc[k])}
        for k, it in enumerate(s.items[: opts.samples])
    ]
    return {**agg(everything), "groups": groups, "samples": samples}


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)


def mcq_prompt(item: dict[str, Any], fmt: str) -> tuple[str, list[str]]:
    """(context, continuations): cloze scores the option texts, letters the option keys."""
    zh = _is_cjk(item["question"])
    q, a = ("问题：", "答案：") if zh else ("Question: ", "Answer:")
    sep = "" if zh else " "
    if fmt == "letters":
        listing = "".join(f"\n{k}. {text}" for k, text in item["options"])
        return f"{q}{item['question']}{listing}\n{a}", [sep + k for k, _ in item["options"]]
    return f"{q}{item['question']}\n{a}", [sep + text for _, text in item["options"]]


def continuation_request(tokenizer: Any, context: str, continuation: str, limit: int | None) -> Request:
    """Context and continuation encoded together (merges across the boundary stay as the model
    sees them); the continuation's tokens are those past the context's own encoding."""
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    n_cont = max(1, len(whole) - len(ctx))
    if len(whole) - n_cont < 1:
        whole = [_context_token(tokenizer), *whole]
    if limit and len(whole) > limit:  # keep the end: the continuation and the context nearest it
        whole = whole[-limit:]
        n_cont = min(n_cont, limit - 1)
    return Request(list(whole), n_cont)


def eval_mcq(scorer: Scorer, s: EvalSet, opts: EvalOptions) -> dict[str, Any]:
    limit = model_positions(scorer.model)
    reqs, spans, lengths = [], [], []
    for item in s.items:
        context, conts = mcq_prompt(item, opts.mcq_format)
        spans.append((len(reqs), len(reqs) + len(conts)))
        for cont in conts:
            reqs.append(continuation_request(scorer.tokenizer, context, cont, limit))
            lengths.append(len(cont.strip()) or 1)
    lp = scorer.logprobs(reqs, desc=f"mcq {s.name}")
    norm = lp / np.asarray(lengths, np.float64)
    acc = acc_norm = 0
    samples = []
    for item, (lo, hi) in zip(s.items, spans, strict=True):
        pick, pick_norm = int(np.argmax(lp[lo:hi])), int(np.argmax(norm[lo:hi]))
        acc += pick == item["answer"]
        acc_norm += pick_norm == item["answer"]
        if len(samples) < opts.samples:
            keys = [k for k, _ in item["options"]]
            samples.append(
                {
                    "id": item["id"],
                    "question": item["question"][:300],
                    "answer": keys[item["answer"]],
                    "picked": keys[pick],
                    "picked_norm": keys[pick_norm],
                    "loglik": [round(float(x), 4) for x in lp[lo:hi]],
                }
            )
    n = len(s.items)
    return {"accuracy": acc_norm / n, "acc": acc / n, "acc_norm": acc_norm / n, "n": n, "samples": samples}


def _chat_prompt(tokenizer: Any, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return prompt


def generate(
    lm_model: Any, tokenizer: Any, device: Any, prompts: Sequence[str], opts: EvalOptions, desc: str
) -> list[str]:
    """Greedy continuations of ``prompts``, batched with left padding."""
    import torch

    texts = [_chat_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = [""] * len(texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = model_positions(lm_model)
    keep = (limit - opts.max_new_tokens) if limit else None
    if keep is not None and keep < 1:
        raise EvalError(f"max_new_tokens {opts.max_new_tokens} leaves no room for a prompt in {limit} positions")
    was_training = lm_model.training
    lm_model.eval()
    try:
        for lo in tqdm(
            range(0, len(order), opts.gen_batch), desc=desc, unit="batch", disable=not opts.progress, leave=False
        ):
            batch = order[lo : lo + opts.gen_batch]
            enc = [tokenizer(texts[k], add_special_tokens=False)["input_ids"] for k in batch]
            enc = [e[-keep:] if keep else e for e in enc]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), pad, dtype=torch.long)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            for row, e in enumerate(enc):
                ids[row, width - len(e) :] = torch.tensor(e)
                mask[row, width - len(e) :] = 1
            with torch.inference_mode():
                gen = lm_model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=opts.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    eos_token_id=tokenizer.eos_token_id,
                )
            for row, k in enumerate(batch):
                out[k] = tokenizer.decode(gen[row, width:], skip_special_tokens=True).strip()
    finally:
        if was_training:
            lm_model.train()
    return out


def eval_qa(lm: LoadedModel, s: EvalSet, opts: EvalOptions) -> dict[str, Any]:
    preds = generate(lm.model, lm.tokenizer, lm.device, [it["prompt"] for it in s.items], opts, f"qa {s.name}")
    scores = [score_answer(p, it["answer"]) for p, it in zip(preds, s.items, strict=True)]
    samples = [
        {"id": it["id"], "prompt": it["prompt"][:300], "answer": it["answer"], "generated": p, **vars(sc)}
        for it, p, sc in list(zip(s.items, preds, scores, strict=True))[: opts.samples]
    ]
    return {**mean_scores(scores), "n": len(scores), "samples": samples}


# -- overlap guard ---------------------------------------------------------------------------
def check_overlap(
    sets: Sequence[EvalSet], train_root: Path, ngram: int, threshold: float, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Overlap of every set's items with the training split of ``train_root`` (module docstring)."""
    import pyarrow.parquet as pq

    from pipelines.overlap import OverlapIndex
    from training.data import NoShardsError, select_shards

    try:
        refs = select_shards(train_root, split="train")
    except NoShardsError as exc:
        log(f"overlap guard: skipped ({exc})")
        return {}
    indexes = {
        s.name: OverlapIndex(s.overlap_texts(), n=ngram, threshold=threshold, ids=[it["id"] for it in s.items])
        for s in sets
    }
    for ref in refs:
        for batch in pq.ParquetFile(ref.path).iter_batches(columns=["text"], batch_size=2048):
            texts = [t for t in batch.column("text").to_pylist() if t]
            for index in indexes.values():
                index.scan(texts)
    out = {}
    for name, index in indexes.items():
        summary = index.report().summary()
        summary["train_root"] = str(train_root)
        out[name] = summary
        log(
            f"overlap guard: {name}: {summary['overlapping']}/{summary['n']} items share a {ngram}-gram with "
            f"{train_root} (train split, {summary['corpus_docs']} docs); {summary['contaminated']} contaminated "
            f"(>= {threshold:.0%} of their {ngram}-grams)"
        )
    return out


# -- the whole evaluation ----------------------------------------------------------------------
def evaluate(
    lm: LoadedModel,
    sets: Sequence[EvalSet],
    opts: EvalOptions | None = None,
    contamination: dict[str, dict[str, Any]] | None = None,
    *,
    head_outside: bool = True,
) -> dict[str, Any]:
    """Every set scored with ``lm``; the results in the `--out` shape (module docstring)."""
    opts = opts or EvalOptions()
    started = time.perf_counter()
    scorer = Scorer(lm.model, lm.tokenizer, lm.device, opts, head_outside=head_outside)
    results: dict[str, Any] = {
        "model": lm.name,
        "adapter": lm.adapter,
        "perplexity": {},
        "bits_per_byte": {},
        "mcq": {},
        "qa": {},
        "groups": {},
        "samples": {},
        "sets": {},
    }
    for s in sets:
        if s.kind == "ppl":
            r = eval_perplexity(scorer, s, opts)
            results["perplexity"][s.name] = r["perplexity"]
            results["bits_per_byte"][s.name] = r["bits_per_byte"]
            results["groups"][s.name] = r["groups"]
            results["sets"][s.name] = {
                "kind": "ppl",
                "spec": s.spec,
                "n": r["n"],
                "tokens": r["tokens"],
                "bytes": r["bytes"],
            }
        elif s.kind == "mcq":
            r = eval_mcq(scorer, s, opts)
            results["mcq"][s.name] = {k: r[k] for k in ("accuracy", "acc", "acc_norm", "n")}
            results["sets"][s.name] = {"kind": "mcq", "spec": s.spec, "n": r["n"], "format": opts.mcq_format}
        else:
            r = eval_qa(lm, s, opts)
            results["qa"][s.name] = {k: v for k, v in r.items() if k != "samples"}
            results["sets"][s.name] = {"kind": "qa", "spec": s.spec, "n": r["n"]}
        results["samples"][s.name] = r["samples"]
    contamination = contamination or {}
    results["contamination"] = contamination
    results["contaminated"] = any(c.get("contaminated", 0) > 0 for c in contamination.values())
    results["seconds"] = time.perf_counter() - started
    return results


def set_metrics(results: dict[str, Any], name: str) -> dict[str, float]:
    """The flat numbers of one set in ``results`` (what training logs and TensorBoard plot)."""
    out: dict[str, float] = {}
    if name in results["perplexity"]:
        out = {"perplexity": results["perplexity"][name], "bits_per_byte": results["bits_per_byte"][name]}
    elif name in results["mcq"]:
        out = {k: results["mcq"][name][k] for k in ("acc", "acc_norm")}
    elif name in results["qa"]:
        out = {k: results["qa"][name][k] for k in ("em", "f1", "rouge_l", "f1_char", "rouge_l_char")}
    overlap = results.get("contamination", {}).get(name)
    if overlap:
        out["contaminated_items"] = float(overlap["contaminated"])
    return {k: float(v) for k, v in out.items() if v is not None}


def training_evaluators(
    entries: Sequence[Any], root: Path, log: Callable[[str], None] = print
) -> dict[str, Callable[[Any], dict[str, float]]]:
    """``eval_sets:`` of a training config -> one evaluator per set for `training.run`.

    Sets are read and checked (and the overlap guard run against ``root``'s train split) when
    this is called, before training starts. An evaluator gets the trainer's eval context
    (``engine``, ``tokenizer``, ``dist``, ``cfg``) and scores the model it is training; every
    rank scores the whole set (ZeRO-3 gathers parameters in collective forwards, so all ranks
    run the same batches), and the numbers are the same on every rank."""
    specs = [SetSpec.from_config(e, f"eval_sets[{i}]") for i, e in enumerate(entries)]
    sets, skipped = load_sets(specs, root)
    for note in skipped:
        log(f"eval set skipped: {note}")
    contamination: dict[str, dict[str, Any]] = {}
    try:
        contamination = check_overlap(sets, root, 13, 0.7, log=log)
    except ImportError as exc:  # a GPU machine without polars: evaluate without the guard
        log(f"overlap guard: skipped ({exc})")

    def make(s: EvalSet) -> Callable[[Any], dict[str, float]]:
        def run(ctx: Any) -> dict[str, float]:
            engine = ctx.engine
            module = getattr(engine, "module", engine)
            zero3 = getattr(getattr(ctx, "cfg", None), "zero_stage", 0) == 3
            lm = LoadedModel(module, ctx.tokenizer, ctx.dist.device, "training")
            opts = EvalOptions(progress=False)
            results = evaluate(
                lm,
                [s],
                opts,
                {s.name: contamination[s.name]} if s.name in contamination else {},
                head_outside=not zero3,
            )
            return set_metrics(results, s.name)

        return run

    return {s.name: make(s) for s in sets}


def format_results(results: dict[str, Any]) -> str:
    """A short plain-text table of the headline numbers."""
    lines = [f"model {results['model']}" + (f" + adapter {results['adapter']}" if results.get("adapter") else "")]
    for name, ppl in results["perplexity"].items():
        lines.append(f"  ppl   {name:<28} perplexity {ppl:10.3f}   bits/byte {results['bits_per_byte'][name]:.4f}")
        for key, values in results["groups"].get(name, {}).items():
            for value, g in values.items():
                lines.append(
                    f"          {key}={value:<22} perplexity {g['perplexity']:10.3f}   "
                    f"bits/byte {g['bits_per_byte']:.4f}   n={g['n']}"
                )
    for name, m in results["mcq"].items():
        lines.append(f"  mcq   {name:<28} acc_norm {m['acc_norm']:.4f}   acc {m['acc']:.4f}   n={m['n']}")
    for name, q in results["qa"].items():
        lines.append(
            f"  qa    {name:<28} em {q['em']:.4f}   f1 {q['f1']:.4f} (chars {q['f1_char']:.4f})   "
            f"rouge_l {q['rouge_l']:.4f} (chars {q['rouge_l_char']:.4f})   n={q['n']}"
        )
    for name, c in results.get("contamination", {}).items():
        if c.get("contaminated"):
            lines.append(f"  CONTAMINATED {name}: {c['contaminated']}/{c['n']} items (see 'contamination' in the JSON)")
    return "\n".join(lines)


def write_results(results: dict[str, Any], path: Path) -> None:
    from corpus.store import write_bytes

    write_bytes((json.dumps(results, indent=2, ensure_ascii=False) + "\n").encode(), path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="HF model dir, training.run output dir, or 'default'")
    p.add_argument("--adapter", help="peft LoRA adapter directory to apply on top of --model")
    p.add_argument("--ppl", action="append", default=[], metavar="[NAME=]FILE.jsonl|catalog:<where>")
    p.add_argument("--mcq", action="append", default=[], metavar="[NAME=]FILE.jsonl")
    p.add_argument("--qa", action="append", default=[], metavar="[NAME=]FILE.jsonl")
    p.add_argument("--limit", type=int, help="at most this many items per set, spread evenly over it")
    p.add_argument("--group-by", default="source,bucket", help="fields of --ppl rows to report separately")
    p.add_argument("--root", type=Path, default=Path("data"), help="corpus root for catalog: sets")
    p.add_argument("--train-root", type=Path, help="corpus whose train split the overlap guard checks (default --root)")
    p.add_argument("--no-overlap", action="store_true", help="skip the overlap guard")
    p.add_argument("--overlap-ngram", type=int, default=13)
    p.add_argument("--overlap-threshold", type=float, default=0.7)
    p.add_argument("--mcq-format", choices=["cloze", "letters"], default="cloze")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="results JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    group_by = tuple(k.strip() for k in args.group_by.split(",") if k.strip())
    specs = [
        SetSpec.parse(kind, arg, limit=args.limit, group_by=group_by)
        for kind, values in (("ppl", args.ppl), ("mcq", args.mcq), ("qa", args.qa))
        for arg in values
    ]
    if not specs:
        p.error("nothing to evaluate: give at least one of --ppl, --mcq, --qa")
    opts = EvalOptions(
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        stride=max(1, args.max_length * 3 // 4),
        max_new_tokens=args.max_new_tokens,
        mcq_format=args.mcq_format,
        progress=not args.quiet,
    )
    try:
        sets, skipped = load_sets(specs, args.root)
        for note in skipped:
            print(f"skipped {note}", file=sys.stderr)
        contamination = {}
        train_root = args.train_root or args.root
        if not args.no_overlap:
            if (train_root / "catalog.duckdb").exists():
                contamination = check_overlap(
                    sets,
                    train_root,
                    args.overlap_ngram,
                    args.overlap_threshold,
                    log=lambda m: print(m, file=sys.stderr),
                )
            else:
                print(f"overlap guard: skipped (no catalog in {train_root}; pass --train-root)", file=sys.stderr)
        lm = load_model(args.model, args.adapter, args.device)
        results = evaluate(lm, sets, opts, contamination)
    except (EvalSetError, EvalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results["train_root"] = str(args.train_root or args.root) if results["contamination"] else None
    print(format_results(results))
    if args.out:
        write_results(results, args.out)
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
