"""`python -m corpus.report`: one self-contained HTML page that shows what a build made.

Everything comes from the DuckDB catalog: the latest successful build's step stats, the
``documents`` and ``rejects`` views, and the side tables steps leave (``dedup_clusters``,
``pii_findings``, ``quality_signals``). Aggregations run in SQL (histograms are binned by DuckDB,
so a large corpus never comes into Python whole); distributions of per-document values use a
fixed-seed reservoir sample. A section whose step did not run says so instead of failing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from corpus.audit import AuditContext, AuditError, open_catalog
from corpus.catalog import Catalog, StepSettings
from corpus.classifier_report import section_classifier
from corpus.html import Raw, Section, bar_labels, esc, heading, new_figure, note, page, para, svg, table
from corpus.quality_report import section_quality_decisions
from corpus.store import CorpusLayout

SAMPLE_SEED = 42
SAMPLE_VALUES = 50_000  # per-document values drawn for histograms of signals
SAMPLES_PER_BUCKET = 5
SAMPLE_TEXT_CHARS = 600
TOP_CLUSTERS = 10
CLUSTER_EXAMPLES = 3
HIST_BINS = 40
MAX_SIGNAL_PANELS = 12
NOT_SIGNALS = {"doc_id", "kept", "quality_score"}  # columns of quality_signals that are not signals
# Token estimate without loading a tokenizer: about 4 characters per token for alphabetic
# scripts, about one token per CJK character (BPE vocabularies of small models).
CJK_CLASS = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
CHARS_PER_TOKEN = 4.0


class ReportError(RuntimeError):
    """The report cannot be made (no catalog, no successful build); the message says why."""


@dataclass
class ReportContext:
    """The catalog connection plus what every section needs to know about the latest build."""

    db: AuditContext
    run: dict[str, Any]
    config: dict[str, Any]
    settings: list[StepSettings] = field(default_factory=list)  # the build's steps as they ran

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        return self.db.conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, list(params)).fetchall()

    def columns(self, relation: str) -> dict[str, str]:
        """Column name -> DuckDB type of a view or table."""
        return {r[0]: r[1] for r in self.rows(f"DESCRIBE {relation}")}

    def thresholds(self, measure: str) -> list[tuple[str, float]]:
        """The thresholds this build applied to ``measure`` (a quality signal, ``quality_score``,
        ``characters``), as its steps recorded them (``step_settings``): only the step that applies
        a rule contributes, so ``minhash_dedup.threshold`` (a Jaccard similarity) or
        ``pii_redact.min_score`` (an NER confidence) are never drawn on a quality signal."""
        return [(label, value) for s in self.settings for m, label, value in s.thresholds if m == measure]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mb(n: float | None) -> float:
    return (n or 0) / 1e6


def _in_view(value: float, lo: float, hi: float, log_x: bool) -> bool:
    """Whether a threshold is close enough to the data ``[lo, hi]`` to draw without squashing it:
    within four times the data's span (a factor of 10 on a log axis)."""
    if log_x:
        return value > 0 and lo / 10 <= value <= hi * 10
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - 4 * span <= value <= hi + 4 * span


def _draw_thresholds(
    ax: Any, thresholds: list[tuple[str, float]], lo: float, hi: float, *, log_x: bool = False
) -> None:
    """Dashed lines for the thresholds near the data ``[lo, hi]``; the others get a legend entry
    marked off scale, so a far threshold (gopher_long_doc = 100000) cannot squash the data."""
    for label, value in thresholds:
        if _in_view(value, lo, hi, log_x):
            label = f"{label} = {_num(value)}"
            ax.axvline(value, color="#C44E52", linestyle="--", linewidth=1.2, label=label, zorder=5)
    for label, value in thresholds:
        if not _in_view(value, lo, hi, log_x):  # an invisible entry, so the legend still names it
            ax.plot([], [], linestyle="none", label=f"{label} = {_num(value)} (off scale)")


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:g}"


def _legend_below(ax: Any, handles: list[Any] | None = None, labels: list[str] | None = None, ncols: int = 1) -> None:
    """The legend under the axes' tick labels (and x label): outside the data, inside the figure
    (tight_layout makes room for it). Call after the x label is set."""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    gap_pt = 34 if ax.get_xlabel() else 20  # tick labels, and the x label under them
    ax.legend(
        handles,
        labels,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        borderaxespad=gap_pt / 7,
        ncols=ncols,
        frameon=False,
        handlelength=1.6,
    )


# -- sections -----------------------------------------------------------------------------------
def section_overview(ctx: ReportContext) -> Section:
    run = ctx.run
    shards = ctx.rows("SELECT stage, count(*), sum(rows), sum(bytes) FROM shards GROUP BY stage ORDER BY stage")
    kv = [
        ("corpus root", str(ctx.db.layout.root)),
        ("catalog", str(ctx.db.layout.catalog)),
        ("build run", run["run_id"]),
        ("started / took", f"{run['started_at']} / {run['seconds'] or 0:.1f} s"),
        ("documents in", run["docs_in"]),
        ("documents in final shards", run["docs_out"]),
        ("documents rejected", run["docs_rejected"]),
        *[(f"{stage} shards", f"{n} files, {rows:,} rows, {_mb(b):.2f} MB") for stage, n, rows, b in shards],
    ]
    rows = "".join(
        f'<tr><td>{esc(k)}</td><td class="num">{v:,}</td></tr>'
        if isinstance(v, int)
        else f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>"
        for k, v in kv
    )
    steps = [(st.step_index, st.step, _changed_params(st.changed)) for st in ctx.settings]
    return Section("Build").add(
        f'<table class="kv">{rows}</table>',
        heading("Steps"),
        table(["#", "step", "parameters set by the config (the rest are defaults)"], steps) if steps else note("none"),
    )


def _changed_params(changed: dict[str, Any]) -> str:
    """``key=value`` for the parameters the config set to other than the defaults, so the table
    shows what the config chose, not a wall of JSON."""
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(changed.items())) or "(defaults)"


def section_funnel(ctx: ReportContext) -> Section:
    sec = Section("Funnel")
    stats = ctx.rows(
        "SELECT step_index, step, docs_in, docs_out, bytes_in, bytes_out, seconds, drops FROM step_stats "
        "WHERE run_id = ? ORDER BY step_index",
        [ctx.run["run_id"]],
    )
    if not stats:
        return sec.add(note("No step statistics were recorded for this build."))
    labels = [f"{i}:{s}" for i, s, *_ in stats]
    y = np.arange(len(stats))[::-1]
    fig, (ax_docs, ax_bytes) = new_figure(height=0.45 * len(stats) + 1.2, ncols=2)
    for ax, (i_in, i_out), unit, scale in (
        (ax_docs, (2, 3), "documents", 1.0),
        (ax_bytes, (4, 5), "text MB", 1e-6),
    ):
        ins = [r[i_in] * scale for r in stats]
        outs = [r[i_out] * scale for r in stats]
        ax.barh(y, ins, color="#d0d7de", label="in")
        bars = ax.barh(y, outs, color="#4C72B0", height=0.55, label="out")
        bar_labels(ax, bars, outs, "{:,.0f}" if scale == 1.0 else "{:,.2f}")
        ax.set_yticks(y, labels)
        ax.set_xlabel(unit)
        ax.set_xlim(0, max([*ins, 1e-09]) * 1.18)
    ax_docs.set_title("documents per step: in (grey), out (blue)")
    ax_bytes.set_title("text MB per step: in (grey), out (blue)")
    sec.add(svg(fig, "funnel: documents and bytes per step"))

    reasons = sorted({reason for r in stats for reason in (r[7] or {})})
    if reasons:
        dropping = [r for r in stats if r[7]]
        fig, ax = new_figure(height=0.4 * len(dropping) + 1.3)
        left = np.zeros(len(dropping))
        yy = np.arange(len(dropping))[::-1]
        for reason in reasons:
            vals = np.array([float((r[7] or {}).get(reason, 0)) for r in dropping])
            ax.barh(yy, vals, left=left, label=reason)
            left += vals
        ax.set_yticks(yy, [f"{r[0]}:{r[1]}" for r in dropping])
        ax.set_xlabel("documents dropped")
        ax.set_title("drops by reason")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars
        sec.add(svg(fig, "drops by reason per step"))
    sec.add(
        table(
            ["step", "docs in", "docs out", "dropped", "% dropped", "MB in", "MB out", "seconds", "drop reasons"],
            [
                (
                    f"{i}:{s}",
                    di,
                    do,
                    di - do,
                    round(100.0 * (di - do) / di, 2) if di else 0.0,
                    round(_mb(bi), 3),
                    round(_mb(bo), 3),
                    round(sec_, 2),
                    ", ".join(f"{k}={v:,}" for k, v in (drops or {}).items()) or "-",
                )
                for i, s, di, do, bi, bo, sec_, drops in stats
            ],
        )
    )
    examples = ctx.rows(
        "SELECT step, reason, count(*) AS n, arg_min(left(text, ?), doc_id), min(doc_id) FROM rejects "
        "GROUP BY step, reason ORDER BY n DESC, step, reason",
        [SAMPLE_TEXT_CHARS // 2],
    )
    if examples:
        sec.add(heading("What each reason removed (one example each)"))
        sec.add(table(["step", "reason", "documents", "example text", "example doc_id"], examples, text_cols=(3,)))
    return sec


def _binned_lengths(ctx: ReportContext, group: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """log10(chars) histograms per group, binned in SQL (20 bins per decade)."""
    rows = ctx.rows(
        f"SELECT coalesce({group}::VARCHAR, 'unknown') AS g, floor(log10(greatest(length(text), 1)) * 20) AS b, "
        f"count(*) FROM documents GROUP BY ALL ORDER BY g, b"
    )
    out: dict[str, tuple[list[float], list[int]]] = {}
    for g, b, n in rows:
        xs, ns = out.setdefault(g, ([], []))
        xs.append(10 ** (b / 20))
        ns.append(n)
    return {g: (np.array(x), np.array(n)) for g, (x, n) in out.items()}


def section_lengths(ctx: ReportContext) -> Section:
    sec = Section("Document lengths")
    total = ctx.rows("SELECT count(*) FROM documents")[0][0]
    if not total:
        return sec.add(note("The final shards hold no documents."))
    limits = ctx.thresholds("characters")
    lo, hi = (float(v) for v in ctx.rows("SELECT min(length(text)), max(length(text)) FROM documents")[0])
    fig, axes = new_figure(height=3.0, ncols=2)
    for ax, group in zip(axes, ("source", "lang"), strict=True):
        for g, (x, n) in sorted(_binned_lengths(ctx, group).items()):
            ax.step(x, n, where="post", label=g, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_xlabel("characters per document (log)")
        ax.set_ylabel("documents")
        ax.set_title(f"length by {group}")
        _draw_thresholds(ax, limits, lo, hi, log_x=True)
        _legend_below(ax, ncols=2)
    sec.add(svg(fig, "document length distributions by source and language"))
    stats = ctx.rows(
        "SELECT source, coalesce(lang, 'unknown'), count(*), median(length(text))::BIGINT, "
        "quantile_cont(length(text), 0.9)::BIGINT, max(length(text)), sum(strlen(text)) "
        "FROM documents GROUP BY ALL ORDER BY 3 DESC"
    )
    sec.add(
        table(
            ["source", "lang", "documents", "median chars", "p90 chars", "max chars", "MB"],
            [(*r[:6], round(_mb(r[6]), 3)) for r in stats],
        )
    )
    if limits:
        sec.add(
            note(
                "Dashed lines: length_filter bounds (drawn when near the data, else named off scale); "
                "documents outside them are in rejects, not plotted."
            )
        )
    return sec


def section_languages(ctx: ReportContext) -> Section:
    sec = Section("Language mix")
    rows = ctx.rows(
        "SELECT coalesce(lang, 'unknown') AS lang, count(*) AS n, sum(strlen(text)) AS bytes "
        "FROM documents GROUP BY 1 ORDER BY n DESC, lang"
    )
    if not rows:
        return sec.add(note("The final shards hold no documents."))
    fig, (ax_n, ax_b) = new_figure(height=0.35 * len(rows) + 1.3, ncols=2)
    y = np.arange(len(rows))[::-1]
    for ax, idx, title, fmt, scale in ((ax_n, 1, "documents", "{:,.0f}", 1.0), (ax_b, 2, "text MB", "{:,.2f}", 1e-6)):
        vals = [r[idx] * scale for r in rows]
        bars = ax.barh(y, vals, color=[f"C{i % 9}" for i in range(len(rows))])
        bar_labels(ax, bars, vals, fmt)
        ax.set_yticks(y, [r[0] for r in rows])
        ax.set_xlim(0, max(vals) * 1.2 or 1)
        ax.set_title(f"{title} per language")
    sec.add(svg(fig, "language mix"))
    if not ctx.rows("SELECT count(*) FROM documents WHERE lang IS NOT NULL")[0][0]:
        sec.add(note("No document has a language: no language identification step ran."))
    split = ctx.rows(
        "SELECT coalesce(lang, 'unknown'), source, split::VARCHAR, count(*) FROM documents GROUP BY ALL ORDER BY ALL"
    )
    sec.add(table(["lang", "source", "split", "documents"], split))
    return sec


def _finite(groups: dict[str, np.ndarray]) -> np.ndarray:
    values = [v[np.isfinite(v)] for v in groups.values()]
    return np.concatenate(values) if values else np.array([])


def _constant(groups: dict[str, np.ndarray]) -> float | None:
    """The one value every document has (a panel that would show a single bar), else None."""
    allv = _finite(groups)
    if allv.size == 0:
        return math.nan
    lo, hi = float(allv.min()), float(allv.max())
    return lo if lo == hi else None


def _hist(
    ax: Any, groups: dict[str, np.ndarray], thresholds: list[tuple[str, float]], title: str, *, name_groups: bool = True
) -> None:
    """Overlaid histograms of ``groups`` with the thresholds near the data; the legend (below the
    axes) names the groups only when ``name_groups`` and there is more than one."""
    allv = _finite(groups)
    ax.set_title(title, fontsize=9)
    if allv.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = float(allv.min()), float(allv.max())
    view_lo, view_hi = lo, hi
    for _, t in thresholds:
        if _in_view(t, lo, hi, False):
            view_lo, view_hi = min(view_lo, t), max(view_hi, t)
    if view_hi == view_lo:
        view_hi = view_lo + 1.0
    bins = np.linspace(view_lo, view_hi, HIST_BINS + 1)
    for i, (label, v) in enumerate(groups.items()):
        v = v[np.isfinite(v)]
        named = name_groups and len(groups) > 1
        if v.size:
            ax.hist(
                v, bins=bins, histtype="stepfilled", alpha=0.55, color=f"C{i}", label=label if named else "_nolegend_"
            )
    _draw_thresholds(ax, thresholds, lo, hi)
    _legend_below(ax)


def _numeric(type_name: str) -> bool:
    return type_name.upper() in {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
        "BOOLEAN",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    } or type_name.upper().startswith("DECIMAL")


def _struct_fields(type_name: str) -> list[tuple[str, str]]:
    """Top-level fields of a DuckDB STRUCT type string (``STRUCT(a DOUBLE, "b c" INTEGER)``)."""
    inner = type_name[type_name.index("(") + 1 : type_name.rindex(")")]
    fields, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            fields.append(cur.strip())
            cur = ""
            continue
        depth += ch in "(<"
        depth -= ch in ")>"
        cur += ch
    if cur.strip():
        fields.append(cur.strip())
    out = []
    for f in fields:
        if f.startswith('"'):
            end = f.index('"', 1)
            out.append((f[1:end], f[end + 1 :].strip()))
        else:
            name, _, typ = f.partition(" ")
            out.append((name, typ.strip()))
    return out


def _sample(ctx: ReportContext, sql_select: str, relation: str) -> list[tuple[Any, ...]]:
    return ctx.rows(
        f"SELECT {sql_select} FROM {relation} USING SAMPLE reservoir({SAMPLE_VALUES} ROWS) REPEATABLE ({SAMPLE_SEED})"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def section_quality(ctx: ReportContext) -> Section:
    sec = Section("Quality")
    doc_cols = ctx.columns("documents")
    found = False
    if "quality_score" in doc_cols and _numeric(doc_cols["quality_score"]):
        found = True
        vals = np.array([r[0] for r in _sample(ctx, "quality_score::DOUBLE", "documents") if r[0] is not None])
        fig, ax = new_figure(height=2.8)
        ax.set_xlabel("quality_score")
        ax.set_ylabel("documents")
        score_limits = ctx.thresholds("quality_score")
        _hist(ax, {"kept documents": vals}, score_limits, "quality_score of kept documents")
        sec.add(svg(fig, "quality score distribution"))
        if not score_limits:
            sec.add(note("The score ranks documents (mean margin over the rules); no threshold applies to it."))
        per_bucket = ctx.rows(
            "SELECT bucket::VARCHAR, count(*), min(quality_score), median(quality_score), max(quality_score) "
            "FROM documents GROUP BY 1 ORDER BY 1"
        )
        sec.add(table(["bucket", "documents", "min score", "median score", "max score"], per_bucket))
    panels: list[tuple[str, dict[str, np.ndarray]]] = []
    if ctx.db.has_table("quality_signals"):
        # The side table covers rejected documents too, so it shows what the thresholds removed.
        found = True
        cols = ctx.columns("quality_signals")
        fields = [n for n, t in cols.items() if _numeric(t) and n not in NOT_SIGNALS]
        if fields and "doc_id" in cols:
            select = ", ".join(f"q.{_quote(n)}::DOUBLE" for n in fields)
            rows = ctx.rows(
                f"SELECT d.doc_id IS NOT NULL, {select} FROM quality_signals q "
                f"LEFT JOIN (SELECT doc_id FROM documents) d ON q.doc_id = d.doc_id "
                f"USING SAMPLE reservoir({SAMPLE_VALUES} ROWS) REPEATABLE ({SAMPLE_SEED})"
            )
            arr = np.array([[np.nan if v is None else float(v) for v in r[1:]] for r in rows]).reshape(-1, len(fields))
            kept = np.array([r[0] for r in rows], dtype=bool)
            panels += [(n, {"kept": arr[kept, i], "rejected": arr[~kept, i]}) for i, n in enumerate(fields)]
    if doc_cols.get("quality_signals", "").upper().startswith("STRUCT"):
        found = True
        done = {p[0] for p in panels}
        fields = [(n, t) for n, t in _struct_fields(doc_cols["quality_signals"]) if _numeric(t) and n not in done]
        if fields:
            select = ", ".join(f"quality_signals.{_quote(n)}::DOUBLE" for n, _ in fields)
            data = np.array(_sample(ctx, select, "documents"), dtype=float).reshape(-1, len(fields))
            panels += [(n, {"kept": data[:, i]}) for i, (n, _) in enumerate(fields)]
    constant = [(name, c) for name, groups in panels if (c := _constant(groups)) is not None]
    varying = [(name, groups) for name, groups in panels if _constant(groups) is None]
    # signals a rule thresholds first (they explain the rejects), then the rest in signal order
    varying.sort(key=lambda p: not ctx.thresholds(p[0]))
    if varying:
        shown = varying[:MAX_SIGNAL_PANELS]
        ncols = 3
        nrows = math.ceil(len(shown) / ncols)
        fig, axes = new_figure(height=2.5 * nrows + 0.3, ncols=ncols, nrows=nrows)
        flat = np.atleast_1d(axes).ravel()
        for ax, (name, groups) in zip(flat, shown, strict=False):
            _hist(ax, groups, ctx.thresholds(name), name, name_groups=False)
        for ax in flat[len(shown) :]:
            ax.set_visible(False)
        sec.add(heading("Quality signals"))
        sec.add(svg(fig, "quality signal distributions"))
        sec.add(
            note(
                "Blue: documents in the final shards; orange: documents rejected by any step. Dashed lines: "
                "the quality rules' thresholds on the signal (per script: latin, cjk). Values are a fixed-seed "
                f"sample of at most {SAMPLE_VALUES:,} documents."
            )
        )
        if len(varying) > len(shown):
            rest = ", ".join(name for name, _ in varying[len(shown) :])
            sec.add(note(f"{len(varying) - len(shown)} more signals not drawn: {rest}."))
    if constant:
        same = ", ".join(f"{name} = {'no value' if math.isnan(c) else f'{c:g}'}" for name, c in constant)
        sec.add(note(f"The same for every document in this build (not drawn): {same}."))
    if not found:
        sec.add(note("No quality scoring ran in this build (no quality_score column, no quality_signals)."))
    return sec


def section_near_duplicates(ctx: ReportContext) -> Section:
    sec = Section("Near duplicates")
    if not ctx.db.has_table("dedup_clusters"):
        return sec.add(note("Near-duplicate detection did not run in this build (no dedup_clusters table)."))
    cols = ctx.columns("dedup_clusters")
    size = "size" if "size" in cols else "len(members)"
    dist = ctx.rows(f"SELECT {size} AS s, count(*) FROM dedup_clusters GROUP BY 1 ORDER BY 1")
    if not dist:
        return sec.add(note("Near-duplicate detection ran and found no clusters."))
    fig, ax = new_figure(height=2.6)
    sizes = [r[0] for r in dist]
    counts = [r[1] for r in dist]
    ax.bar([str(s) for s in sizes] if len(sizes) <= 30 else sizes, counts, color="#8172B3")
    ax.set_yscale("log")
    ax.set_xlabel("cluster size (documents)")
    ax.set_ylabel("clusters (log)")
    ax.set_title("near-duplicate cluster sizes")
    sec.add(svg(fig, "near-duplicate cluster size distribution"))
    n_clusters = sum(counts)
    n_docs = sum(s * c for s, c in dist)
    sec.add(para(f"{n_clusters:,} clusters covering {n_docs:,} documents; one document per cluster is kept."))
    members = "members" if "members" in cols else "[]::VARCHAR[]"
    kept = "kept_id" if "kept_id" in cols else f"{members}[1]"
    top = ctx.rows(
        f"SELECT cluster_id::VARCHAR, {size}, {kept}, {members} FROM dedup_clusters "
        f"ORDER BY 2 DESC, 1 LIMIT {TOP_CLUSTERS}"
    )
    rows, details = [], []
    for cid, csize, kept_id, mems in top:
        ids = list(dict.fromkeys([kept_id, *(mems or [])]))[: CLUSTER_EXAMPLES + 1]
        texts = _texts_by_id(ctx, [i for i in ids if i is not None])
        anchor_id = f"cluster-{esc(cid)}"
        rows.append(
            (
                Raw(f'<a href="#{anchor_id}">{esc(cid)}</a>'),
                csize,
                kept_id,
                (texts.get(kept_id, ("", ""))[1] or "")[:160],
            )
        )
        items = "".join(
            f"<tr><td>{esc(i)}</td><td>{esc(texts.get(i, ('missing', ''))[0])}</td>"
            f'<td class="text">{esc((texts.get(i, ("", ""))[1] or "")[:SAMPLE_TEXT_CHARS])}</td></tr>'
            for i in ids
        )
        details.append(
            f'<details id="{anchor_id}"><summary>cluster {esc(cid)}: {csize} documents</summary>'
            f"<table><thead><tr><th>doc_id</th><th>where</th><th>text</th></tr></thead><tbody>{items}</tbody>"
            "</table></details>"
        )
    sec.add(heading(f"Largest {len(top)} clusters"))
    sec.add(table(["cluster", "size", "kept doc_id", "kept text"], rows, text_cols=(3,)))
    sec.add(heading("Examples"), *details)
    return sec


def _texts_by_id(ctx: ReportContext, ids: list[str]) -> dict[str, tuple[str, str]]:
    """doc_id -> (where it is: kept / rejected by step, text)."""
    if not ids:
        return {}
    rows = ctx.rows(
        "SELECT doc_id, 'kept (' || bucket::VARCHAR || '/' || split::VARCHAR || ')', text FROM documents "
        "WHERE doc_id IN (SELECT unnest(?::VARCHAR[])) "
        "UNION ALL SELECT doc_id, 'rejected: ' || step || '/' || reason, text FROM rejects "
        "WHERE doc_id IN (SELECT unnest(?::VARCHAR[]))",
        [ids, ids],
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def section_pii(ctx: ReportContext) -> Section:
    sec = Section("PII")
    if not ctx.db.has_table("pii_findings"):
        return sec.add(note("PII redaction did not run in this build (no pii_findings table)."))
    cols = ctx.columns("pii_findings")
    score = "avg(score)" if "score" in cols else "NULL"
    recog = "string_agg(DISTINCT recognizer, ', ' ORDER BY recognizer)" if "recognizer" in cols else "NULL"
    rows = ctx.rows(
        f"SELECT entity_type, count(*) AS n, count(DISTINCT doc_id), {score}, {recog} FROM pii_findings "
        "GROUP BY entity_type ORDER BY n DESC, entity_type"
    )
    if not rows:
        return sec.add(note("PII redaction ran and found nothing."))
    fig, ax = new_figure(height=0.35 * len(rows) + 1.2)
    y = np.arange(len(rows))[::-1]
    vals = [r[1] for r in rows]
    bars = ax.barh(y, vals, color="#C44E52")
    bar_labels(ax, bars, vals)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xlim(0, max(vals) * 1.15)
    ax.set_xlabel("findings")
    ax.set_title("PII findings by entity type")
    sec.add(svg(fig, "PII findings by type"))
    sec.add(
        table(
            ["entity type", "findings", "documents", "mean score", "recognizers"],
            [(r[0], r[1], r[2], round(r[3], 3) if r[3] is not None else "-", r[4] or "-") for r in rows],
        )
    )
    sec.add(note("Found values are not shown here; the pii_findings table has their offsets."))
    return sec


def section_buckets(ctx: ReportContext) -> Section:
    sec = Section("Buckets and tokens")
    rows = ctx.rows(
        "SELECT bucket::VARCHAR AS bucket, split::VARCHAR AS split, count(*), sum(strlen(text)), "
        f"sum((length(text) - length(regexp_replace(text, '{CJK_CLASS}', '', 'g'))) "
        f"+ length(regexp_replace(text, '{CJK_CLASS}', '', 'g')) / {CHARS_PER_TOKEN})::BIGINT "
        "FROM documents GROUP BY 1, 2"
    )
    rows.sort(key=lambda r: (bucket_order_key(r[0]), r[1]))
    if not rows:
        return sec.add(note("The final shards hold no documents."))
    buckets = list(dict.fromkeys(r[0] for r in rows))
    splits = sorted({r[1] for r in rows})
    fig, (ax_d, ax_t) = new_figure(height=0.4 * len(buckets) + 1.4, ncols=2)
    y = np.arange(len(buckets))[::-1]
    for ax, idx, title in ((ax_d, 2, "documents"), (ax_t, 4, "estimated tokens")):
        left = np.zeros(len(buckets))
        for s in splits:
            vals = np.array([float(next((r[idx] for r in rows if r[0] == b and r[1] == s), 0)) for b in buckets])
            ax.barh(y, vals, left=left, label=s)
            left += vals
        ax.set_yticks(y, buckets)
        ax.set_title(f"{title} per bucket")
        _legend_below(ax, ncols=len(splits))
    sec.add(svg(fig, "bucket sizes and token estimates"))
    sec.add(
        table(
            ["bucket", "split", "documents", "MB", "est. tokens"], [(*r[:3], round(_mb(r[3]), 3), r[4]) for r in rows]
        )
    )
    sec.add(note("Token estimate: one token per CJK character, one per 4 other characters."))
    if buckets == ["all"]:
        sec.add(note("No curriculum bucketing ran in this build: every document is in bucket 'all'."))
    return sec


def bucket_order_key(bucket: str) -> tuple[int, float, str]:
    """Numbered buckets (``0-easy``, ``10``) in numeric order, then the rest by name."""
    digits = len(bucket) - len(bucket.lstrip("0123456789"))
    return (0, float(bucket[:digits]), bucket) if digits else (1, 0.0, bucket)


def section_samples(ctx: ReportContext) -> Section:
    sec = Section("Sample documents")
    cols = ctx.columns("documents")
    score = "quality_score" if "quality_score" in cols else "NULL"
    buckets = sorted((r[0] for r in ctx.rows("SELECT DISTINCT bucket::VARCHAR FROM documents")), key=bucket_order_key)
    if not buckets:
        return sec.add(note("The final shards hold no documents."))
    for bucket in buckets:
        rows = ctx.rows(
            f"SELECT doc_id, split::VARCHAR, source, coalesce(lang, '-'), length(text), {score}, left(text, ?) "
            f"FROM (SELECT * FROM documents WHERE bucket::VARCHAR = ?) "
            f"USING SAMPLE reservoir({SAMPLES_PER_BUCKET} ROWS) REPEATABLE ({SAMPLE_SEED}) ORDER BY doc_id",
            [SAMPLE_TEXT_CHARS, bucket],
        )
        sec.add(heading(f"bucket {bucket}"))
        sec.add(
            table(
                ["doc_id", "split", "source", "lang", "chars", "quality_score", "text"],
                [(*r[:5], "-" if r[5] is None else round(float(r[5]), 4), r[6]) for r in rows],
                text_cols=(6,),
            )
        )
    sec.add(
        note(
            f"A fixed-seed random sample of {SAMPLES_PER_BUCKET} documents per bucket, "
            f"texts cut at {SAMPLE_TEXT_CHARS} characters."
        )
    )
    return sec


SECTIONS: tuple[Callable[[ReportContext], Section], ...] = (
    section_overview,
    section_funnel,
    section_lengths,
    section_languages,
    section_quality,
    section_quality_decisions,
    section_classifier,
    section_near_duplicates,
    section_pii,
    section_buckets,
    section_samples,
)


def _safe(fn: Callable[[ReportContext], Section], ctx: ReportContext) -> Section:
    """One broken section must not cost the whole report: it shows the error in its place."""
    try:
        return fn(ctx)
    except (duckdb.Error, ValueError, KeyError, IndexError, TypeError) as exc:
        title = fn.__name__.removeprefix("section_").replace("_", " ").capitalize()
        print(f"warning: report section {title!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return Section(title).add(
            f'<p class="note section-error">This section failed: {esc(type(exc).__name__)}: {esc(exc)}</p>'
        )


def latest_build(db: AuditContext) -> tuple[dict[str, Any], dict[str, Any]]:
    run_id = db.latest_build()
    cur = db.conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cur.fetchone()
    if run_id is None or row is None:
        raise ReportError(f"{db.layout.catalog}: no successful build in the catalog")
    run = dict(zip([d[0] for d in cur.description], row, strict=True))
    config = run.get("config")
    return run, (json.loads(config) if isinstance(config, str) else config or {})


def step_settings(db: AuditContext, run_id: str) -> list[StepSettings]:
    """What the build recorded of its steps (none for a catalog older than ``step_settings``)."""
    if not db.has_table("step_settings"):
        return []
    return Catalog(db.conn, db.layout).step_settings(run_id)


def render_report(root: Path) -> str:
    """The report page for the corpus under ``root`` (latest successful build)."""
    try:
        conn = open_catalog(root)
    except AuditError as exc:
        raise ReportError(str(exc)) from None
    try:
        db = AuditContext(conn, CorpusLayout.at(root))
        run, config = latest_build(db)
        ctx = ReportContext(db, run, config, step_settings(db, run["run_id"]))
        sections = [_safe(fn, ctx) for fn in SECTIONS]
    finally:
        conn.close()
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return page(
        "corpusforge corpus report",
        f"{db.layout.root} · build {run['run_id']} · generated {generated}",
        sections,
    )


def write_report(root: Path, out: Path | None = None) -> Path:
    """Write the report (default ``<root>/report.html``) and return its path."""
    target = out or CorpusLayout.at(root).root / "report.html"
    html_text = render_report(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corpus.report", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("data"), help="corpus root (default: ./data)")
    p.add_argument("--out", type=Path, help="output file (default: <root>/report.html)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.root, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
