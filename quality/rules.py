"""Filter rules over the signals: thresholds per script, the reject reason, and the quality score.

A rule reads one signal and has a threshold per script (``latin`` and ``cjk``; ``None`` switches it
off for that script). The defaults are datatrove's (Gopher, C4, FineWeb) for Latin text; for CJK
text the word-count rules count characters and the few thresholds that assume spaces or English
sentence lengths are adjusted (see docs/QUALITY.md). A document fails on the *first* failing rule
in the order below, and that rule's name is its reject reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

Kind = Literal["min", "max", "flag"]
FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb", "language", "perplexity")
DEFAULT_FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb", "language", "perplexity")


@dataclass(frozen=True)
class Rule:
    name: str  # the reject reason
    family: str
    signal: str
    kind: Kind  # min: value >= threshold; max: value <= threshold; flag: signal must be false
    latin: float | None
    cjk: float | None
    good: float | None = None  # value with full margin (soft score 1); default 2x (min) or 0.5x (max) threshold

    def threshold(self) -> pl.Expr:
        return (
            pl.when(pl.col("script") == "cjk")
            .then(pl.lit(self.cjk, dtype=pl.Float64))
            .otherwise(pl.lit(self.latin, dtype=pl.Float64))
        )

    def fails(self) -> pl.Expr:
        """True where the document breaks the rule; a null signal or threshold never fails."""
        v = pl.col(self.signal)
        if self.kind == "flag":
            on = self.threshold().is_not_null()
            return (v.cast(pl.Boolean) & on).fill_null(False)
        t = self.threshold()
        return (v < t if self.kind == "min" else v > t).fill_null(False)

    def soft(self) -> pl.Expr:
        """Margin in [0, 1]: 1 well inside the threshold, 0 at or beyond it (null when not applicable).

        Linear between the threshold (0) and ``good`` (1): by default half the threshold for max rules
        and twice it for min rules.
        """
        v = pl.col(self.signal).cast(pl.Float64)
        t = self.threshold()
        if self.kind == "flag":
            return pl.when(t.is_null()).then(None).otherwise(1.0 - v.cast(pl.Float64))
        if self.good is not None:
            g = pl.lit(self.good, dtype=pl.Float64)
        else:
            g = t * (0.5 if self.kind == "max" else 2.0)
        s = pl.when(g != t).then((v - t) / (g - t)).otherwise(pl.when(v == t).then(0.0).otherwise(1.0))
        return pl.when(t.is_null() | v.is_null()).then(None).otherwise(s.clip(0.0, 1.0))

    def detail(self) -> pl.Expr:
        if self.kind == "flag":
            return pl.format(f"{self.signal} ({{}})", pl.col("script"))
        op = "<" if self.kind == "min" else ">"
        value = pl.col(self.signal).cast(pl.Float64).round(4)
        return pl.format(f"{self.signal}={{}} {op} {{}} ({{}})", value, self.threshold(), pl.col("script"))


DEFAULT_RULES: tuple[Rule, ...] = (
    # Gopher quality (Rae et al. 2021, datatrove GopherQualityFilter defaults)
    Rule("gopher_short_doc", "gopher_quality", "n_words", "min", 50, 80),
    Rule("gopher_long_doc", "gopher_quality", "n_words", "max", 100_000, 200_000),
    Rule("gopher_below_avg_word_len", "gopher_quality", "mean_word_len", "min", 3, None, good=4),
    Rule("gopher_above_avg_word_len", "gopher_quality", "mean_word_len", "max", 10, None, good=7),
    Rule("gopher_too_many_hashes", "gopher_quality", "hash_ratio", "max", 0.1, 0.1),
    Rule("gopher_too_many_ellipsis", "gopher_quality", "ellipsis_ratio", "max", 0.1, 0.1),
    Rule("gopher_too_many_bullets", "gopher_quality", "bullet_lines_frac", "max", 0.9, 0.9),
    Rule("gopher_too_many_end_ellipsis", "gopher_quality", "ellipsis_lines_frac", "max", 0.3, 0.3),
    Rule("gopher_below_alpha_threshold", "gopher_quality", "alpha_frac", "min", 0.8, 0.8, good=0.9),
    Rule("gopher_few_stop_words", "gopher_quality", "stop_words", "min", 2, 2),
    # Gopher repetition (Table A1); CJK n-grams are characters, n scaled (see SignalConfig)
    Rule("gopher_dup_para_frac", "gopher_repetition", "dup_para_frac", "max", 0.3, 0.3),
    Rule("gopher_dup_para_char_frac", "gopher_repetition", "dup_para_char_frac", "max", 0.2, 0.2),
    Rule("gopher_dup_line_frac", "gopher_repetition", "dup_line_frac", "max", 0.3, 0.3),
    Rule("gopher_dup_line_char_frac", "gopher_repetition", "dup_line_char_frac", "max", 0.2, 0.2),
    Rule("gopher_top_2gram", "gopher_repetition", "top_2gram_frac", "max", 0.2, 0.2),
    Rule("gopher_top_3gram", "gopher_repetition", "top_3gram_frac", "max", 0.18, 0.18),
    Rule("gopher_top_4gram", "gopher_repetition", "top_4gram_frac", "max", 0.16, 0.16),
    *(
        Rule(f"gopher_dup_{n}gram", "gopher_repetition", f"dup_{n}gram_frac", "max", t, t)
        for n, t in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    ),
    # C4 (Raffel et al. 2020, datatrove C4QualityFilter): document-level forms of its rules
    Rule("c4_lorem_ipsum", "c4", "has_lorem_ipsum", "flag", 1, 1),
    Rule("c4_curly_bracket", "c4", "has_curly_bracket", "flag", 1, 1),
    Rule("c4_too_few_sentences", "c4", "c4_sentences", "min", 5, 3),
    Rule("c4_javascript_lines", "c4", "c4_javascript_lines", "max", None, None),  # opt-in
    Rule("c4_policy_lines", "c4", "c4_policy_lines", "max", None, None),  # opt-in
    # FineWeb (Penedo et al. 2024, datatrove FineWebQualityFilter)
    Rule("fineweb_line_punct_ratio", "fineweb", "line_punct_frac", "min", 0.12, 0.12),
    Rule("fineweb_short_line_ratio", "fineweb", "short_line_frac", "max", 0.67, 0.67),
    Rule("fineweb_char_dup_ratio", "fineweb", "char_dup_frac", "max", 0.01, 0.01),
    Rule("fineweb_list_ratio", "fineweb", "newline_ratio", "max", 0.3, 0.3),
    # language and model scores: off unless configured
    Rule("lang_low_confidence", "language", "lang_confidence", "min", None, None),
    Rule("perplexity_too_high", "perplexity", "perplexity", "max", None, None),
)
RULE_NAMES = tuple(r.name for r in DEFAULT_RULES)


def configure_rules(
    families: Sequence[str] = DEFAULT_FAMILIES,
    thresholds: Mapping[str, Any] | None = None,
    disable: Sequence[str] = (),
    *,
    where: str = "quality",
) -> tuple[Rule, ...]:
    """The active rules: chosen families, minus ``disable``, with ``thresholds`` overrides.

    An override is a number (both scripts), ``null`` (rule off) or ``{latin: x, cjk: y}``.
    """
    unknown_fam = sorted(set(families) - set(FAMILIES))
    if unknown_fam:
        raise ValueError(f"{where}: unknown rule families {unknown_fam}; known: {list(FAMILIES)}")
    names = set(RULE_NAMES)
    for key in [*(thresholds or {}), *disable]:
        if key not in names:
            raise ValueError(f"{where}: unknown rule {key!r}; known rules: {', '.join(RULE_NAMES)}")
    out = []
    for rule in DEFAULT_RULES:
        if rule.family not in families or rule.name in disable:
            continue
        if thresholds and rule.name in thresholds:
            rule = _override(rule, thresholds[rule.name], where)
        out.append(rule)
    return tuple(out)


def _override(rule: Rule, value: Any, where: str) -> Rule:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return replace(rule, latin=value, cjk=value)
    if isinstance(value, Mapping) and set(value) <= {"latin", "cjk"}:
        return replace(rule, latin=value.get("latin", rule.latin), cjk=value.get("cjk", rule.cjk))
    raise ValueError(f"{where}: threshold for {rule.name!r} must be a number, null or {{latin:, cjk:}}, got {value!r}")


def evaluate(signals: pl.DataFrame, rules: Sequence[Rule]) -> pl.DataFrame:
    """Per document: ``reason`` (first failing rule, null if it passes), ``detail`` and ``rule_score``.

    ``rule_score`` = (mean + min) / 2 of the rules' margins: a failing document scores at most 0.5,
    and one rule close to its threshold pulls a passing document down as much as many rules do.

    ``signals`` holds the flattened signal columns (plus ``script``); rules whose signal column is
    absent (e.g. perplexity when it was not computed) are skipped.
    """
    active = [r for r in rules if r.signal in signals.columns]
    if not active:
        return signals.select(
            pl.lit(None, dtype=pl.String).alias("reason"),
            pl.lit(None, dtype=pl.String).alias("detail"),
            pl.lit(1.0).alias("rule_score"),
        )
    return signals.select(
        pl.coalesce([pl.when(r.fails()).then(pl.lit(r.name)) for r in active]).alias("reason"),
        pl.coalesce([pl.when(r.fails()).then(r.detail()) for r in active]).alias("detail"),
        (
            0.5 * pl.mean_horizontal([r.soft() for r in active]).fill_null(1.0)
            + 0.5 * pl.min_horizontal([r.soft() for r in active]).fill_null(1.0)
        ).alias("rule_score"),
    )
