"""`python -m quality.calibrate`: per-language rule thresholds from a reference corpus, the FineWeb-2 way.

    python -m quality.calibrate --reference good.jsonl --junk junk.jsonl --lang zh \\
        --out configs/quality/zh.yaml

For each rule, the signal is computed over the reference (known-good text of the language) and
the threshold is set at a stated quantile of its distribution, separately per length band
(< 300, 300-3,000, > 3,000 characters; a band with fewer than ``--min-band-docs`` reference
documents is filled up with the documents nearest to it in length): a max rule at the (1 - q)
quantile, a min rule at the q quantile, taken as the split-conformal order statistic (rank
ceil((n + 1)(1 - q)) of n), so each rule alone removes at most q of *new* good text of the band,
not only of the sample it was fitted on (the plain sample quantile of a few hundred references
is their maximum or next to it, which about 1 to 2 in n + 1 new documents exceed; over ~25
rules that removed 2% of a band where the sample showed 1%). A band too small for q (rank > n)
or filled up from its neighbours cannot show its q quantile: its extreme is widened by its
spread, see `_quantile`. A threshold is never made
stricter than the rule's published default for the language's script, a rule that default
leaves off (mean word length for CJK) is turned on only where it catches junk (the quantile of a clean
reference can be 0: one '#' would then reject a document), and the rules on length alone are off
(length limits belong to ``length_filter``, per source). A repetition rule applies only from
its script's word floor up (`quality.rules.REPETITION_FLOOR`), so its distribution is taken over
the references of at least that many words. The junk set is run through the
calibrated rules as the step would (its documents of this language) to print, per rule, the
share of the reference it removes and the share of junk it catches, and then all rules together
per band. Texts are normalised first as the ``normalize`` step does (NFKC turns ；into ;, for
one), since the quality step sees them after it (``--no-normalize`` for a pipeline without it).
Input files are JSONL (or Parquet) with a ``text`` field.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from quality.rules import (
    BAND_EDGES,
    BAND_LABELS,
    BANDS,
    DEFAULT_RULES,
    LENGTH_RULES,
    LangThresholds,
    Rule,
    applies_expr,
    band_expr,
    evaluate,
)
from quality.signals import compute_signals
from quality.thresholds import dump

DEFAULT_QUANTILE = 0.002
MIN_BAND_DOCS = 20
NOT_CALIBRATED = ("c4_javascript_lines", "c4_policy_lines", "lang_low_confidence", "perplexity_too_high")
CJK_LANGS = ("zh", "ja", "ko")


class CalibrationError(ValueError):
    """Bad input to calibration; the message names the file and what is wrong."""


@dataclass
class RuleReport:
    rule: Rule
    quantile_values: dict[str, float | None]
    thresholds: LangThresholds | None
    good_removed: float
    junk_caught: float | None


def read_texts(path: Path, what: str) -> pl.DataFrame:
    """A JSONL/Parquet file's ``text`` (and ``lang`` when present); errors name the file and line."""
    if not path.is_file():
        raise CalibrationError(f"{path}: {what} file not found")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_ndjson(path, infer_schema_length=None)
    except Exception as exc:  # polars raises several error types for malformed input
        raise CalibrationError(f"{path}: cannot read {what} as JSONL/Parquet: {exc}".splitlines()[0]) from None
    if "text" not in frame.columns:
        raise CalibrationError(f"{path}: {what} has no 'text' field")
    bad = frame.with_row_index("line", offset=1).filter(
        pl.col("text").is_null() | (pl.col("text").cast(pl.String) == "")
    )
    if bad.height:
        raise CalibrationError(f"{path}: line {bad['line'][0]}: empty or missing 'text' in the {what}")
    if frame.height == 0:
        raise CalibrationError(f"{path}: the {what} is empty")
    lang = pl.col("lang").cast(pl.String) if "lang" in frame.columns else pl.lit(None, dtype=pl.String)
    return frame.select(pl.col("text").cast(pl.String), lang.alias("lang"))


def _quantile(values: np.ndarray, q: float, kind: str, widen: bool = False) -> float | None:
    """The threshold a rule with (exceedance) share ``q`` gets from a reference sample: the split-
    conformal order statistic, so that a *new* good document of the band breaks the rule with
    probability at most q (exchangeability), not merely q of the sample itself. For a max rule that
    is the ceil((n + 1)(1 - q))-th smallest value, for a min rule the floor((n + 1) q)-th. When the
    sample is too small for q (that rank falls outside it), or ``widen`` (the band was filled up
    with its length neighbours), the sample's extreme is widened by its spread on that side
    (q90 - q50 above the maximum, q50 - q10 below the minimum): the threshold then lies beyond
    every reference, by as much as the reference varies."""
    if values.size == 0:
        return None
    v = np.sort(values)
    n = v.size
    if kind == "min":
        k = math.floor((n + 1) * q)  # 1-based rank
        if k < 1 or widen:
            return float(v[0] - (np.quantile(v, 0.5) - np.quantile(v, 0.1)))
        return float(v[k - 1])
    k = math.ceil((n + 1) * (1.0 - q) - 1e-9)
    if k > n or widen:
        return float(v[-1] + (np.quantile(v, 0.9) - np.quantile(v, 0.5)))
    return float(v[k - 1])


def _round_safe(value: float, kind: str) -> float:
    """4 decimals, rounded away from the reference (a max threshold up, a min threshold down)."""
    scaled = value * 1e4
    return (math.ceil(scaled - 1e-9) if kind == "max" else math.floor(scaled + 1e-9)) / 1e4


def band_values(col: pl.DataFrame, band: str, min_docs: int) -> np.ndarray:
    """Signal values of the band's documents, filled up to ``min_docs`` with the documents nearest
    to the band in length (log distance to its edges): few long references still set a long-band
    threshold from the longest texts there are, not from short ones."""
    inside = col.filter(pl.col("band") == band)
    if inside.height >= min_docs or col.height <= inside.height:
        return inside.get_column("v").to_numpy()
    lo, hi = {"short": (0, BAND_EDGES[0]), "medium": BAND_EDGES, "long": (BAND_EDGES[1], None)}[band]
    n = pl.col("n_chars").cast(pl.Float64).clip(lower_bound=1.0).log()
    dist = pl.max_horizontal(
        pl.lit(math.log(lo)) - n if lo else pl.lit(0.0), n - pl.lit(math.log(hi)) if hi else pl.lit(0.0), pl.lit(0.0)
    )
    outside = col.filter(pl.col("band") != band).with_columns(dist.alias("d")).sort("d", maintain_order=True)
    extra = outside.head(min_docs - inside.height).get_column("v").to_numpy()
    return np.concatenate([inside.get_column("v").to_numpy(), extra])


def calibrate_rule(
    rule: Rule, signals: pl.DataFrame, lang: str, q: float, min_band_docs: int
) -> tuple[LangThresholds | None, dict[str, float | None]]:
    """The rule's thresholds for ``lang`` from the reference ``signals`` (with a ``band`` column)."""
    default = rule.cjk if lang in CJK_LANGS else rule.latin
    gate = rule.gated and {"n_words", "script"} <= set(signals.columns)
    sig = signals.filter(applies_expr()) if gate else signals  # the documents the rule applies to
    col = sig.select(pl.col(rule.signal).cast(pl.Float64).alias("v"), "band", "n_chars").drop_nulls("v")
    if col.height == 0:
        return None, dict.fromkeys(BANDS)
    raw: dict[str, float | None] = {}
    final: dict[str, float | None] = {}
    for band in BANDS:
        values = band_values(col, band, min_band_docs)
        own = int((col.get_column("band") == band).sum())
        t = _quantile(values, q, rule.kind, widen=own < min_band_docs)
        raw[band] = t
        if t is not None and default is not None:
            t = max(t, default) if rule.kind == "max" else min(t, default)
        if t is not None and rule.kind == "min":
            t = max(t, 0.0)  # every signal is >= 0: a widened minimum below 0 means "never fails"
        final[band] = None if t is None else _round_safe(t, rule.kind)
    good = float(np.median(col.get_column("v").to_numpy()))
    return LangThresholds(lang, final["short"], final["medium"], final["long"], round(good, 4)), raw


def calibrate(
    reference: pl.DataFrame,
    junk: pl.DataFrame | None,
    lang: str,
    *,
    quantile: float = DEFAULT_QUANTILE,
    min_band_docs: int = MIN_BAND_DOCS,
) -> tuple[dict[str, LangThresholds | None], list[RuleReport], pl.DataFrame, pl.DataFrame | None]:
    """Thresholds per rule for ``lang``, a report per rule, and the verdicts on reference and junk."""
    if not 0.0 < quantile < 0.5:
        raise CalibrationError(f"--quantile must be in (0, 0.5), got {quantile}")
    ref_sig = compute_signals(reference.get_column("text")).with_columns(
        pl.lit(lang).alias("lang"), band_expr().alias("band")
    )
    junk_sig = None
    if junk is not None and junk.height:
        junk_sig = compute_signals(junk.get_column("text")).with_columns(
            junk.get_column("lang"), band_expr().alias("band")
        )
        junk_sig = junk_sig.filter(pl.col("lang") == lang)
    out: dict[str, LangThresholds | None] = {}
    reports: list[RuleReport] = []
    calibrated_rules: list[Rule] = []
    for rule in DEFAULT_RULES:
        if rule.name in NOT_CALIBRATED:
            continue
        if rule.name in LENGTH_RULES:
            out[rule.name] = None
            continue
        if rule.kind == "flag":
            calibrated_rules.append(rule)  # a flag (lorem ipsum, code) keeps its default: reported, not tuned
            reports.append(_report(rule, dict.fromkeys(BANDS), None, ref_sig, junk_sig))
            continue
        lt, raw = calibrate_rule(rule, ref_sig, lang, quantile, min_band_docs)
        if lt is None:
            continue  # the signal does not exist for this language's script
        with_lang = replace(rule, langs=(lt,))
        report = _report(with_lang, raw, lt, ref_sig, junk_sig)
        if (rule.cjk if lang in CJK_LANGS else rule.latin) is None and not report.junk_caught:
            # off by default for the script and catching no junk here: it could only remove good text
            out[rule.name] = None
            reports.append(RuleReport(rule, raw, None, 0.0, report.junk_caught))
            continue
        out[rule.name] = lt
        calibrated_rules.append(with_lang)
        reports.append(report)
    ref_verdict = pl.concat([ref_sig.select("band"), evaluate(ref_sig, calibrated_rules)], how="horizontal")
    junk_verdict = None
    if junk_sig is not None:
        junk_verdict = pl.concat([junk_sig.select("band"), evaluate(junk_sig, calibrated_rules)], how="horizontal")
    return out, reports, ref_verdict, junk_verdict


def _report(
    rule: Rule, raw: dict[str, float | None], lt: LangThresholds | None, ref: pl.DataFrame, junk: pl.DataFrame | None
) -> RuleReport:
    removed = float(ref.select(rule.fails().mean()).item())
    caught = float(junk.select(rule.fails().mean()).item()) if junk is not None and junk.height else None
    return RuleReport(rule, raw, lt, removed, caught)


def _fmt(v: float | None) -> str:
    return "off" if v is None else f"{v:.4g}"


def print_report(
    lang: str, reports: Sequence[RuleReport], ref_verdict: pl.DataFrame, junk_verdict: pl.DataFrame | None, q: float
) -> None:
    print(f"{lang}: thresholds at the {q:g} / {1 - q:g} quantile of the reference, per length band")
    head = f"{'rule':<30}{'signal':<20}{'short':>9}{'medium':>9}{'long':>9}{'good removed':>14}{'junk caught':>13}"
    print(head)
    print("-" * len(head))
    for r in reports:
        lt = r.thresholds
        vals = ["flag"] * 3 if r.rule.kind == "flag" else [_fmt(getattr(lt, b) if lt else None) for b in BANDS]
        caught = "" if r.junk_caught is None else f"{r.junk_caught:.3f}"
        print(
            f"{r.rule.name:<30}{r.rule.signal:<20}{vals[0]:>9}{vals[1]:>9}{vals[2]:>9}{r.good_removed:>14.4f}{caught:>13}"
        )
    print()
    print(f"{'all rules together':<30}{'documents':>10}{'kept':>8}{'share kept':>12}")
    for band in (*BANDS, None):
        sub = ref_verdict if band is None else ref_verdict.filter(pl.col("band") == band)
        kept = sub.get_column("reason").null_count()
        label = f"reference {BAND_LABELS[band]}" if band else "reference, all"
        share = f"{kept / sub.height:.4f}" if sub.height else "-"
        print(f"{label:<30}{sub.height:>10}{kept:>8}{share:>12}")
    if junk_verdict is not None and junk_verdict.height:
        removed = junk_verdict.height - junk_verdict.get_column("reason").null_count()
        label = f"junk ({lang}) removed"
        print(f"{label:<30}{junk_verdict.height:>10}{removed:>8}{removed / junk_verdict.height:>12.4f}")
    else:
        print(f"junk: no documents of language {lang!r} in the junk set")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m quality.calibrate", description=__doc__.splitlines()[0])
    p.add_argument(
        "--reference", type=Path, required=True, action="append", help="known-good JSONL/Parquet (repeatable)"
    )
    p.add_argument("--junk", type=Path, action="append", default=[], help="junk JSONL/Parquet (repeatable)")
    p.add_argument("--lang", required=True, help="ISO 639-1 code of the reference text, e.g. zh")
    p.add_argument("--out", type=Path, required=True, help="threshold file to write, e.g. configs/quality/zh.yaml")
    p.add_argument(
        "--quantile",
        type=float,
        default=DEFAULT_QUANTILE,
        help=f"share each rule may remove (default {DEFAULT_QUANTILE})",
    )
    p.add_argument("--no-normalize", action="store_true", help="score the texts as they are (no normalize step)")
    p.add_argument(
        "--min-band-docs",
        type=int,
        default=MIN_BAND_DOCS,
        help="fewer reference documents in a band: borrow the neighbours'",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lang = args.lang.strip().lower()
    try:
        reference = pl.concat([read_texts(p, "reference") for p in args.reference], how="vertical_relaxed")
        junk = None
        if args.junk:
            junk = pl.concat([read_texts(p, "junk") for p in args.junk], how="vertical_relaxed")
        if not args.no_normalize:
            reference, junk = normalized(reference), (normalized(junk) if junk is not None else None)
        if junk is not None:
            junk = _with_detected_lang(junk)
        thresholds, reports, ref_verdict, junk_verdict = calibrate(
            reference, junk, lang, quantile=args.quantile, min_band_docs=args.min_band_docs
        )
    except CalibrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(lang, reports, ref_verdict, junk_verdict, args.quantile)
    bands = ref_verdict.group_by("band").len()
    per_band = {b: int(bands.filter(pl.col("band") == b)["len"].sum()) for b in BANDS}
    command = "python -m quality.calibrate " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    header = (
        f"Calibrated thresholds for {lang!r} (quality step: thresholds_from: {args.out.parent}).\n"
        f"Made by: {command}\n"
        "Each value: the rule's threshold per length band (short < 300 <= medium <= 3000 < long characters), at\n"
        "the stated quantile of the reference, never stricter than the script default; good: the reference median.\n"
        "null: the rule is off for this language (length limits belong to length_filter)."
    )
    meta = {
        "quantile": args.quantile,
        "reference": {
            "files": [str(p) for p in args.reference],
            "documents": reference.height,
            "documents_per_band": per_band,
            "junk_files": [str(p) for p in args.junk],
        },
    }
    dump(args.out, lang, thresholds, header, meta)
    print(f"\nwrote {args.out}")
    return 0


def normalized(frame: pl.DataFrame) -> pl.DataFrame:
    """The texts as the default ``normalize`` step leaves them."""
    from pipelines.steps.normalize import Normalize

    return frame.with_columns(Normalize().normalize(frame.get_column("text")).alias("text"))


def _with_detected_lang(frame: pl.DataFrame) -> pl.DataFrame:
    """Junk without a language gets the one the step would detect, so it meets the same thresholds."""
    from quality.language import LanguageIdentifier

    detected = LanguageIdentifier().identify(frame.get_column("text")).get_column("lang")
    return frame.with_columns(pl.coalesce(pl.col("lang"), detected).alias("lang"))


if __name__ == "__main__":
    sys.exit(main())
