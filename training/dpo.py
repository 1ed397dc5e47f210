"""Direct preference optimisation: the loss on (chosen, rejected) log-probabilities and its metrics.

For a prompt x with a preferred answer y_w and a dispreferred one y_l, DPO (Rafailov et al. 2023)
trains the policy pi against a frozen reference pi_ref with

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]
    sigmoid:  loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
    ipo:      loss = (h - 1 / (2 beta))^2        (Azar et al. 2023, log-probs averaged per token)

``eps`` is the label smoothing of conservative DPO (the share of pairs assumed mislabelled; 0 is
plain DPO). A sequence's log-probability is the sum over its response tokens only (the prompt is
masked, as in `training.data`'s instruction rows); IPO uses the per-token mean. The implicit
rewards beta (log pi - log pi_ref) of the chosen and the rejected answer are the metrics: reward
accuracy (share of pairs whose chosen reward is higher), the mean rewards and their margin.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from corpus.store import CorruptShardError
from training.checkpoint import keep_nonfinite
from training.config import TrainingError
from training.curriculum import CurriculumError
from training.data import DocumentTokenizer, ShardRef
from training.distributed import all_sum, barrier
from training.packing import IGNORE_INDEX
from training.preference import (
    Pair,
    PairOrder,
    PreferencePairs,
    eval_groups,
    pad_pairs,
    padding_pair,
    tokenized_pairs,
)
from training.progress import bar, status
from training.run import StepResult, TrainRecipe
from training.stream import Cursor

LOSSES = ("sigmoid", "ipo")


@dataclass(frozen=True)
class DPOSettings:
    """``dpo:`` in the training config."""

    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Log-probability of each row's labelled tokens: ``logits`` [rows, seq, vocab] predict
    ``labels`` [rows, seq] shifted by one; summed (or averaged) over the labelled positions."""
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-probs in fp32 at least
    token = -F.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        target.clamp(min=0).flatten(),
        reduction="none",
    ).view_as(target)
    total = (token * keep).sum(-1)
    return total / keep.sum(-1).clamp(min=1) if average else total


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    settings: DPOSettings,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses [pairs] and per-pair metrics (rewards, correct) from sequence log-probs."""
    chosen = policy_chosen - reference_chosen
    rejected = policy_rejected - reference_rejected
    h = chosen - rejected
    beta = settings.beta
    if settings.loss == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif settings.loss == "sigmoid":
        eps = settings.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    else:
        raise ValueError(f"dpo.loss must be one of {LOSSES}, got {settings.loss!r}")
    reward_chosen, reward_rejected = (beta * chosen).detach(), (beta * rejected).detach()
    metrics = {
        "reward_chosen": reward_chosen,
        "reward_rejected": reward_rejected,
        "reward_margin": reward_chosen - reward_rejected,
        "reward_accuracy": (reward_chosen > reward_rejected).float(),
    }
    return losses, metrics


METRICS = ("reward_accuracy", "reward_chosen", "reward_rejected", "reward_margin")


def pair_logps(model: Any, inputs: dict[str, Any], average: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) sequence log-probs of a micro-batch laid out as [chosen rows; rejected
    rows], through ``model`` (a DeepSpeed engine, a peft model or a plain HF model)."""
    labels = inputs["labels"]
    logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    logps = sequence_logps(logits, labels, average)
    half = labels.shape[0] // 2
    return logps[:half], logps[half:]


def reference_logps(
    policy: Any, reference: Any | None, inputs: dict[str, Any], average: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference model's (chosen, rejected) log-probs, without gradients: ``reference`` (a
    frozen copy) when given, else ``policy`` with its LoRA adapter disabled, which is exactly the
    base model it was built on, at the cost of a forward pass and no second copy of the weights."""
    with torch.no_grad():
        if reference is not None:
            return pair_logps(reference, inputs, average)
        peft_model = getattr(policy, "module", policy)  # a DeepSpeed engine wraps the peft model
        with peft_model.disable_adapter():
            return pair_logps(policy, inputs, average)


class DPORecipe(TrainRecipe):
    """`TrainRecipe` with the DPO objective: the data are preference pairs (`training.preference`),
    the loss is `dpo_loss` against the reference model, and the held-out metrics are the DPO loss
    and rewards per bucket. The reference: with LoRA the same model with its adapter disabled (no
    second copy); with full fine-tuning a frozen copy of the starting weights, not wrapped by
    DeepSpeed (so under ZeRO-3 it is a full, unpartitioned copy on every rank)."""

    def _setup_model(self) -> None:
        super()._setup_model()
        self.settings = DPOSettings(**(self.cfg.dpo or {}))
        self.reference = None
        if not self.cfg.lora:  # copied before DeepSpeed wraps (and, under ZeRO-3, partitions) the model
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
            status("model: frozen reference copy of the starting weights (full fine-tuning)")

    def _setup_engine(self) -> Any:
        engine = super()._setup_engine()
        if self.reference is not None:  # where the engine put the policy, in its precision (bf16 on GPU)
            self.reference.to(device=self.dist.device, dtype=self.dtype)
        return engine

    def _setup_tokens(self) -> None:
        """Tokenise the pairs of every selected shard (split across ranks, into the shared cache),
        then index them; rows without the preference fields are counted, not trained on."""
        cfg, dist = self.cfg, self.dist
        self.doc_tok = DocumentTokenizer(self.tokenizer)
        self.cache = Path(cfg.root) / "state" / "tokens"
        tok = self.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        mine = [ref for k, ref in enumerate(self.refs + self.eval_refs) if k % dist.world == dist.rank]
        try:
            with bar(len(mine), "tokenize pairs", "shard") as progress:
                for ref in mine:
                    tokenized_pairs(ref, self.doc_tok, self.cache)
                    progress.update(1)
            barrier(dist)
            self.pairs = PreferencePairs(self.refs, self.doc_tok, self.cache, cfg.seq_len)
            buckets = dict.fromkeys(r.bucket for r in self.eval_refs)
            self.eval_pairs = {
                b: PreferencePairs([r for r in self.eval_refs if r.bucket == b], self.doc_tok, self.cache, cfg.seq_len)
                for b in buckets
            }
        except CorruptShardError as exc:
            raise TrainingError(str(exc)) from None
        held = sum(len(p) for p in self.eval_pairs.values())
        status(
            f"data: {len(self.pairs):,} preference pairs to train on, {held:,} held out; {self.pairs.skipped:,} "
            f"rows without meta.prompt/chosen/rejected skipped, {self.pairs.too_long:,} pairs whose prompt "
            f"fills seq_len={self.cfg.seq_len} dropped"
        )
        if not len(self.pairs):
            raise TrainingError(
                f"{self.cfg.root}: no preference pairs in the selected train shards (rows with meta.prompt, "
                "meta.chosen and meta.rejected, e.g. source synth:preference)"
            )

    def _setup_data(self, state: dict[str, Any] | None) -> Any:
        try:
            return PairOrder(self.pairs, self.cfg.seed, state)
        except CurriculumError as exc:
            raise TrainingError(f"{self.cfg.root}: {exc}") from None

    # -- the step -----------------------------------------------------------------------------

    def _inputs(self, pairs: list[Pair]) -> dict[str, Any]:
        import torch

        host = pad_pairs(pairs or [padding_pair(self.pad_id)], self.cfg.seq_len, self.pad_id)
        t = {k: torch.from_numpy(v).to(self.dist.device) for k, v in host.items()}
        return {**t, "use_cache": False}

    def _pair_losses(self, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Per-pair DPO losses and metrics: the policy through the engine, the reference without
        gradients (the adapter disabled, or the frozen copy)."""
        average = self.settings.loss == "ipo"
        ref_c, ref_r = reference_logps(self.engine, self.reference, inputs, average)
        pol_c, pol_r = pair_logps(self.engine, inputs, average)
        return dpo_loss(pol_c, pol_r, ref_c, ref_r, self.settings)

    def _train_step(self, step: int, batches: list[list[Pair]], starts: list[tuple[ShardRef, Cursor]]) -> StepResult:
        """The step's loss is the mean over all its pairs (every micro-batch, every rank): each
        micro-batch's pair sum is divided by pairs / (grad_accum x world), as the SFT token mean."""
        dist, cfg = self.dist, self.cfg
        (pairs,) = all_sum([float(sum(len(b) for b in batches))], dist)
        divisor = pairs / (len(batches) * dist.world)
        step_loss = tokens = 0.0
        sums = dict.fromkeys(METRICS, 0.0)
        for micro, (batch, (shard, at)) in enumerate(zip(batches, starts, strict=True)):
            inputs = self._inputs(batch)
            losses, metrics = self._pair_losses(inputs)
            loss = losses.sum() / divisor
            mean_loss = all_sum([float(loss.detach())], dist)[0] / dist.world
            if not math.isfinite(mean_loss):
                raise keep_nonfinite(self.engine, self.ckpt_dir, mean_loss, step, micro, shard, at)
            self.engine.backward(loss)
            self.engine.step()
            step_loss += mean_loss / cfg.grad_accum
            tokens += float(inputs["attention_mask"].sum())
            for k in METRICS:
                sums[k] += float(metrics[k].sum())
        totals = all_sum([tokens, *sums.values()], dist)
        return StepResult(step_loss, int(totals[0]), {k: v / pairs for k, v in zip(METRICS, totals[1:], strict=True)})

    # -- eval ---------------------------------------------------------------------------------

    def _evaluate_heldout(self, step: int) -> None:
        """DPO loss, reward accuracy, rewards and margin on the held-out pairs of each bucket (up to
        ``eval_batches`` groups; the last may be partial, an empty rank slice runs a padding pair)."""
        import torch

        cfg, dist = self.cfg, self.dist
        self.engine.eval()
        for bucket, pairs in self.eval_pairs.items():
            sums = [0.0] * (2 + len(METRICS))  # pairs, loss, metrics
            for group in eval_groups(pairs, dist, cfg.micro_batch, cfg.eval_batches):
                with torch.no_grad():
                    losses, metrics = self._pair_losses(self._inputs(group))
                if group:
                    sums[0] += len(group)
                    sums[1] += float(losses.sum())
                    for k, name in enumerate(METRICS, start=2):
                        sums[k] += float(metrics[name].sum())
            count, *rest = all_sum(sums, dist)
            if not count:
                status(f"eval at step {step}: bucket {bucket!r} has no held-out preference pairs; not evaluated")
                continue
            values = dict(zip(["loss", *METRICS], (v / count for v in rest), strict=True))
            self.evals.setdefault(step, {})[bucket] = values["reward_accuracy"]
            status(
                f"eval at step {step}: bucket {bucket} dpo loss {values['loss']:.4f}, "
                f"reward accuracy {values['reward_accuracy']:.3f}, margin {values['reward_margin']:.4f}"
            )
            row = {"kind": "eval", "step": step, "bucket": bucket, "pairs": int(count), **values}
            self.metrics.log(row, {f"eval/{k}_bucket_{bucket}": v for k, v in values.items()})
        self.engine.train()

    def _summary_evals(self) -> dict[str, Any]:
        return {
            "eval_reward_accuracy_start": self.evals.get(0),
            "eval_reward_accuracy_end": self.evals.get(self.cfg.max_steps),
        }

    def _probe_ids(self) -> list[int]:
        return self.pairs[0].chosen[:64].tolist()
