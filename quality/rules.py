"""Filter rules over the signals: thresholds per language and length band, the reject reason, the score.

A rule reads one signal. Its threshold comes from, in this order: the document's language when a
calibrated threshold file for it is loaded (`LangThresholds`: one value per length band, from the
reference distribution, see `quality.calibrate`), else the document's script (``latin`` and
``cjk``; ``None`` switches the rule off). The script defaults are datatrove's (Gopher, C4,
FineWeb) for Latin text, with the few that assume spaces or English sentence lengths adjusted
for CJK (see docs/QUALITY.md). A document fails on the *first* failing rule in the order below,
and that rule's name is its reject reason; the detail names the value, the threshold and where
the threshold came from (``zh, 300-3000 chars`` or ``cjk``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import polars as pl

Kind = Literal["min", "max", "flag"]
FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb", "language", "perplexity")
DEFAULT_FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb", "language", "perplexity")
# Length bands by characters: short < 300 <= medium <= 3000 < long. Repetition, sentence counts and
# line structure depend on length (a long statute repeats its formulas), so thresholds are per band.
BAND_EDGES = (300, 3000)
BANDS = ("short", "medium", "long")
BAND_LABELS = {"short": "<300 chars", "medium": "300-3000 chars", "long": ">3000 chars"}
# Rules about length alone: off in calibrated languages (length limits belong to `length_filter`).
LENGTH_RULES = ("gopher_short_doc", "gopher_long_doc")
# Gopher's repetition statistics were defined on documents its length rule had let through
# (MassiveText filters quality, 50 - 100,000 words, before it removes repetitious text): in a text
# of a few dozen words one repeated phrase ("the State", an exam option repeating its stem) decides
# the fraction. So a repetition rule applies from that floor up, the script default of
# `gopher_short_doc` (words; a CJK "word" is a character), also where the length rules are off.
REPETITION_FAMILY = "gopher_repetition"
REPETITION_FLOOR = {"latin": 50, "cjk": 80}


def applies_expr() -> pl.Expr:
    """True where a repetition rule applies: at least the script's word floor (see REPETITION_FLOOR)."""
    floor = pl.when(pl.col("script") == "cjk").then(REPETITION_FLOOR["cjk"]).otherwise(REPETITION_FLOOR["latin"])
    return pl.col("n_words") >= floor


def band_expr(n_chars: pl.Expr | None = None) -> pl.Expr:
    """The length band name of each document (from ``n_chars``)."""
    n = pl.col("n_chars") if n_chars is None else n_chars
    return (pl.when(n < BAND_EDGES[0]).then(pl.lit("short")).when(n <= BAND_EDGES[1]).then(pl.lit("medium"))).otherwise(
        pl.lit("long")
    )


@dataclass(frozen=True)
class LangThresholds:
    """A rule's calibrated thresholds for one language: one value per length band (None: off in
    that band), and ``good``, the reference median (full soft-score margin)."""

    lang: str
    short: float | None
    medium: float | None
    long: float | None
    good: float | None = None

    def value(self) -> pl.Expr:
        n = pl.col("n_chars")
        lit = lambda v: pl.lit(v, dtype=pl.Float64)  # noqa: E731
        return (
            pl.when(n < BAND_EDGES[0]).then(lit(self.short)).when(n <= BAND_EDGES[1]).then(lit(self.medium))
        ).otherwise(lit(self.long))

    @classmethod
    def parse(cls, lang: str, value: Any, where: str) -> LangThresholds:
        """From a file entry: a number / null (every band) or ``{short:, medium:, long:, good:}``."""
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return cls(lang, value, value, value)
        if isinstance(value, Mapping) and set(value) <= {*BANDS, "good"}:
            vals = {k: value.get(k) for k in (*BANDS, "good")}
            for k, v in vals.items():
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise ValueError(f"{where}: {k} must be a number or null, got {v!r}")
            return cls(lang, vals["short"], vals["medium"], vals["long"], vals["good"])
        raise ValueError(f"{where}: expected a number, null or {{short:, medium:, long:, good:}}, got {value!r}")


@dataclass(frozen=True)
class Rule:
    name: str  # the reject reason
    family: str
    signal: str
    kind: Kind  # min: value >= threshold; max: value <= threshold; flag: signal must be false
    latin: float | None
    cjk: float | None
    good: float | None = None  # value with full margin (soft score 1); default 2x (min) or 0.5x (max) threshold
    langs: tuple[LangThresholds, ...] = field(default=())  # calibrated, by language

    def _by_lang(self, per_lang: Any, default: pl.Expr) -> pl.Expr:
        expr = default
        for lt in reversed(self.langs):
            expr = pl.when(pl.col("lang") == lt.lang).then(per_lang(lt)).otherwise(expr)
        return expr

    def threshold(self) -> pl.Expr:
        script = (
            pl.when(pl.col("script") == "cjk")
            .then(pl.lit(self.cjk, dtype=pl.Float64))
            .otherwise(pl.lit(self.latin, dtype=pl.Float64))
        )
        return self._by_lang(LangThresholds.value, script)

    def origin(self) -> pl.Expr:
        """Where the threshold came from: ``<lang>, <band>`` for a calibrated language, else the script."""
        band = band_expr().replace_strict(BAND_LABELS, return_dtype=pl.String)
        return self._by_lang(lambda lt: pl.concat_str(pl.lit(f"{lt.lang}, "), band), pl.col("script"))

    @property
    def gated(self) -> bool:
        """Applies only from the script's word floor up (repetition rules, see REPETITION_FLOOR)."""
        return self.family == REPETITION_FAMILY

    def fails(self) -> pl.Expr:
        """True where the document breaks the rule; a null signal or threshold never fails."""
        v = pl.col(self.signal)
        if self.kind == "flag":
            on = self.threshold().is_not_null()
            return (v.cast(pl.Boolean) & on).fill_null(False)
        t = self.threshold()
        out = v < t if self.kind == "min" else v > t
        return (out & applies_expr() if self.gated else out).fill_null(False)

    def soft(self) -> pl.Expr:
        """Margin in [0, 1]: 1 well inside the threshold, 0 at or beyond it (null when not applicable).

        Linear between the threshold (0) and ``good`` (1): a calibrated language's reference median,
        else the rule's ``good``, else half the threshold for max rules and twice it for min rules.
        """
        return _soft(self, pl.col(self.signal), self.threshold())

    def detail(self) -> pl.Expr:
        if self.kind == "flag":
            return pl.concat_str(pl.lit(f"{self.signal} ("), self.origin(), pl.lit(")"))
        op = "<" if self.kind == "min" else ">"
        value = pl.col(self.signal).cast(pl.Float64).round(4).cast(pl.String)
        threshold = self.threshold().round(4).cast(pl.String)
        return pl.concat_str(
            pl.lit(f"{self.signal}="), value, pl.lit(f" {op} "), threshold, pl.lit(" ("), self.origin(), pl.lit(")")
        )


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
    # share of Han characters inside jieba dictionary words (quality.segment): calibrated languages only
    Rule("zh_few_dictionary_words", "gopher_quality", "dict_word_frac", "min", None, None),
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
    # C4 drops any page with "{" (code); as a count, a calibrated language may allow the few a licence has
    Rule("c4_curly_bracket", "c4", "curly_brackets", "max", 0, 0),
    # sentences anywhere in a line (C4's own count, c4_sentences, misses hard-wrapped text); CJK: 。！？；
    Rule("c4_too_few_sentences", "c4", "sentences", "min", 5, 3),
    # source code without braces (Python, shell): share of lines that start or end like code
    Rule("c4_code_lines", "c4", "code_lines_frac", "max", 0.1, 0.1),
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
    calibrated: Mapping[str, Mapping[str, LangThresholds]] | None = None,
    where: str = "quality",
) -> tuple[Rule, ...]:
    """The active rules: chosen families, minus ``disable``, with the ``calibrated`` per-language
    thresholds (language -> rule -> `LangThresholds`, from `quality.thresholds`) and then the
    explicit ``thresholds`` overrides on top.

    An override is a number (every document), ``null`` (rule off), or a mapping with any of
    ``latin``/``cjk`` (script defaults) and language codes (a number or ``{short:, medium:, long:}``).
    """
    unknown_fam = sorted(set(families) - set(FAMILIES))
    if unknown_fam:
        raise ValueError(f"{where}: unknown rule families {unknown_fam}; known: {list(FAMILIES)}")
    names = set(RULE_NAMES)
    calibrated = calibrated or {}
    keys = [*(thresholds or {}), *disable, *(r for per_rule in calibrated.values() for r in per_rule)]
    for key in keys:
        if key not in names:
            raise ValueError(f"{where}: unknown rule {key!r}; known rules: {', '.join(RULE_NAMES)}")
    out = []
    for rule in DEFAULT_RULES:
        if rule.family not in families or rule.name in disable:
            continue
        langs = tuple(per_rule[rule.name] for _, per_rule in sorted(calibrated.items()) if rule.name in per_rule)
        rule = replace(rule, langs=langs)
        if thresholds and rule.name in thresholds:
            rule = _override(rule, thresholds[rule.name], where)
        out.append(rule)
    return tuple(out)


def _override(rule: Rule, value: Any, where: str) -> Rule:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return replace(rule, latin=value, cjk=value, langs=())
    if isinstance(value, Mapping):
        scripts = {k: value[k] for k in ("latin", "cjk") if k in value}
        for k, v in scripts.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{where}: threshold {rule.name}.{k} must be a number or null, got {v!r}")
        langs = {lt.lang: lt for lt in rule.langs}
        for lang, v in value.items():
            if lang not in scripts:
                langs[lang] = LangThresholds.parse(lang, v, f"{where}: threshold {rule.name}.{lang}")
        return replace(
            rule, latin=scripts.get("latin", rule.latin), cjk=scripts.get("cjk", rule.cjk), langs=tuple(langs.values())
        )
    raise ValueError(
        f"{where}: threshold for {rule.name!r} must be a number, null or a mapping of latin/cjk/<lang>, got {value!r}"
    )


VERDICT_SCHEMA = {
    "reason": pl.String,
    "detail": pl.String,
    "failed_value": pl.Float64,
    "failed_threshold": pl.Float64,
    "threshold_from": pl.String,
    "rule_score": pl.Float64,
}


def evaluate(signals: pl.DataFrame, rules: Sequence[Rule]) -> pl.DataFrame:
    """Per document: ``reason`` (first failing rule, null if it passes), ``detail``, the failing
    rule's ``failed_value``, ``failed_threshold`` and ``threshold_from`` (for SQL), and ``rule_score``.

    ``rule_score`` = (mean + min) / 2 of the rules' margins: a failing document scores at most 0.5,
    and one rule close to its threshold pulls a passing document down as much as many rules do.

    ``signals`` holds the flattened signal columns (plus ``script`` and, for calibrated languages,
    ``lang``); rules whose signal column is absent (e.g. perplexity when it was not computed) are skipped.
    Each rule's threshold is computed once as a column; the detail text is formatted once per
    document, for its failing rule only.
    """
    if "lang" not in signals.columns:
        signals = signals.with_columns(pl.lit(None, dtype=pl.String).alias("lang"))
    active = [r for r in rules if r.signal in signals.columns]
    gate = "n_words" in signals.columns and "script" in signals.columns
    if not active:
        h = signals.height  # (literals alone would make one row)
        return pl.DataFrame(
            [pl.Series(n, [None] * h, dtype=t) for n, t in VERDICT_SCHEMA.items() if n != "rule_score"]
            + [pl.Series("rule_score", [1.0] * h, dtype=pl.Float64)]
        )
    band = band_expr().replace_strict(BAND_LABELS, return_dtype=pl.String)
    frame = signals.with_columns(
        *(r.threshold().alias(f"__t{i}") for i, r in enumerate(active)),
        pl.concat_str(pl.col("lang"), pl.lit(", "), band).alias("__lang_band"),  # (pl.format panics on views)
        (applies_expr() if gate else pl.lit(True)).alias("__applies"),
    )
    fails, origins, softs = [], [], []
    for i, r in enumerate(active):
        v, t = pl.col(r.signal), pl.col(f"__t{i}")
        if r.gated:  # below the word floor the rule does not apply: no failure, no margin
            t = pl.when(pl.col("__applies")).then(t)
        if r.kind == "flag":
            fails.append((v.cast(pl.Boolean) & t.is_not_null()).fill_null(False))
        else:
            fails.append((v < t if r.kind == "min" else v > t).fill_null(False))
        calibrated = [lt.lang for lt in r.langs]
        origins.append(
            pl.when(pl.col("lang").is_in(calibrated)).then(pl.col("__lang_band")).otherwise(pl.col("script"))
            if calibrated
            else pl.col("script")
        )
        softs.append(_soft(r, v, t))
    frame = frame.with_columns(*(f.alias(f"__f{i}") for i, f in enumerate(fails)))

    def first(exprs: Sequence[pl.Expr]) -> pl.Expr:
        return pl.coalesce([pl.when(pl.col(f"__f{i}")).then(e) for i, e in enumerate(exprs)])

    out = frame.select(
        first([pl.lit(r.name) for r in active]).alias("reason"),
        first([pl.col(r.signal).cast(pl.Float64) for r in active]).alias("failed_value"),
        first([pl.col(f"__t{i}") for i in range(len(active))]).alias("failed_threshold"),
        first(origins).alias("threshold_from"),
        (0.5 * pl.mean_horizontal(softs).fill_null(1.0) + 0.5 * pl.min_horizontal(softs).fill_null(1.0)).alias(
            "rule_score"
        ),
    )
    signal_of = {r.name: r.signal for r in active}
    op_of = {r.name: {"min": " < ", "max": " > ", "flag": ""}[r.kind] for r in active}
    flag = {r.name: r.kind == "flag" for r in active}
    reason = pl.col("reason")
    signal = reason.replace_strict(signal_of, default=None, return_dtype=pl.String)
    origin = pl.concat_str(pl.lit(" ("), pl.col("threshold_from"), pl.lit(")"))
    detail = (
        pl.when(reason.replace_strict(flag, default=False, return_dtype=pl.Boolean))
        .then(pl.concat_str(signal, origin))
        .otherwise(
            pl.concat_str(
                signal,
                pl.lit("="),
                pl.col("failed_value").round(4).cast(pl.String),
                reason.replace_strict(op_of, default=None, return_dtype=pl.String),
                pl.col("failed_threshold").round(4).cast(pl.String),
                origin,
            )
        )
    )
    return out.with_columns(pl.when(reason.is_not_null()).then(detail).alias("detail")).select(list(VERDICT_SCHEMA))


def _soft(rule: Rule, v: pl.Expr, t: pl.Expr) -> pl.Expr:
    """`Rule.soft` on an already computed threshold column ``t``."""
    v = v.cast(pl.Float64)
    if rule.kind == "flag":
        return pl.when(t.is_null()).then(None).otherwise(1.0 - v)
    fallback = (
        pl.lit(rule.good, dtype=pl.Float64) if rule.good is not None else t * (0.5 if rule.kind == "max" else 2.0)
    )
    g = rule._by_lang(lambda lt: pl.lit(lt.good, dtype=pl.Float64) if lt.good is not None else fallback, fallback)
    inside = v <= t if rule.kind == "max" else v >= t  # a threshold equal to good (e.g. "no '{' at all"): pass = 1
    s = pl.when(g != t).then((v - t) / (g - t)).otherwise(pl.when(inside).then(1.0).otherwise(0.0))
    return pl.when(t.is_null() | v.is_null()).then(None).otherwise(s.clip(0.0, 1.0))
