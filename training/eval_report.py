"""HTML pages for evaluation results: several `training.eval` results side by side, and the ablation.

    python -m training.eval_report base.json trained.json --out compare.html

One self-contained page in the corpus report's style (`corpus.html`): a table per metric family
(perplexity, bits per byte, multiple choice, generation) with one column per results file, bar
charts of the same numbers, contamination warnings, and the saved generations for reading.
`write_ablation_report` renders ``ablation.json`` (recipe x metric with error bars over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from corpus.html import Section, esc, new_figure, note, page, svg, table

FAMILIES = (
    ("perplexity", "Perplexity (lower is better)", None),
    ("bits_per_byte", "Bits per byte (lower is better)", None),
    ("mcq", "Multiple choice: acc_norm (higher is better)", "acc_norm"),
    ("qa", "Generation: token F1 on words (higher is better)", "f1"),
)


class ReportInputError(ValueError):
    """A results file is missing or is not training.eval output."""


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportInputError(f"{path}: results file not found") from None
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict) or "perplexity" not in data or "mcq" not in data:
        raise ReportInputError(f"{path}: not a training.eval results file (no 'perplexity'/'mcq' keys)")
    return data


def _value(results: dict[str, Any], family: str, name: str, key: str | None) -> float | None:
    v = results.get(family, {}).get(name)
    if key is not None and isinstance(v, dict):
        v = v.get(key)
    return float(v) if isinstance(v, int | float) else None


def _bars(
    labels: list[str], series: dict[str, list[float | None]], title: str, errors: dict[str, list[float]] | None = None
) -> str:
    """Grouped bars: one group per label (set or metric), one bar per series (results file or recipe)."""
    fig, ax = new_figure(height=3.0)
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ys = [np.nan if v is None else v for v in values]
        err = errors.get(name) if errors else None
        ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=name, yerr=err, capsize=3 if err else 0)
    ax.set_xticks(x, labels, fontsize=7, rotation=15 if len(labels) > 3 else 0)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return svg(fig, title)


def render_comparison(results: list[dict[str, Any]], labels: list[str]) -> str:
    sections = [
        Section("Runs").add(
            table(
                ["label", "model", "adapter", "contaminated", "seconds"],
                [
                    (
                        lab,
                        r.get("model"),
                        r.get("adapter") or "-",
                        "YES" if r.get("contaminated") else "no",
                        r.get("seconds"),
                    )
                    for lab, r in zip(labels, results, strict=True)
                ],
            )
        )
    ]
    for family, title, key in FAMILIES:
        names = list(dict.fromkeys(n for r in results for n in r.get(family, {})))
        if not names:
            continue
        sec = Section(title)
        rows = [(n, *(_value(r, family, n, key) for r in results)) for n in names]
        sec.add(table(["set", *labels], rows))
        series = {lab: [_value(r, family, n, key) for n in names] for lab, r in zip(labels, results, strict=True)}
        sec.add(_bars(names, series, title))
        sections.append(sec)
    warn = Section("Overlap with training data")
    flagged = [
        (lab, name, c.get("overlapping"), c.get("contaminated"), c.get("n"), c.get("train_root"))
        for lab, r in zip(labels, results, strict=True)
        for name, c in r.get("contamination", {}).items()
    ]
    if flagged:
        warn.add(
            table(["run", "set", "items sharing an n-gram", "contaminated items", "items", "checked against"], flagged)
        )
    else:
        warn.add(note("No overlap check was recorded in these results."))
    sections.append(warn)
    samples = Section("Saved generations and answers")
    for lab, r in zip(labels, results, strict=True):
        for name, items in r.get("samples", {}).items():
            if items and ("generated" in items[0] or "picked" in items[0]):
                cols = list(items[0])
                samples.add(f"<h3>{esc(lab)}: {esc(name)}</h3>")
                samples.add(table(cols, [[it.get(c) for c in cols] for it in items], text_cols=range(len(cols))))
    sections.append(samples)
    return page("corpusforge evaluation", " vs ".join(labels), sections)


def write_comparison(paths: list[Path], out: Path) -> Path:
    results = [read_results(p) for p in paths]
    labels = [p.parent.name + "/" + p.stem if sum(q.stem == p.stem for q in paths) > 1 else p.stem for p in paths]
    out.write_text(render_comparison(results, labels), encoding="utf-8")
    return out


def render_ablation(report: dict[str, Any]) -> str:
    rows = report["recipes"]
    metrics = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    cfg = report["config"]
    overview = Section("Ablation").add(
        table(
            ["recipes", "seeds", "training tokens per proxy", "optimizer steps", "seconds"],
            [(len(rows), len(cfg["proxy"]["seeds"]), cfg["tokens_per_proxy"], cfg["steps"], report.get("seconds"))],
        )
    )
    if cfg.get("skipped_eval"):
        overview.add(note("Skipped evaluation sets (missing files): " + "; ".join(cfg["skipped_eval"])))
    headers = ["recipe", "docs kept", "train docs", "tokens kept", *metrics]
    body = [
        [
            r["recipe"],
            r["docs_kept"],
            r["train_docs"],
            r["tokens_kept"],
            *(
                f"{r['metrics'][m]['mean']:.4g} ± {r['metrics'][m]['std']:.2g}" if m in r["metrics"] else "-"
                for m in metrics
            ),
        ]
        for r in rows
    ]
    overview.add(table(headers, body))
    plots = Section("Metrics per recipe (mean, error bar = std over seeds)")
    names = [r["recipe"] for r in rows]
    for m in metrics:
        fig, ax = new_figure(height=2.6)
        means = [r["metrics"].get(m, {}).get("mean", np.nan) for r in rows]
        stds = [r["metrics"].get(m, {}).get("std", 0.0) for r in rows]
        ax.bar(names, means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(names))])
        for i, r in enumerate(rows):  # every seed as a dot
            ys = [s["metrics"][m] for s in r["seeds"] if m in s["metrics"]]
            ax.plot([i] * len(ys), ys, "k.", markersize=4)
        ax.set_title(m)
        plots.add(svg(fig, m))
    kept = Section("What each recipe kept")
    fig, axes = new_figure(height=2.6, ncols=2)
    axes[0].bar(names, [r["docs_kept"] for r in rows])
    axes[0].set_title("documents kept")
    axes[1].bar(names, [r["tokens_kept"] for r in rows])
    axes[1].set_title("train tokens kept")
    kept.add(svg(fig, "kept"))
    kept.add(
        table(
            ["recipe", "stages (docs in -> out; reused from an earlier recipe)"],
            [
                (
                    r["recipe"],
                    " · ".join(
                        f"{s['stage']} {s['docs_in']}->{s['docs_out']}{' (reused)' if s['reused'] else ''}"
                        for s in r["stages"]
                    ),
                )
                for r in rows
            ],
            text_cols=[1],
        )
    )
    contam = [(r["recipe"], k, v) for r in rows for k, v in r.get("contamination", {}).items()]
    if contam:
        kept.add(
            table(["recipe", "eval set", "contaminated items (>= 70% of 13-grams in the recipe's train split)"], contam)
        )
    return page(
        "corpusforge data ablation",
        f"{len(rows)} recipes x {len(cfg['proxy']['seeds'])} seeds",
        [overview, plots, kept],
    )


def write_ablation_report(report: dict[str, Any], out: Path) -> Path:
    out.write_text(render_ablation(report), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.eval_report", description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="training.eval --out files")
    p.add_argument("--out", type=Path, default=Path("eval_compare.html"))
    args = p.parse_args(argv)
    try:
        print(f"report: {write_comparison(args.results, args.out)}")
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
