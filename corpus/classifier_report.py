"""The corpus report's "Learned quality score" section: the classifier's scores per source and how
well they agree with the LLM annotator.

Why: a classifier distilled from a few hundred labels can be confidently wrong on a whole source
it never saw, and a weak annotator's labels can be noise; both show only side by side. Reads
``quality_signals.classifier_score`` (every document the quality step saw, kept or not), the
``min_classifier_score`` the build applied (``step_settings``) and, when ``python -m
quality.annotate`` ran on this corpus, ``quality_annotations`` joined on doc_id: the annotator's
0-5 scores against the classifier's, and agreement of good (score >= `GOOD_SCORE`) with
classifier >= threshold (precision, recall, F1, Cohen's kappa).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from corpus.html import Section, heading, new_figure, note, svg, table

if TYPE_CHECKING:
    from corpus.report import ReportContext

GOOD_SCORE = 3  # FineWeb-Edu's cut on the 0-5 scale
BINS = 20
MAX_SOURCES = 12


def section_classifier(ctx: ReportContext) -> Section:
    sec = Section("Learned quality score")
    if not ctx.db.has_table("quality_signals") or "classifier_score" not in ctx.columns("quality_signals"):
        return sec.add(note("No classifier in this build (quality: {classifier: model.npz} adds classifier_score)."))
    scored = ctx.rows("SELECT count(classifier_score) FROM quality_signals")[0][0]
    if not scored:
        return sec.add(note("The quality step ran without a classifier: no classifier_score to show."))
    applied = ctx.thresholds("classifier_score")
    threshold = applied[0][1] if applied else 0.5
    cut = f"min_classifier_score = {threshold:g}" if applied else "0.5 (no min_classifier_score applied)"
    per_source = ctx.rows(
        "SELECT source, count(*), avg(classifier_score), quantile_cont(classifier_score, 0.1), "
        "median(classifier_score), quantile_cont(classifier_score, 0.9), "
        "count(*) FILTER (WHERE classifier_score < ?), count(*) FILTER (WHERE reason = 'classifier_score') "
        "FROM quality_signals WHERE classifier_score IS NOT NULL GROUP BY source ORDER BY 2 DESC, 1",
        [threshold],
    )
    sec.add(
        table(
            ["source", "documents", "mean", "p10", "median", "p90", f"below {threshold:g}", "removed by it"],
            [(s, n, f"{m:.3f}", f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", f"{lo / n:.1%}", r) for s, n, m, a, b, c, lo, r
             in per_source],
        )
    )  # fmt: skip
    sec.add(_histograms(ctx, [r[0] for r in per_source[:MAX_SOURCES]], threshold))
    sec.add(note(f"classifier_score: P(good) of the learned classifier; threshold {cut}."))
    sec.add(heading("Annotator vs classifier"))
    if not ctx.db.has_table("quality_annotations"):
        return sec.add(note("No annotations in the catalog (python -m quality.annotate writes quality_annotations)."))
    by_score = ctx.rows(
        "SELECT a.score, count(*), avg(q.classifier_score), count(*) FILTER (WHERE q.classifier_score >= ?) "
        "FROM quality_annotations a JOIN quality_signals q USING (doc_id) "
        "WHERE q.classifier_score IS NOT NULL GROUP BY a.score ORDER BY a.score",
        [threshold],
    )
    if not by_score:
        return sec.add(note("No annotated document of this corpus reached the quality step."))
    sec.add(
        table(
            ["annotator score", "documents", "mean classifier_score", f"classifier >= {threshold:g}"],
            [(s, n, f"{m:.3f}", f"{k / n:.1%}") for s, n, m, k in by_score],
        )
    )
    tp = sum(k for s, _, _, k in by_score if s >= GOOD_SCORE)
    fn = sum(n - k for s, n, _, k in by_score if s >= GOOD_SCORE)
    fp = sum(k for s, _, _, k in by_score if s < GOOD_SCORE)
    tn = sum(n - k for s, n, _, k in by_score if s < GOOD_SCORE)
    total = tp + fn + fp + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    observed = (tp + tn) / total
    expected = ((tp + fn) * (tp + fp) + (fp + tn) * (fn + tn)) / total**2
    kappa = (observed - expected) / (1 - expected) if expected < 1 else 1.0
    models = ", ".join(f"{m} ({p})" for m, p in ctx.rows("SELECT DISTINCT model, prompt_id FROM quality_annotations"))
    sec.add(
        table(
            ["", "classifier good", "classifier junk"],
            [(f"annotator good (>= {GOOD_SCORE})", tp, fn), (f"annotator junk (< {GOOD_SCORE})", fp, tn)],
        )
    )
    sec.add(
        note(
            f"{total} annotated documents ({models}): agreement {observed:.1%}, Cohen's kappa {kappa:.2f}; "
            f"with the annotator as truth precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f}. "
            "A weak annotator makes these numbers about the annotator as much as about the classifier."
        )
    )
    return sec


def _histograms(ctx: ReportContext, sources: list[str], threshold: float) -> str:
    """One step histogram of classifier_score per source (share of the source's documents)."""
    rows = ctx.rows(
        f"SELECT source, least(floor(classifier_score * {BINS}), {BINS - 1})::INT AS b, count(*) "
        "FROM quality_signals WHERE classifier_score IS NOT NULL GROUP BY ALL"
    )
    fig, ax = new_figure()
    edges = np.linspace(0, 1, BINS + 1)
    for i, source in enumerate(sources):
        counts = np.zeros(BINS)
        for s, b, n in rows:
            if s == source:
                counts[b] = n
        if counts.sum():
            ax.stairs(counts / counts.sum(), edges, color=f"C{i % 10}", label=source, linewidth=1.4)
    ax.axvline(threshold, color="#C44E52", linestyle="--", linewidth=1.0, label=f"threshold {threshold:g}")
    ax.set_xlabel("classifier_score")
    ax.set_ylabel("share of the source's documents")
    ax.set_title("classifier_score per source")
    ax.legend(fontsize=7)
    return svg(fig, "classifier score distribution per source")
