"""Self-contained HTML pages with inline SVG plots, shared by the corpus and training reports.

Everything a page needs is inside the one file: CSS in a <style> block, plots as inline <svg>
elements rendered by matplotlib, no scripts, fonts or images from anywhere else, so a report
opens offline and can be mailed or archived as is. Every piece of text that comes from data
goes through `esc` (the only way into the page), so a document cannot inject markup. The glyphs
of the page's CJK text are embedded as a font subset (`corpus.cjk_font`), so Chinese renders on
a viewer's machine that has no CJK font.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import numpy as np
from matplotlib.figure import Figure

from corpus.cjk_font import find_cjk_font, font_face_css, font_stack

# Sizes in inches; the page scales the SVG to its column width.
FIG_W = 8.0
FIG_H = 3.2
MAX_LINE_POINTS = 1500  # longer series are thinned before plotting so the SVG stays small

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974"]

STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
    "svg.hashsalt": "corpusforge",  # deterministic element ids
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "figure.dpi": 72,
}

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", @CJK@, sans-serif;
       margin: 0; color: #222; background: #fafafa; }
header { background: #263238; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; color: #cfd8dc; font-size: 13px; }
nav { padding: 8px 32px; background: #eceff1; font-size: 13px; }
nav a { margin-right: 14px; color: #37474f; }
main { max-width: 1100px; margin: 0 auto; padding: 8px 32px 40px 32px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 12px 20px;
          margin: 18px 0; }
h2 { font-size: 18px; margin: 6px 0 10px 0; }
h3 { font-size: 14px; margin: 14px 0 6px 0; }
.plot { margin: 8px 0; }
.plot svg { width: 100%; height: auto; display: block; }
.note { color: #666; font-style: italic; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; word-break: break-word; max-width: 640px; }
details summary { cursor: pointer; color: #37474f; }
.kv td:first-child { font-weight: 600; width: 200px; }
"""


def esc(value: Any) -> str:
    """HTML-escape anything for use in text or an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def anchor(text: str) -> str:
    """A stable id for links within the page."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


# Reports are the only plotting in the processes that import this module, and text, grid and
# colour settings are read when artists are created, so the style is set process-wide once.
matplotlib.rcParams.update(STYLE)


@lru_cache(maxsize=1)
def _plot_fonts() -> None:
    """Put the machine's CJK font (if any) after DejaVu Sans in matplotlib's list: labels are
    measured with real glyphs, and the SVG names the family that the page embeds."""
    font = find_cjk_font()
    if font is None:
        return
    from matplotlib import font_manager

    try:
        font_manager.fontManager.addfont(str(font.path))
    except (OSError, RuntimeError, ValueError):
        return
    rest = [f for f in matplotlib.rcParams["font.sans-serif"] if f not in ("DejaVu Sans", font.family)]
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans", font.family, *rest]


def new_figure(width: float = FIG_W, height: float = FIG_H, ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    """A figure in the shared style (not registered with pyplot, so nothing leaks between plots)."""
    _plot_fonts()
    fig = Figure(figsize=(width, height), dpi=72)
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def svg(fig: Figure, title: str) -> str:
    """Render a figure to an inline <svg> element (no XML prolog, no external references)."""
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.index("<svg")
    body = text[start:]
    body = body.replace("<svg ", f'<svg role="img" aria-label="{esc(title)}" ', 1)
    return f'<div class="plot" data-plot="{esc(title)}">{body}</div>'


def thin(xs: Sequence[float], ys: Sequence[float], limit: int = MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``limit`` evenly spaced points of a line (first and last always kept)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) <= limit:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[idx], y[idx]


def fmt_num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return esc(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, text_cols: Sequence[int] = ()) -> str:
    """An HTML table; numbers right-aligned, ``text_cols`` shown as wrapped preformatted text.

    A cell that is an `Raw` instance is inserted as is (for links built with `esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            if isinstance(v, Raw):
                cells.append(f"<td>{v.html}</td>")
            elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
                cells.append(f'<td class="num">{fmt_num(v)}</td>')
            elif i in text_cols:
                cells.append(f'<td class="text">{esc(v)}</td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True)
class Raw:
    """Markup already escaped by the caller."""

    html: str


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def heading(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> Section:
        self.parts.extend(parts)
        return self

    @property
    def id(self) -> str:
        return anchor(self.title)

    def render(self) -> str:
        return f'<section id="{self.id}"><h2>{esc(self.title)}</h2>{"".join(self.parts)}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: one file, no external resources, no scripts."""
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = f"<nav>{nav}</nav><main>{''.join(s.render() for s in sections)}</main>"
    face, unembedded = font_face_css(title + subtitle + body)
    css = CSS.replace("@CJK@", font_stack(find_cjk_font() if face else None))
    if unembedded:
        subtitle += " · no CJK font found to embed: Chinese shows only where the viewer has one (corpus/cjk_font.py)"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network at all, even if someone later pastes a link into a document.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
        f"<title>{esc(title)}</title><style>{face}{css}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"{body}</body></html>\n"
    )


def bar_labels(ax: Any, bars: Any, values: Sequence[float], fmt: str = "{:,.0f}") -> None:
    for b, v in zip(bars, values, strict=True):
        ax.annotate(
            fmt.format(v),
            (b.get_x() + b.get_width(), b.get_y() + b.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )


__all__ = [
    "Raw",
    "Section",
    "anchor",
    "bar_labels",
    "esc",
    "heading",
    "new_figure",
    "note",
    "page",
    "para",
    "svg",
    "table",
    "thin",
]
