"""The corpus report's "Quality decisions" section: what `quality` removed, per language and source.

Why: a rule that removes 30% of one source (a threshold that does not fit its language or its
kind of text) is invisible in corpus-wide totals. This section reads the ``quality_signals``
side table (every document the step saw, with its language, source, failing rule and where that
rule's threshold came from) and shows, per (language, source), the share kept and the share each
rule removed, flagging any rule above `FLAG_SHARE`. With ``filter: false`` the step removes
nothing, and the section shows what each rule *would* remove.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from corpus.html import Section, heading, new_figure, note, svg, table

if TYPE_CHECKING:
    from corpus.report import ReportContext

FLAG_SHARE = 0.2  # the over_filtering audit's default limit
TOP_RULES = 8
MAX_ROWS = 60


def section_quality_decisions(ctx: ReportContext) -> Section:
    sec = Section("Quality decisions")
    if not ctx.db.has_table("quality_signals"):
        return sec.add(note("The quality step did not run in this build (no quality_signals table)."))
    cols = ctx.columns("quality_signals")
    if not {"source", "reason"} <= set(cols):
        return sec.add(note("The quality_signals table has no source/reason columns (built by an older version)."))
    removing = ctx.rows("SELECT count(*) FROM quality_signals WHERE reason IS NOT NULL")[0][0]
    decision = "reason"
    if not removing and "failed_rule" in cols:
        decision = "failed_rule"
        sec.add(note("The step ran with filter: false: the shares below are what each rule would remove."))
    origin = "threshold_from" if "threshold_from" in cols else "NULL"
    groups = ctx.rows(
        f"SELECT coalesce(lang, 'unknown') AS lang, source, count(*) AS docs, "
        f"count(*) FILTER (WHERE {decision} IS NULL) AS kept "
        f"FROM quality_signals GROUP BY ALL ORDER BY docs DESC, lang, source"
    )
    by_rule = ctx.rows(
        f"SELECT coalesce(lang, 'unknown'), source, {decision}, count(*), mode({origin}) "
        f"FROM quality_signals WHERE {decision} IS NOT NULL GROUP BY ALL ORDER BY 4 DESC, 3"
    )
    size = {(lang, src): docs for lang, src, docs, _ in groups}
    rules_of: dict[tuple[str, str], list[tuple[str, int, str | None]]] = {}
    for lang, src, rule, n, org in by_rule:
        rules_of.setdefault((lang, src), []).append((rule, n, org))

    summary = []
    for lang, src, docs, kept in groups:
        top = rules_of.get((lang, src), [])
        flagged = [r for r, n, _ in top if n / docs > FLAG_SHARE]
        reasons = ", ".join(f"{r} {n / docs:.1%}" for r, n, _ in top[:3]) or "-"
        summary.append(
            (
                lang,
                src,
                docs,
                f"{kept / docs:.1%}",
                f"{1 - kept / docs:.1%}",
                reasons,
                "⚠ " + ", ".join(flagged) if flagged else "",
            )
        )
    sec.add(
        table(
            [
                "lang",
                "source",
                "documents",
                "kept",
                "removed",
                "top reasons (share of the group)",
                f"> {FLAG_SHARE:.0%}",
            ],
            summary,
        )
    )
    if any(row[-1] for row in summary):
        sec.add(
            note(
                f"⚠: one rule removes more than {FLAG_SHARE:.0%} of a language/source group; check its threshold "
                "(python -m corpus.audit --check over_filtering lists the step-level view)."
            )
        )
    if by_rule:
        sec.add(_stacked_bars(groups, rules_of))
        detail = [
            (lang, src, rule, n, f"{n / size[(lang, src)]:.1%}", org or "")
            for lang, src, rule, n, org in sorted(by_rule, key=lambda r: (-r[3] / size[(r[0], r[1])], r[2]))
        ][:MAX_ROWS]
        sec.add(heading("Removed share by rule"))
        sec.add(table(["lang", "source", "rule", "documents", "share of the group", "threshold from"], detail))
        sec.add(
            note(
                "threshold from: the calibrated language and length band (e.g. 'zh, <300 chars') or the script "
                "default ('latin', 'cjk') of the rule that removed the documents. Each document's value and "
                "threshold: SELECT failed_rule, failed_value, failed_threshold, threshold_from FROM quality_signals."
            )
        )
    return sec


def _stacked_bars(
    groups: list[tuple[str, str, int, int]], rules_of: dict[tuple[str, str], list[tuple[str, int, str | None]]]
) -> str:
    """One bar per (language, source): removed share, split by rule (the commonest rules, then the rest)."""
    totals: dict[str, int] = {}
    for rules in rules_of.values():
        for rule, n, _ in rules:
            totals[rule] = totals.get(rule, 0) + n
    shown = sorted(totals, key=lambda r: (-totals[r], r))[:TOP_RULES]
    labels = [f"{lang} · {src}" for lang, src, _, _ in groups]
    fig, ax = new_figure(height=0.38 * len(groups) + 1.5)
    y = np.arange(len(groups))[::-1]
    left = np.zeros(len(groups))
    for i, rule in enumerate([*shown, "other rules"]):
        vals = []
        for lang, src, docs, _ in groups:
            rules = rules_of.get((lang, src), [])
            n = sum(c for r, c, _ in rules if (r == rule if rule != "other rules" else r not in shown))
            vals.append(n / docs)
        arr = np.array(vals)
        if arr.any():
            ax.barh(y, arr, left=left, color=f"C{i % 9}", label=rule)
            left += arr
    ax.axvline(FLAG_SHARE, color="#C44E52", linestyle="--", linewidth=1.0, label=f"{FLAG_SHARE:.0%}")
    ax.set_yticks(y, labels)
    ax.set_xlim(0, max(1e-9, float(left.max())) * 1.15)
    ax.set_xlabel("share of the group's documents removed")
    ax.set_title("quality: removed share per language and source, by rule")
    ax.legend(fontsize=7, loc="lower right")
    return svg(fig, "quality removals per language and source")
