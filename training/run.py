"""`python -m training.run --config configs/train.yaml [--set key=value ...]`: train on the corpus.

Reads final shards selected in the catalog (`training.data`), packs them with document
boundaries kept (`training.packing`), and trains with a DeepSpeed engine (ZeRO stage from the
config; gloo + fp32 on CPU, NCCL + bf16 on GPU), LoRA via peft or full fine-tuning, warmup +
cosine schedule, clipping and gradient accumulation. Writes `metrics.jsonl`, TensorBoard logs,
checkpoints, an HTML training report and an exported Hugging Face model directory.

The run is a recipe in torchtune's shape: ``recipe = TrainRecipe(cfg)``, ``recipe.setup()``
builds every part the loop needs and keeps it on ``self`` (`_setup_model`, `_setup_engine`,
`_setup_data`, ...), ``recipe.train()`` is the loop, read top to bottom, calling
``save_checkpoint`` and ``evaluate`` when they are due, and ``recipe.cleanup()`` exports, writes
the report and returns the summary. Evaluators beyond the held-out loss per bucket plug in as
callables (`Evaluator`) passed to the recipe; they run at every eval (``eval_every`` and the end).
The config's ``eval_sets`` (perplexity, multiple choice, QA files) become such evaluators through
`training.eval.training_evaluators`, so task metrics sit beside the loss in ``metrics.jsonl``,
TensorBoard and the training report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corpus.store import CorruptShardError
from training.batches import model_inputs, step_divisor
from training.checkpoint import keep_nonfinite, resume, save, selection_digest
from training.config import TrainConfig, TrainingError
from training.curriculum import Curriculum, CurriculumError, open_curriculum
from training.data import DocumentTokenizer, NoShardsError, ShardRef, select_shards, tokenized_shard
from training.distributed import Dist, all_sum, barrier, init_distributed
from training.export import export_trained, full_state_dict
from training.heldout import heldout_loss
from training.logs import MetricsLog
from training.model import build_model, loss_function
from training.packing import PackedRow
from training.progress import bar, is_main_process, status
from training.stream import Cursor, packed_stream


@dataclass(frozen=True)
class EvalContext:
    """What an evaluator gets at an eval: run the model through ``engine`` (in eval mode, under
    ``torch.no_grad`` by the evaluator; every rank calls it, so ZeRO-3 can gather parameters)."""

    step: int
    engine: Any
    tokenizer: Any
    dist: Dist
    dtype: Any
    cfg: TrainConfig


Evaluator = Callable[[EvalContext], dict[str, float]]
"""``evaluator(ctx) -> {metric: value}``; logged as ``{"kind": "eval_set", "set": name, ...}``."""


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: its mean loss (all ranks), the tokens it trained on (all ranks) and any
    objective-specific step metrics (logged beside the loss)."""

    loss: float
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)


class TrainRecipe:
    """One training run: ``setup()`` -> ``train()`` -> ``cleanup()``; ``save_checkpoint`` and
    ``evaluate`` are called by the loop when due."""

    def __init__(self, cfg: TrainConfig, evaluators: dict[str, Evaluator] | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(cfg.output_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.evaluators = dict(evaluators or {})
        self.start_step = 0
        self.losses: list[float] = []
        self.evals: dict[int, dict[str, float]] = {}  # step -> bucket -> perplexity
        self.set_evals: dict[int, dict[str, dict[str, float]]] = {}  # step -> evaluator -> metrics

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        import torch

        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.refs, self.eval_refs = self._select_shards()
        self._setup_eval_sets()
        self._setup_model()
        status("engine: starting the process group")
        self.dist = init_distributed()
        torch.manual_seed(cfg.seed + self.dist.rank)  # per-rank dropout streams from here on
        self.on_gpu = torch.cuda.is_available()
        self.dtype = torch.bfloat16 if self.on_gpu else torch.float32
        self._setup_tokens()
        self.optimizer, self.scheduler = self._setup_optimizer()
        self.loss_of = loss_function(self.model, cfg)
        self.engine = self._setup_engine()
        data_state = self._load_checkpoint()
        self.order = self._setup_data(data_state)
        self.metrics = MetricsLog(self.out_dir, self.dist.main, from_step=self.start_step)
        self.started = time.perf_counter()

    def _select_shards(self) -> tuple[list[ShardRef], list[ShardRef]]:
        cfg, root = self.cfg, Path(self.cfg.root)
        try:
            refs = select_shards(root, split="train", buckets=cfg.buckets, sources=cfg.sources)
        except NoShardsError as exc:
            raise TrainingError(str(exc)) from None
        try:
            eval_refs = select_shards(root, split="validation", buckets=cfg.buckets, sources=cfg.sources)
        except NoShardsError:
            eval_refs = []
        announce_data(refs, eval_refs, cfg)
        return refs, eval_refs

    def _setup_eval_sets(self) -> None:
        """``eval_sets`` as evaluators: read, checked and run through the overlap guard against the
        train split now, so a bad row stops the run before the model loads."""
        if not self.cfg.eval_sets:
            return
        from training.eval import training_evaluators
        from training.eval_sets import EvalSetError

        try:
            found = training_evaluators(self.cfg.eval_sets, Path(self.cfg.root), log=status)
        except EvalSetError as exc:
            raise TrainingError(f"eval_sets: {exc}") from None
        clash = sorted(set(found) & set(self.evaluators))
        if clash:
            raise TrainingError(f"eval_sets: name(s) {clash} are already used by the run's own evaluators")
        self.evaluators.update(found)

    def _setup_model(self) -> None:
        self.model, self.tokenizer = build_model(self.cfg)  # identical on every rank: seeded init / same weights

    def _setup_tokens(self) -> None:
        """Fill the token cache before training, shards split across ranks, so no rank tokenises a
        shard another rank also tokenises and no rank waits on tokenisation mid-step."""
        self.doc_tok = DocumentTokenizer(self.tokenizer)
        self.cache = Path(self.cfg.root) / "state" / "tokens"
        dist = self.dist
        mine = [ref for k, ref in enumerate(self.refs + self.eval_refs) if k % dist.world == dist.rank]
        with bar(len(mine), "tokenize", "shard") as progress:
            for ref in mine:
                try:
                    tokenized_shard(ref, self.doc_tok, self.cache)
                except CorruptShardError as exc:
                    raise TrainingError(str(exc)) from None
                progress.update(1)
        barrier(dist)

    def _setup_optimizer(self) -> tuple[Any, Any]:
        """AdamW over the trainable parameters and the warmup + cosine schedule (stepped by DeepSpeed
        once per optimizer step)."""
        import torch

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = cfg.fused_adamw if cfg.fused_adamw is not None else self.on_gpu
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {})
        )

        def schedule(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def _setup_engine(self) -> Any:
        import deepspeed

        cfg = self.cfg
        if cfg.compile and cfg.zero_stage < 3:
            self.model.compile()  # in place: parameter names (checkpoints, export) stay the same
        zero: dict[str, Any] = {"stage": cfg.zero_stage}
        if cfg.zero_stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = True  # the export gathers the partitions
        ds_config = {
            "train_micro_batch_size_per_gpu": cfg.micro_batch,
            "gradient_accumulation_steps": cfg.grad_accum,
            "gradient_clipping": cfg.clip,
            "zero_optimization": zero,
            "bf16": {"enabled": self.on_gpu},
            "steps_per_print": 10**9,
        }
        precision = "bf16 on GPU" if self.on_gpu else "fp32 on CPU"
        status(f"engine: DeepSpeed ZeRO-{cfg.zero_stage}, {self.dist.world} process(es), {precision}")
        t0 = time.perf_counter()
        engine, _, _, _ = deepspeed.initialize(
            model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=ds_config
        )
        if cfg.compile and cfg.zero_stage == 3:
            engine.compile()  # ZeRO-3's gather hooks must run inside the compiled module
        status(f"engine: ready in {time.perf_counter() - t0:.1f} s")
        return engine

    def _load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint into the engine, when resuming; returns the data state to seek to."""
        self.digest = selection_digest(self.refs)
        if not (self.cfg.resume and (self.ckpt_dir / "latest").exists()):
            return None
        self.start_step, data_state = resume(
            self.engine, self.ckpt_dir, self.digest, self.dist, trainable_only=bool(self.cfg.lora)
        )
        status(
            f"resume: from {self.ckpt_dir / f'step{self.start_step}'} (step {self.start_step} of {self.cfg.max_steps})"
        )
        return data_state

    def _setup_data(self, state: dict[str, Any] | None) -> Curriculum:
        """The row order of this run (`training.curriculum`), at the checkpoint's position if any."""
        cfg = self.cfg

        def open_stream(shards: list[ShardRef], cursor: Cursor | None) -> Any:
            return packed_stream(shards, self.doc_tok, self.cache, cfg.seq_len, cursor)

        rows_per_step = self.dist.world * cfg.micro_batch * cfg.grad_accum
        try:
            return open_curriculum(cfg.mixture, self.refs, open_stream, rows_per_step, cfg.seed, state)
        except CurriculumError as exc:
            raise TrainingError(f"{cfg.root}: {exc}") from None

    # -- train ------------------------------------------------------------------------------

    def train(self) -> None:
        cfg = self.cfg
        if cfg.eval_at_start and self.start_step == 0:
            self.evaluate(0)
        with bar(cfg.max_steps, "train", "step", initial=self.start_step) as progress:
            for step in range(self.start_step + 1, cfg.max_steps + 1):  # 1-based, as logged
                t0, lr = time.perf_counter(), self.scheduler.get_last_lr()[0]  # this step's lr
                drawn_before = self.order.rows_by_bucket()
                batches, starts = self._next_batches()
                result = self._train_step(step, batches, starts)
                row = self._log_step(step, lr, result, time.perf_counter() - t0, drawn_before)
                progress.set_postfix(loss=f"{result.loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:,.0f}")
                progress.update(1)
                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    self.evaluate(step)
                if step % cfg.save_every == 0 or step == cfg.max_steps:  # the last step always
                    self.save_checkpoint(step)

    def _next_batches(self) -> tuple[list[list[Any]], list[tuple[ShardRef, Cursor]]]:
        """This rank's micro-batches of the next step, all drawn first: the loss divides by all their labels."""
        batches, starts = [], []
        for _ in range(self.cfg.grad_accum):
            try:
                batch, start = self.order.next_group(self.dist, self.cfg.micro_batch)
            except CurriculumError as exc:
                raise TrainingError(f"{self.cfg.root}: {exc}") from None
            batches.append(batch)
            starts.append(start)
        return batches, starts

    def _train_step(
        self, step: int, batches: list[list[PackedRow]], starts: list[tuple[ShardRef, Cursor]]
    ) -> StepResult:
        """Forward, backward and (at the accumulation boundary) the optimizer step; the step's
        loss is the mean over its labelled tokens on all ranks."""
        dist, cfg = self.dist, self.cfg
        num_items = step_divisor(batches, dist, dist.device)
        step_loss, tokens = 0.0, 0
        for micro, (batch, (shard, at)) in enumerate(zip(batches, starts, strict=True)):
            loss = self.loss_of(
                self.engine, model_inputs(batch, self.dtype, dist.device, cfg.packed_attention), num_items
            )
            mean_loss = all_sum([float(loss.detach())], dist)[0] / dist.world  # the same verdict on every rank
            if not math.isfinite(mean_loss):
                raise keep_nonfinite(self.engine, self.ckpt_dir, mean_loss, step, micro, shard, at)
            self.engine.backward(loss)
            self.engine.step()
            step_loss += mean_loss / cfg.grad_accum
            tokens += sum(r.input_ids.size for r in batch) * dist.world
        return StepResult(step_loss, tokens)

    def _log_step(
        self, step: int, lr: float, result: StepResult, seconds: float, drawn_before: dict[str, int] | None
    ) -> dict[str, Any]:
        self.losses.append(result.loss)
        grad_norm = self.engine.get_global_grad_norm()
        row: dict[str, Any] = {
            "kind": "train",
            "step": step,
            "loss": result.loss,
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": result.tokens / seconds,
            **result.metrics,
        }
        if drawn_before is not None:  # rows per bucket in this step's global batch: the mixture as run
            row["rows"] = {b: n - drawn_before[b] for b, n in (self.order.rows_by_bucket() or {}).items()}
        scalars = {f"train/{k}": v for k, v in row.items() if k not in ("kind", "step", "rows") and v is not None}
        self.metrics.log(row, scalars)
        return row

    def save_checkpoint(self, step: int) -> None:
        state = {"step": step, "selection": self.digest, "curriculum": self.order.state()}
        save(self.engine, self.ckpt_dir, f"step{step}", state, self.dist, trainable_only=bool(self.cfg.lora))

    # -- eval -------------------------------------------------------------------------------

    def evaluate(self, step: int) -> None:
        """The held-out metrics per bucket, then every evaluator; logged at ``step``."""
        if self.eval_refs and self.cfg.eval_batches:
            self._evaluate_heldout(step)
        if not self.evaluators:
            return
        self.engine.eval()
        ctx = EvalContext(step, self.engine, self.tokenizer, self.dist, self.dtype, self.cfg)
        for name, evaluator in self.evaluators.items():
            values = evaluator(ctx)
            status(f"eval at step {step}: {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
            scalars = {f"eval/{name}/{k}": v for k, v in values.items()}
            self.set_evals.setdefault(step, {})[name] = values
            self.metrics.log({"kind": "eval_set", "step": step, "set": name, **values}, scalars)
        self.engine.train()

    def _evaluate_heldout(self, step: int) -> None:
        """Held-out perplexity per bucket."""
        found = heldout_loss(
            self.engine,
            self.loss_of,
            self.cfg,
            self.eval_refs,
            self.doc_tok,
            self.cache,
            self.dtype,
            self.dist,
            label=f"eval@{step}",
        )
        if found:
            ppls = ", ".join(f"bucket {b} ppl {math.exp(v):.2f}" for b, v in found.items())
            status(f"eval at step {step}: {ppls}")
        for bucket, eval_loss in found.items():
            ppl = math.exp(eval_loss)
            self.evals.setdefault(step, {})[bucket] = ppl
            row = {"kind": "eval", "step": step, "bucket": bucket, "loss": eval_loss, "ppl": ppl}
            self.metrics.log(row, {f"eval/ppl_bucket_{bucket}": ppl})

    # -- cleanup ----------------------------------------------------------------------------

    def cleanup(self) -> dict[str, Any]:
        """Close the logs, export (LoRA adapter + merged, verified model), write the report and
        ``summary.json``; returns the summary."""
        from training.report import write_training_report

        cfg, dist = self.cfg, self.dist
        self.metrics.close()
        if cfg.export:
            status("export: gathering the trained weights")
        state = full_state_dict(self.engine, dist.rank) if cfg.export else None  # collective under ZeRO-3
        summary: dict[str, Any] = {
            "steps": cfg.max_steps,
            "world_size": dist.world,
            "resumed_from_step": self.start_step,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "seconds": time.perf_counter() - self.started,
            **self._summary_evals(),
        }
        if self.set_evals:  # the evaluators' numbers before (fresh runs) and after training
            summary["eval_sets_start"] = self.set_evals.get(0)
            summary["eval_sets_end"] = self.set_evals.get(cfg.max_steps)
        if dist.main and state is not None:
            summary.update(self._export(state))
        if dist.main:
            summary["report"] = str(write_training_report(self.out_dir))
            status(f"report: {summary['report']}")
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        barrier(dist)
        return summary

    def _summary_evals(self) -> dict[str, Any]:
        """The held-out metric per bucket before (fresh runs) and after training."""
        return {"eval_ppl_start": self.evals.get(0), "eval_ppl_end": self.evals.get(self.cfg.max_steps)}

    def _probe_ids(self) -> list[int]:
        """A real input for the export's logit check: the first 64 tokens of the first train row."""
        return packed_stream(self.refs, self.doc_tok, self.cache, self.cfg.seq_len).take(1)[0].input_ids[:64].tolist()

    def _export(self, state: dict[str, Any]) -> dict[str, Any]:
        fresh, _ = build_model(self.cfg, announce=False)
        probe = self._probe_ids()
        merging = "saving the adapter, merging LoRA, " if self.cfg.lora else ""
        status(f"export: {merging}saving and verifying {self.out_dir / 'export'}")
        try:
            result = export_trained(fresh, state, self.tokenizer, self.out_dir, probe)
        except RuntimeError as exc:
            raise TrainingError(str(exc)) from None
        status(f"export: reloaded logits match the trained model's within {result['export_max_abs_logit_diff']:.2g}")
        return result


def announce_data(refs: list[ShardRef], eval_refs: list[ShardRef], cfg: TrainConfig) -> None:
    """What the run reads, and every train bucket that has no validation shard (so it is never
    left out of the eval silently)."""
    train_buckets = list(dict.fromkeys(r.bucket for r in refs))
    status(
        f"data: {len(refs)} train shard(s), {sum(r.rows for r in refs):,} documents, buckets {train_buckets}; "
        f"{len(eval_refs)} validation shard(s), {sum(r.rows for r in eval_refs):,} documents"
    )
    if cfg.eval_batches == 0:
        return
    missing = [b for b in train_buckets if b not in {r.bucket for r in eval_refs}]
    if missing:
        status(f"eval: bucket(s) {missing} have no validation shards in {cfg.root}; they are not evaluated")


def recipe_class(cfg: TrainConfig) -> type[TrainRecipe]:
    """`TrainRecipe` for the SFT objective, `training.dpo.DPORecipe` for ``objective: dpo``."""
    if cfg.objective == "dpo":
        from training.dpo import DPORecipe

        return DPORecipe
    return TrainRecipe


def train(cfg: TrainConfig, evaluators: dict[str, Evaluator] | None = None) -> dict[str, Any]:
    """The whole run: the recipe's set-up, loop and clean-up; returns the summary."""
    recipe = recipe_class(cfg)(cfg, evaluators)
    recipe.setup()
    recipe.train()
    return recipe.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/train.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = p.parse_args(argv)
    try:
        cfg = TrainConfig.load(args.config if args.config.exists() else None, args.overrides)
        summary = train(cfg)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if is_main_process():
        print(json.dumps({"config": asdict(cfg), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
