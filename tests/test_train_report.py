"""The training report's plots read right: plain tick numbers, integer steps, a solid loss line;
checked on the figures and in headless Chromium."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from report_browser import find_binaries, load_page
from report_corpus import write_metrics

from training.report import eval_figure, plain_number, read_metrics, train_figure, write_training_report

MATHTEXT = re.compile(r"[$×^]|\\times|10\^|\u2212")  # mathtext, a times sign, a power, a unicode minus


def short_run(directory: Path, steps: int = 6, grad: tuple[float, float] = (0.21, 0.26)) -> Path:
    """metrics.jsonl of a few-step run: the case whose plots misled (fractional steps, faint loss,
    '2.35x10^-1' ticks on a narrow log axis)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(1, steps + 1):
        g = grad[0] + (grad[1] - grad[0]) * (s - 1) / max(1, steps - 1)
        rows.append(
            {"kind": "train", "step": s, "loss": 10.8 - 0.3 * s, "lr": 3e-3, "grad_norm": g, "tokens_per_s": 2e3}
        )
    for s in (0, steps):
        for b in ("0", "1"):
            loss = 10.8 - 0.2 * s + 0.1 * int(b)
            rows.append({"kind": "eval", "step": s, "bucket": b, "loss": loss, "ppl": math.exp(loss)})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def _labels(fig) -> list[tuple[object, list[str], list[float]]]:
    FigureCanvasAgg(fig).draw()
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
        lo, hi = ax.get_xlim()
        xs = [float(x) for x in ax.get_xticks() if lo <= x <= hi]
        out.append((ax, texts, xs))
    return out


@pytest.mark.parametrize("grad", [(0.21, 0.26), (0.03, 2.0)], ids=["narrow", "two-decades"])
def test_ticks_are_plain_numbers_on_integer_steps(tmp_path: Path, grad: tuple[float, float]) -> None:
    m = read_metrics(short_run(tmp_path, steps=3, grad=grad) / "metrics.jsonl")
    for fig in (train_figure(m), eval_figure(m)):
        for ax, texts, xs in _labels(fig):
            assert texts and not any(MATHTEXT.search(t) for t in texts), (ax.get_title(), texts)
            assert xs and all(x == int(x) for x in xs), (ax.get_title(), xs)
    axes = {ax.get_title(): ax for ax in train_figure(m).axes}
    # a log axis only where the values span a decade: none on a narrow range, powers of ten on a wide one
    assert axes["gradient norm"].get_yscale() == ("log" if grad[1] >= 10 * grad[0] else "linear")


def test_plain_number_labels() -> None:
    assert [plain_number(v) for v in (0.235, 0.1, 1.0, 10.0, 100.0, 40000.0, 3e-5)] == [
        "0.235", "0.1", "1", "10", "100", "40,000", "3e-5",
    ]  # fmt: skip


def test_the_loss_line_is_solid_and_stays_visible_behind_its_average(tmp_path: Path) -> None:
    short = train_figure(read_metrics(short_run(tmp_path / "short") / "metrics.jsonl"))
    (line,) = next(ax for ax in short.axes if ax.get_title() == "training loss").get_lines()
    assert (line.get_alpha() or 1.0) == 1.0 and line.get_linewidth() >= 1.5
    long = train_figure(read_metrics(write_metrics(tmp_path / "long") / "metrics.jsonl"))
    raw, average = next(ax for ax in long.axes if ax.get_title() == "training loss").get_lines()
    assert raw.get_alpha() >= 0.5 and average.get_linewidth() > raw.get_linewidth()
    assert np.isfinite(average.get_ydata()).all()


def test_short_and_long_reports_render_in_chromium(tmp_path: Path) -> None:
    """Screenshots of both (kept when CORPUSFORGE_SCREENSHOTS names a directory, for a person to look at)."""
    from test_report_browser import keep_screenshot

    assert find_binaries() is not None, "headless Chromium is required: apt-get install chromium chromium-driver"

    for name, directory in (("short", short_run(tmp_path / "short")), ("long", write_metrics(tmp_path / "long"))):
        html = write_training_report(directory)
        shot = tmp_path / f"training_report_{name}.png"
        page = load_page(html, shot)
        keep_screenshot(shot)
        assert page.ready_state == "complete" and page.console_errors == [] and page.requests == []
        assert len(page.plots) == 2 and all(p["width"] > 100 and p["height"] > 50 for p in page.plots)
        text = html.read_text(encoding="utf-8")
        assert "\\times" not in text and "10^" not in text
