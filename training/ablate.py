"""`python -m training.ablate --config configs/ablate.yaml`: what each data recipe does to a model.

A DCLM-style proxy ablation: every *recipe* (a build config, or step changes on a base config)
is built into its own corpus root, one small *proxy* model per recipe and seed is trained on it
with the same fixed token budget (`training.run`), and all proxies are scored on the same
evaluation sets (`training.eval`). The table (recipe x metric, mean ± standard deviation over
seeds, documents and tokens kept) goes to stdout, ``ablation.json`` and ``ablation.html``.

Layout under ``output_dir``::

    recipes/<name>/data/          the recipe's corpus root (catalog, shards, rejects, report)
    recipes/<name>/build.json     what the build kept (written when it finished)
    recipes/<name>/seed<S>/       the proxy's training.run output (train.yaml, train.log, export/ ...)
    recipes/<name>/seed<S>/eval.json   its evaluation (training.eval results)
    ablation.json, ablation.html

**Shared stages.** A recipe root starts with hard links to the raw shards and stage
directories of the recipes built before it, so the build's own stage cache (stage directories
are named by a hash of their inputs and specs, `pipelines.runner`) reuses every stage whose
prefix of steps is unchanged: ``+dedup`` after ``raw`` does not normalise again. Each root keeps
its own state (MinHash index), so no recipe is influenced by another one's decisions.

**Resume.** Each piece records what it was made from: a build is redone only when its config
changed, a proxy whose ``summary.json`` exists for the same training spec is not retrained (a
killed one resumes from its last checkpoint), an ``eval.json`` for the same sets is not redone.
Rerun the same command after a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from corpus.store import write_bytes
from training.eval_sets import EvalSetError, SetSpec

TOP_KEYS = {"output_dir", "base", "recipes", "proxy", "eval", "workers", "overlap"}
PROXY_KEYS = {
    "model",
    "from_scratch",
    "lora",
    "tokens",
    "seq_len",
    "micro_batch",
    "grad_accum",
    "lr",
    "warmup_steps",
    "seeds",
    "launcher",
    "train",
}
RECIPE_KEYS = {"config", "steps", "drop", "set"}


class AblationError(ValueError):
    """The ablation config or one of its runs is unusable; the message names the key or run."""


@dataclass
class Recipe:
    name: str
    config: Path | None = None  # a whole build config instead of the base
    steps: list[Any] | None = None  # replaces the base's step list
    drop: list[str] = field(default_factory=list)
    set: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> parameter overrides


@dataclass
class Proxy:
    model: str = "default"
    from_scratch: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    tokens: int = 65536  # training tokens per proxy, the same for every recipe
    seq_len: int = 128
    micro_batch: int = 8
    grad_accum: int = 1
    lr: float = 3e-3
    warmup_steps: int = 4
    seeds: list[int] = field(default_factory=lambda: [1])
    launcher: list[str] | None = None  # e.g. [torchrun, --nproc_per_node, "8"]; default: this python
    train: dict[str, Any] = field(default_factory=dict)  # any other training.run keys

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch * self.grad_accum

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / self.tokens_per_step))

    def train_config(self, root: Path, output_dir: Path, seed: int) -> dict[str, Any]:
        steps = self.steps
        return {
            "root": str(root),
            "output_dir": str(output_dir),
            "model": self.model,
            "from_scratch": self.from_scratch,
            "lora": self.lora,
            "seq_len": self.seq_len,
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
            "warmup_steps": min(self.warmup_steps, steps),
            "max_steps": steps,
            "seed": seed,
            "eval_batches": 0,  # recipes' validation splits differ: the shared sets are the comparison
            "eval_every": steps,
            "save_every": max(1, steps // 2),
            **self.train,
        }


@dataclass
class AblationConfig:
    output_dir: Path
    base: Path
    recipes: list[Recipe]
    proxy: Proxy
    eval: list[SetSpec]
    workers: int | None = None
    overlap: bool = True


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AblationError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise AblationError(f"--set {key}: {p!r} is not a mapping")
    node[parts[-1]] = value


def load_ablation(path: Path, overrides: list[str] | None = None) -> AblationConfig:
    """Read and check the whole ablation config before anything runs."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise AblationError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise AblationError(f"{path}: invalid YAML: {exc}") from None
    raw = _mapping(raw, str(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AblationError(f"--set {item!r}: expected key=value (dotted keys: proxy.tokens=1000000)")
        _set_dotted(raw, key.strip(), yaml.safe_load(value))
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise AblationError(f"{path}: unknown key(s) {unknown}; known: {sorted(TOP_KEYS)}")
    recipes_raw = _mapping(raw.get("recipes"), f"{path}: recipes")
    if not recipes_raw:
        raise AblationError(f"{path}: 'recipes' must name at least one recipe")
    recipes = []
    for name, spec in recipes_raw.items():
        where = f"{path}: recipes.{name}"
        spec = _mapping(spec, where)
        bad = sorted(set(spec) - RECIPE_KEYS)
        if bad:
            raise AblationError(f"{where}: unknown key(s) {bad}; known: {sorted(RECIPE_KEYS)}")
        if "/" in str(name) or str(name).startswith("."):
            raise AblationError(f"{where}: a recipe name is a directory name (no '/', no leading '.')")
        recipes.append(
            Recipe(
                str(name),
                Path(spec["config"]) if spec.get("config") else None,
                spec.get("steps"),
                list(spec.get("drop") or []),
                {k: _mapping(v, f"{where}.set.{k}") for k, v in _mapping(spec.get("set"), f"{where}.set").items()},
            )
        )
    proxy_raw = _mapping(raw.get("proxy"), f"{path}: proxy")
    bad = sorted(set(proxy_raw) - PROXY_KEYS)
    if bad:
        raise AblationError(f"{path}: proxy: unknown key(s) {bad}; known: {sorted(PROXY_KEYS)}")
    proxy = Proxy(**proxy_raw)
    for key in ("tokens", "seq_len", "micro_batch", "grad_accum"):
        value = getattr(proxy, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AblationError(f"{path}: proxy.{key} must be a positive integer, got {value!r}")
    proxy.lr = float(proxy.lr)
    if not proxy.seeds or not all(isinstance(s, int) for s in proxy.seeds):
        raise AblationError(f"{path}: proxy.seeds must be a non-empty list of integers")
    evals_raw = raw.get("eval") or []
    if not isinstance(evals_raw, list) or not evals_raw:
        raise AblationError(f"{path}: 'eval' must list at least one evaluation set ({{kind, path}})")
    try:
        evals = [SetSpec.from_config(e, f"{path}: eval[{i}]") for i, e in enumerate(evals_raw)]
    except EvalSetError as exc:
        raise AblationError(str(exc)) from None
    return AblationConfig(
        Path(raw.get("output_dir") or "runs/ablate"),
        Path(raw.get("base") or "configs/default.yaml"),
        recipes,
        proxy,
        evals,
        raw.get("workers"),
        bool(raw.get("overlap", True)),
    )


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(obj: Any, path: Path) -> None:
    write_bytes((json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode(), path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except json.JSONDecodeError:
        return None  # a torn file from an old crash: redo that piece


# -- building ----------------------------------------------------------------------------------
def recipe_build_config(recipe: Recipe, cfg: AblationConfig, root: Path) -> Any:
    """The recipe's `BuildConfig`, rooted at its own directory."""
    from common.config import ConfigError
    from pipelines.config import load_config, parse_steps

    where = f"recipe {recipe.name}"
    try:
        build = load_config(recipe.config or cfg.base)
        if recipe.steps is not None:
            build.steps = parse_steps(recipe.steps, where=where)
        names = [s.name for s in build.steps]
        for name in recipe.drop:
            if name not in names:
                raise AblationError(f"{where}: drop: no step {name!r} in {names}")
        missing = sorted(set(recipe.set) - set(names))
        if missing:
            raise AblationError(f"{where}: set: no step(s) {missing} in {names}")
        steps = []
        for step in build.steps:  # only overridden steps are re-made from their parameters
            if step.name in recipe.drop:
                continue
            if step.name in recipe.set:
                spec = {step.name: {**step.params(), **recipe.set[step.name]}}
                step = parse_steps([spec], where=where)[0]
            steps.append(step)
        build.steps = steps
    except ConfigError as exc:
        raise AblationError(f"{where}: {exc}") from None
    if "split" not in [s.name for s in build.steps]:
        raise AblationError(f"{where}: no 'split' step: a proxy trains on the train split it makes")
    build.root, build.root_uri = root, None
    if cfg.workers:
        build.workers = int(cfg.workers)
    return build


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links of every file of ``src`` under ``dst`` (copies across file systems)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def seed_from(root: Path, earlier: list[Path]) -> None:
    """Give a recipe root the raw shards and stage directories of earlier recipe roots."""
    for other in earlier:
        for sub in ("raw", "work"):
            if (other / sub).is_dir():
                for child in (other / sub).iterdir():
                    if child.is_dir() and not child.name.startswith(".") and not (root / sub / child.name).exists():
                        staging = root / sub / f".{child.name}.linking"
                        shutil.rmtree(staging, ignore_errors=True)
                        _link_tree(child, staging)
                        staging.rename(root / sub / child.name)


def build_recipe(recipe: Recipe, cfg: AblationConfig, earlier: list[Path], log: Any) -> dict[str, Any]:
    from pipelines.runner import run_build

    rdir = cfg.output_dir / "recipes" / recipe.name
    root = rdir / "data"
    build = recipe_build_config(recipe, cfg, root)
    ident = {"steps": build.to_dict()["steps"], "sources": build.to_dict()["sources"], "shard_mb": build.shard_mb}
    done = _read_json(rdir / "build.json")
    if done and done.get("digest") == _digest(ident) and (root / "catalog.duckdb").exists():
        log(f"[{recipe.name}] build: done earlier ({done['docs_out']} documents kept)")
        return done
    root.mkdir(parents=True, exist_ok=True)
    seed_from(root, earlier)
    before = {p.name for p in (root / "work").iterdir()} if (root / "work").exists() else set()
    log(f"[{recipe.name}] build: {' -> '.join(s.name for s in build.steps)}")
    t0 = time.perf_counter()
    try:
        result = run_build(build, command=f"python -m training.ablate (recipe {recipe.name})", progress=False)
    except Exception as exc:  # recorded in the recipe's catalog by run_build
        raise AblationError(f"recipe {recipe.name}: build failed: {type(exc).__name__}: {exc}") from None
    stages = [
        {
            "stage": s.name,
            "docs_in": s.stats.docs_in,
            "docs_out": s.stats.docs_out,
            "reused": s.directory.name in before,
        }
        for s in result.stages
    ]
    info = {
        "digest": _digest(ident),
        "docs_in": result.docs_in,
        "docs_out": result.docs_out,
        "docs_rejected": result.docs_rejected,
        "train_docs": _split_docs(root, "train"),
        "stages": stages,
        "seconds": time.perf_counter() - t0,
    }
    _write_json(info, rdir / "build.json")
    reused = [s["stage"] for s in stages if s["reused"]]
    log(
        f"[{recipe.name}] build: {result.docs_out}/{result.docs_in} documents kept in {info['seconds']:.0f} s"
        + (f" (reused stages: {', '.join(reused)})" if reused else "")
    )
    return info


def _split_docs(root: Path, split: str) -> int:
    from training.data import NoShardsError, select_shards

    try:
        return sum(r.rows for r in select_shards(root, split=split))
    except NoShardsError:
        return 0


def train_tokens(root: Path, model_dir: Path) -> int:
    """Tokens of the recipe's train split under the proxy's tokenizer (from the token cache)."""
    from transformers import AutoTokenizer

    from training.data import DocumentTokenizer, select_shards, tokenized_shard

    doc_tok = DocumentTokenizer(AutoTokenizer.from_pretrained(model_dir))
    return sum(len(tokenized_shard(r, doc_tok, root / "state" / "tokens")[0]) for r in select_shards(root))


# -- training and evaluation -------------------------------------------------------------------
def check_proxy(cfg: AblationConfig) -> None:
    """The proxies' training config checked as `training.run` checks it, before the first build
    (a bad model directory or ``proxy.train`` key would otherwise surface after building)."""
    from training.config import TrainConfig, TrainingError

    raw = cfg.proxy.train_config(Path("data"), cfg.output_dir / "recipes", cfg.proxy.seeds[0])
    unknown = sorted(set(raw) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise AblationError(f"proxy.train: unknown training.run key(s) {unknown}")
    try:
        TrainConfig(**raw).validate(dict.fromkeys(raw, "proxy"))
    except TrainingError as exc:
        raise AblationError(str(exc)) from None


def train_proxy(cfg: AblationConfig, recipe: Recipe, root: Path, seed: int, log: Any) -> tuple[Path, dict[str, Any]]:
    out = cfg.output_dir / "recipes" / recipe.name / f"seed{seed}"
    train_cfg = cfg.proxy.train_config(root, out, seed)
    # a proxy is made from its training spec and its recipe's build: a rebuilt recipe retrains
    build = (_read_json(cfg.output_dir / "recipes" / recipe.name / "build.json") or {}).get("digest")
    digest = _digest({"train": {k: v for k, v in train_cfg.items() if k != "output_dir"}, "build": build})
    summary = _read_json(out / "summary.json")
    marker = _read_json(out / "proxy.json")
    if summary and marker and marker.get("digest") == digest:
        log(f"[{recipe.name} seed {seed}] train: done earlier (last loss {summary.get('last_loss'):.4f})")
        return out, summary
    if marker and marker.get("digest") != digest:  # the spec changed: start over, not resume
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_json({"digest": digest}, out / "proxy.json")
    (out / "train.yaml").write_text(yaml.safe_dump(train_cfg, allow_unicode=True, sort_keys=False))
    launcher = cfg.proxy.launcher or [sys.executable, "-m"]
    cmd = [*launcher, "training.run", "--config", str(out / "train.yaml")]
    log(f"[{recipe.name} seed {seed}] train: {train_cfg['max_steps']} steps x {cfg.proxy.tokens_per_step} tokens")
    t0 = time.perf_counter()
    with open(out / "train.log", "ab") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_MININTERVAL": "5"})
    if proc.returncode != 0:
        tail = (out / "train.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise AblationError(f"recipe {recipe.name} seed {seed}: training failed ({out / 'train.log'}): {tail[0]}")
    summary = _read_json(out / "summary.json") or {}
    last = summary.get("last_loss", float("nan"))
    log(f"[{recipe.name} seed {seed}] train: last loss {last:.4f} in {time.perf_counter() - t0:.0f} s")
    return out, summary


def eval_proxy(
    cfg: AblationConfig, recipe: Recipe, run_dir: Path, sets: list[Any], contamination: dict[str, Any], log: Any
) -> dict[str, Any]:
    from training.eval import evaluate, load_model, write_results

    digest = _digest([vars(s) for s in cfg.eval])
    done = _read_json(run_dir / "eval.json")
    if done and done.get("eval_digest") == digest:
        return done
    from training.eval import EvalError, EvalOptions

    try:
        lm = load_model(str(run_dir), None)
    except EvalError as exc:
        raise AblationError(f"recipe {recipe.name}: {exc}") from None
    results = evaluate(lm, sets, EvalOptions(progress=False), contamination)
    results["eval_digest"] = digest
    write_results(results, run_dir / "eval.json")
    log(f"[{recipe.name} {run_dir.name}] eval: {_headline(results)}")
    return results


def _headline(results: dict[str, Any]) -> str:
    parts = [f"ppl {k} {v:.2f}" for k, v in results["perplexity"].items()]
    parts += [f"acc_norm {k} {v['acc_norm']:.3f}" for k, v in results["mcq"].items()]
    parts += [f"f1 {k} {v['f1']:.3f}" for k, v in results["qa"].items()]
    return ", ".join(parts)


def metrics_of(results: dict[str, Any], summary: dict[str, Any]) -> dict[str, float]:
    """The flat metrics of one proxy: name -> value (lower is better for ppl/bpb/loss)."""
    out: dict[str, float] = {}
    for name, v in results["perplexity"].items():
        out[f"ppl {name}"] = v
        out[f"bpb {name}"] = results["bits_per_byte"][name]
    for name, v in results["mcq"].items():
        out[f"acc_norm {name}"] = v["acc_norm"]
        out[f"acc {name}"] = v["acc"]
    for name, v in results["qa"].items():
        for k in ("em", "f1", "rouge_l", "f1_char"):
            out[f"{k} {name}"] = v[k]
    if summary.get("last_loss") is not None:
        out["train loss (last)"] = summary["last_loss"]
    return {k: float(v) for k, v in out.items() if v is not None}


def aggregate(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def run_ablation(cfg: AblationConfig, log: Any = print) -> dict[str, Any]:
    from training.eval import check_overlap
    from training.eval_sets import load_sets

    started = time.perf_counter()
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        sets, skipped = load_sets(cfg.eval)
    except EvalSetError as exc:
        raise AblationError(str(exc)) from None
    for note in skipped:
        log(f"eval set skipped: {note}")
    if not sets:
        raise AblationError("no evaluation set is available (all optional sets are missing)")
    for recipe in cfg.recipes:  # every config error before the first build
        recipe_build_config(recipe, cfg, cfg.output_dir / "recipes" / recipe.name / "data")
    check_proxy(cfg)
    rows, earlier = [], []
    for recipe in cfg.recipes:
        root = cfg.output_dir / "recipes" / recipe.name / "data"
        build = build_recipe(recipe, cfg, earlier, log)
        earlier.append(root)
        contamination = {}
        if cfg.overlap:
            contamination = check_overlap(sets, root, 13, 0.7, log=lambda m, r=recipe.name: log(f"[{r}] {m}"))
        seeds = []
        for seed in cfg.proxy.seeds:
            run_dir, summary = train_proxy(cfg, recipe, root, seed, log)
            results = eval_proxy(cfg, recipe, run_dir, sets, contamination, log)
            seeds.append({"seed": seed, "run_dir": str(run_dir), "metrics": metrics_of(results, summary)})
        model_dir = Path(seeds[0]["run_dir"]) / "export"
        names = list(seeds[0]["metrics"])
        rows.append(
            {
                "recipe": recipe.name,
                "docs_kept": build["docs_out"],
                "docs_in": build["docs_in"],
                "train_docs": build["train_docs"],
                "tokens_kept": train_tokens(root, model_dir),
                "stages": build["stages"],
                "contamination": {k: v["contaminated"] for k, v in contamination.items()},
                "seeds": seeds,
                "metrics": {m: aggregate([s["metrics"][m] for s in seeds if m in s["metrics"]]) for m in names},
            }
        )
    report = {
        "config": {
            "base": str(cfg.base),
            "proxy": vars(cfg.proxy),
            "steps": cfg.proxy.steps,
            "tokens_per_proxy": cfg.proxy.steps * cfg.proxy.tokens_per_step,
            "eval": [vars(s) for s in cfg.eval],
            "skipped_eval": skipped,
        },
        "recipes": rows,
        "seconds": time.perf_counter() - started,
    }
    _write_json(report, cfg.output_dir / "ablation.json")
    from training.eval_report import write_ablation_report

    write_ablation_report(report, cfg.output_dir / "ablation.html")
    return report


def format_table(report: dict[str, Any]) -> str:
    """recipe x metric, mean ± std over seeds, with documents and tokens kept."""
    rows = report["recipes"]
    metrics = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    headers = ["recipe", "docs kept", "tokens kept", *metrics]
    body = []
    for r in rows:
        cells = [r["recipe"], f"{r['docs_kept']:,}", f"{r['tokens_kept']:,}"]
        for m in metrics:
            a = r["metrics"].get(m)
            cells.append("-" if a is None else f"{a['mean']:.4g} ± {a['std']:.2g}")
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    seeds = len(report["config"]["proxy"]["seeds"])
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]
    out.append(f"(mean ± std over {seeds} seed(s); {report['config']['tokens_per_proxy']:,} training tokens per proxy)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ablate", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/ablate.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="DOTTED.KEY=VALUE")
    p.add_argument("--output-dir", type=Path, help="overrides output_dir")
    args = p.parse_args(argv)
    try:
        cfg = load_ablation(args.config, args.overrides)
        if args.output_dir:
            cfg.output_dir = args.output_dir
        report = run_ablation(cfg, log=lambda m: print(m, flush=True))
    except AblationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    print(
        f"ablation: {cfg.output_dir / 'ablation.json'}, {cfg.output_dir / 'ablation.html'} ({report['seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
