"""Training report: loss, learning rate and eval perplexity curves as one self-contained HTML page.

Reads ``<output_dir>/metrics.jsonl`` as the training stage writes it, one JSON object a line:
``{"kind": "train", "step", "loss", "lr", "grad_norm", "tokens_per_s"}`` (DPO runs add
``reward_accuracy``, ``reward_chosen``, ``reward_rejected``, ``reward_margin``),
``{"kind": "eval", "step", "bucket", "ppl", "loss"}`` (DPO: the loss and rewards on held-out pairs
instead of ``ppl``) and ``{"kind": "eval_set", "step", "set", <metric>: value}`` (evaluators), and writes
``<output_dir>/training_report.html`` next to the TensorBoard logs, in the corpus report's style
(same page and plot helpers, `corpus.html`). Long runs are thinned to a bounded number of
points per curve so the page stays small.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from corpus.html import Section, esc, new_figure, note, page, svg, table, thin
from training.logs import METRICS_FILE

REPORT_FILE = "training_report.html"
TRAIN_CURVES = (
    ("loss", "training loss", False),
    ("lr", "learning rate", False),
    ("grad_norm", "gradient norm", True),
    ("tokens_per_s", "throughput (tokens/s)", False),
)


DPO_CURVES = ("reward_accuracy", "reward_chosen", "reward_rejected", "reward_margin")


class MetricsError(ValueError):
    """metrics.jsonl is missing or malformed; the message names the file and line."""


@dataclass
class Metrics:
    train: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> (step, value)
    eval_ppl: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # bucket -> (step, ppl)
    eval_loss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    eval_dpo: dict[str, dict[str, list[tuple[float, float]]]] = field(
        default_factory=dict
    )  # metric -> bucket -> points
    eval_sets: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)  # set -> (step, metrics)
    lines: int = 0


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_metrics(path: Path) -> Metrics:
    if not path.is_file():
        raise MetricsError(f"{path}: metrics file not found (the training stage writes it)")
    metrics = Metrics()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MetricsError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict) or _number(rec.get("step")) is None:
                raise MetricsError(f"{path}:{lineno}: expected an object with a numeric 'step'")
            step = float(rec["step"])
            metrics.lines += 1
            if rec.get("kind") == "train":
                for key in (*(k for k, _, _ in TRAIN_CURVES), *DPO_CURVES):
                    v = _number(rec.get(key))
                    if v is not None:
                        metrics.train.setdefault(key, []).append((step, v))
            elif rec.get("kind") == "eval":
                bucket = str(rec.get("bucket") if rec.get("bucket") is not None else "all")
                for key, target in (("ppl", metrics.eval_ppl), ("loss", metrics.eval_loss)):
                    v = _number(rec.get(key))
                    if v is not None:
                        target.setdefault(bucket, []).append((step, v))
                for key in DPO_CURVES:
                    v = _number(rec.get(key))
                    if v is not None:
                        metrics.eval_dpo.setdefault(key, {}).setdefault(bucket, []).append((step, v))
            elif rec.get("kind") == "eval_set":
                values = {k: v for k, v in rec.items() if k not in ("kind", "step", "set") and _number(v) is not None}
                metrics.eval_sets.setdefault(str(rec.get("set")), []).append((step, values))
            else:
                raise MetricsError(
                    f"{path}:{lineno}: unknown kind {rec.get('kind')!r} (expected 'train', 'eval' or 'eval_set')"
                )
    return metrics


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average, so a noisy loss curve shows its trend."""
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plain_number(value: float, _pos: int | None = None) -> str:
    """A log-axis tick label as people write numbers ("0.1", "100", "40,000", "1e-5"), never
    matplotlib's mathtext "2.5x10^-1", which reads as a formula in a browser without its fonts."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}".replace("e-0", "e-").replace("e+0", "e")


def log_scale_if_wide(ax: Axes, values: np.ndarray) -> None:
    """Log scale only when the values span a decade or more (a narrower log axis has no powers of
    ten to label, so matplotlib labels minor ticks in mathtext); ticks in plain numbers."""
    positive = values[values > 0]
    if len(positive) and positive.max() >= 10 * positive.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.yaxis.set_minor_formatter(NullFormatter())


def step_axis(ax: Axes) -> None:
    """Steps are integers: no 2.5 ticks on a 6-step run."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")


def train_figure(m: Metrics) -> Figure | None:
    present = [(k, title, log) for k, title, log in TRAIN_CURVES if m.train.get(k)]
    if not present:
        return None
    nrows = math.ceil(len(present) / 2)
    fig, axes = new_figure(height=2.6 * nrows + 0.3, ncols=2, nrows=nrows)
    flat = np.atleast_1d(axes).ravel()
    for ax, (key, title, log) in zip(flat, present, strict=False):
        steps, values = (np.array(v) for v in zip(*sorted(m.train[key]), strict=True))
        x, y = thin(steps, values)
        smoothed = key == "loss" and len(values) >= 20
        # the raw loss is the curve people read: solid, and only lighter behind its moving average
        width = (1.0 if smoothed else 1.6) if key == "loss" else 1.1
        ax.plot(x, y, linewidth=width, alpha=0.6 if smoothed else 1.0, label=key)
        if smoothed:
            window = max(5, len(values) // 50)
            xs, ys = thin(steps, _smooth(values, window))
            ax.plot(xs, ys, linewidth=2.0, label=f"moving average ({window} steps)")
            ax.legend(fontsize=7, loc="upper right")
        if log:
            log_scale_if_wide(ax, values)
        ax.set_title(title)
        step_axis(ax)
    for ax in flat[len(present) :]:
        ax.set_visible(False)
    return fig


def _train_section(m: Metrics) -> Section:
    sec = Section("Training curves")
    fig = train_figure(m)
    if fig is None:
        return sec.add(note("No training steps were logged."))
    sec.add(svg(fig, "training curves"))
    rows = []
    for key, title, _ in TRAIN_CURVES:
        if m.train.get(key):
            vals = np.array([v for _, v in m.train[key]])
            rows.append((title, len(vals), float(vals[0]), float(vals[-1]), float(vals.min()), float(vals.max())))
    return sec.add(table(["metric", "points", "first", "last", "min", "max"], rows))


def eval_figure(m: Metrics) -> Figure | None:
    curves = [(name, data) for name, data in (("perplexity", m.eval_ppl), ("eval loss", m.eval_loss)) if data]
    if not curves:
        return None
    fig, axes = new_figure(height=3.0, ncols=len(curves))
    for ax, (name, data) in zip(np.atleast_1d(axes).ravel(), curves, strict=True):
        for bucket in sorted(data):
            steps, values = (np.array(v) for v in zip(*sorted(data[bucket]), strict=True))
            x, y = thin(steps, values)
            ax.plot(x, y, marker="o" if len(x) <= 50 else None, markersize=3, linewidth=1.4, label=bucket)
        if name == "perplexity":
            log_scale_if_wide(ax, np.array([v for series in data.values() for _, v in series]))
        ax.set_title(f"{name} per bucket")
        step_axis(ax)
        ax.legend(fontsize=7, loc="upper right", title="bucket", title_fontsize=7)
    return fig


def _eval_section(m: Metrics) -> Section:
    sec = Section("Evaluation")
    fig = eval_figure(m)
    if fig is None:
        return sec.add(note("No evaluation was logged (no 'eval' lines in metrics.jsonl)."))
    sec.add(svg(fig, "evaluation perplexity per bucket"))
    rows = []
    for bucket in sorted(m.eval_ppl):
        series = sorted(m.eval_ppl[bucket])
        best = min(series, key=lambda p: p[1])
        rows.append((bucket, len(series), series[0][1], series[-1][1], best[1], int(best[0])))
    if rows:
        sec.add(table(["bucket", "evaluations", "first ppl", "last ppl", "best ppl", "best at step"], rows))
    return sec


def preference_figure(m: Metrics) -> Figure | None:
    """DPO runs: reward accuracy (train and held-out per bucket), the chosen and rejected rewards,
    and their margin, per step."""
    if not m.train.get("reward_accuracy"):
        return None
    fig, axes = new_figure(height=2.9, ncols=3)
    panels = (
        ("reward accuracy", ("reward_accuracy",), "reward_accuracy"),
        ("rewards (beta x log-ratio to the reference)", ("reward_chosen", "reward_rejected"), None),
        ("reward margin (chosen - rejected)", ("reward_margin",), "reward_margin"),
    )
    for ax, (title, keys, held_out) in zip(np.atleast_1d(axes).ravel(), panels, strict=True):
        for key in keys:
            steps, values = (np.array(v) for v in zip(*sorted(m.train.get(key, [])), strict=True))
            x, y = thin(steps, values)
            ax.plot(x, y, linewidth=1.4, label=f"train {key.removeprefix('reward_')}" if len(keys) > 1 else "train")
        for bucket, points in sorted(m.eval_dpo.get(held_out, {}).items()) if held_out else []:
            steps, values = (np.array(v) for v in zip(*sorted(points), strict=True))
            ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, linestyle="--", label=f"held-out {bucket}")
        if held_out == "reward_accuracy":
            ax.set_ylim(-0.03, 1.03)
            ax.axhline(0.5, color="#999", linewidth=0.8, linestyle=":")
        ax.set_title(title, fontsize=9)
        step_axis(ax)
        ax.legend(fontsize=7, loc="best")
    return fig


def _preference_section(m: Metrics) -> Section | None:
    fig = preference_figure(m)
    if fig is None:
        return None
    sec = Section("Preference optimisation (DPO)").add(svg(fig, "preference rewards"))
    rows = []
    for key in DPO_CURVES:
        vals = np.array([v for _, v in m.train.get(key, [])])
        if len(vals):
            rows.append(
                (f"train {key}", len(vals), float(vals[0]), float(vals[-1]), float(vals.min()), float(vals.max()))
            )
    for key, buckets in m.eval_dpo.items():
        for bucket, points in sorted(buckets.items()):
            vals = np.array([v for _, v in sorted(points)])
            rows.append((f"held-out {key} ({bucket})", len(vals), float(vals[0]), float(vals[-1]),
                         float(vals.min()), float(vals.max())))  # fmt: skip
    note_text = (
        "Rewards are beta x (log p_policy - log p_reference) of each answer; accuracy is the share of pairs "
        "whose chosen answer has the higher reward (0 at step 0, where policy and reference are the same model)."
    )
    return sec.add(table(["metric", "points", "first", "last", "min", "max"], rows)).add(note(note_text))


def _eval_sets_section(m: Metrics) -> Section | None:
    if not m.eval_sets:
        return None
    sec = Section("Evaluation sets")
    for name, points in sorted(m.eval_sets.items()):
        keys = sorted({k for _, values in points for k in values})
        rows = [(int(step), *(values.get(k) for k in keys)) for step, values in sorted(points, key=lambda p: p[0])]
        sec.add(f"<h3>{esc(name)}</h3>").add(table(["step", *keys], rows))
    return sec


def render_training_report(output_dir: Path) -> str:
    m = read_metrics(output_dir / METRICS_FILE)
    overview = Section("Run").add(
        table(
            ["output directory", "metrics lines", "train points", "eval buckets"],
            [
                (
                    str(output_dir),
                    m.lines,
                    len(m.train.get("loss", [])),
                    ", ".join(sorted({*m.eval_ppl, *m.eval_loss})) or "-",
                )
            ],
        )
    )
    tb = sorted(p.name for p in output_dir.glob("**/events.out.tfevents.*"))
    if tb:
        overview.add(
            note(f"TensorBoard logs next to this file: {len(tb)} event file(s); run tensorboard --logdir {output_dir}")
        )
    sections = [overview, _train_section(m), _preference_section(m), _eval_section(m), _eval_sets_section(m)]
    return page("corpusforge training report", str(output_dir), [s for s in sections if s is not None])


def write_training_report(output_dir: Path) -> Path:
    """Write ``<output_dir>/training_report.html`` from ``<output_dir>/metrics.jsonl``; returns its path."""
    output_dir = Path(output_dir)
    target = output_dir / REPORT_FILE
    html_text = render_training_report(output_dir)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.report", description=__doc__.splitlines()[0])
    p.add_argument("output_dir", type=Path, help="training output directory (holds metrics.jsonl)")
    args = p.parse_args(argv)
    try:
        print(f"report: {write_training_report(args.output_dir)}")
    except MetricsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
