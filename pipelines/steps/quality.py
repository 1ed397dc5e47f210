"""`quality`: score every document (heuristics, language, optional perplexity) and drop the junk.

Adds ``quality_signals`` (a struct of every signal) and ``quality_score`` in [0, 1]; fills ``lang``
where it is null. A document failing a rule is rejected with the rule's name as reason and the
measured value vs the threshold as detail. Signals of *every* document, kept or rejected, are
written to the catalog table ``quality_signals`` so thresholds can be tuned with SQL first
(``filter: false`` scores without removing anything), with the failing rule's value, threshold
and where the threshold came from. Rules and thresholds: `quality.rules`; per-language thresholds
calibrated on reference text: ``thresholds_from: configs/quality`` (`quality.thresholds`).

``classifier: model.npz`` (`python -m quality.train_classifier`) adds the signal
``classifier_score`` (P(good) of the learned classifier, null without one); with
``min_classifier_score`` a document that passes the rules but scores below it is rejected as
``classifier_score``. The file's sha256 is part of the step's parameters (a retrained model
recomputes the stage) and a file of another classifier version stops the build at config time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa

from corpus.store import write_table
from pipelines.step import ShardContext, Step, StepOutput, split_by_mask
from quality.classifier import cached_classifier, file_sha256, read_header
from quality.language import DEFAULT_LANGUAGES, LanguageIdentifier
from quality.perplexity import PerplexityConfig, PerplexityScorer, score_with_cache
from quality.rules import DEFAULT_FAMILIES, configure_rules, evaluate
from quality.signals import SIGNAL_SCHEMA, SignalConfig, compute_signals
from quality.thresholds import as_plain, from_plain, load_dir

TABLE = "quality_signals"
EXTRA_SIGNALS: dict[str, pl.DataType] = {
    "lang_detected": pl.String(),
    "lang_confidence": pl.Float64(),
    "perplexity": pl.Float64(),
    "ppl_tokens": pl.Int64(),
    "classifier_score": pl.Float64(),
}
ALL_SIGNALS: dict[str, pl.DataType] = {**SIGNAL_SCHEMA, **EXTRA_SIGNALS}
_ARROW = {pl.String(): pa.string(), pl.Int64(): pa.int64(), pl.Float64(): pa.float64(), pl.Boolean(): pa.bool_()}
SIGNALS_TYPE = pa.struct([pa.field(name, _ARROW[dtype]) for name, dtype in ALL_SIGNALS.items()])


@dataclass
class Quality(Step):
    name: ClassVar[str] = "quality"
    adds: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("quality_signals", SIGNALS_TYPE),
        pa.field("quality_score", pa.float64()),
    )
    version: ClassVar[str] = "2"  # 2: classifier_score in the signals
    cost_per_mb: ClassVar[float] = 0.35  # heuristics + script-first language id, no perplexity
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))
    thresholds: dict[str, Any] = field(default_factory=dict)  # rule -> number | null | {latin:, cjk:, <lang>:}
    thresholds_from: str | None = None  # folder of <lang>.yaml calibrated thresholds (quality.calibrate)
    disable: list[str] = field(default_factory=list)
    filter: bool = True  # false: annotate only (tune thresholds on the catalog table first)
    detect_language: bool = True
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))  # lingua candidates
    keep_languages: list[str] | None = None  # reject other languages as "lang_not_allowed"
    lang_chars: int = 1000  # head of each text whose letters decide the script
    lingua_chars: int = 300  # head lingua reads where the script does not decide
    lingua_low_accuracy: bool = True
    perplexity: bool = False
    model: str | None = None  # local HF causal LM; None = bundled SmolLM2-135M-Instruct
    device: str = "auto"
    ppl_window: int = 512
    ppl_stride: int = 384
    ppl_max_tokens: int = 1024
    ppl_batch_tokens: int = 4096
    ppl_weight: float = 0.3  # share of perplexity in quality_score when computed
    ppl_good: float = 20.0  # perplexity scoring 1.0 ...
    ppl_bad: float = 1000.0  # ... and 0.0 (log scale in between)
    cjk_share: float = 0.3
    cjk_ngram_scale: int = 2
    short_line_chars: int = 30
    short_line_chars_cjk: int = 12
    classifier: str | None = None  # model file of python -m quality.train_classifier
    min_classifier_score: float | None = None  # reject as "classifier_score" below this (needs classifier)
    # the loaded threshold files: part of params(), so editing a file recomputes the stage
    calibrated: dict[str, Any] = field(default_factory=dict, init=False)
    classifier_sha: str = field(default="", init=False)  # the model file's content, likewise

    def __post_init__(self) -> None:
        if self.thresholds_from is not None:
            self.calibrated = as_plain(load_dir(self.thresholds_from))
        if self.classifier is not None:
            read_header(Path(self.classifier))  # another version / not a model: one clear line, now
            self.classifier_sha = file_sha256(Path(self.classifier))
        if self.min_classifier_score is not None:
            if self.classifier is None:
                raise ValueError("min_classifier_score needs a classifier (a model file)")
            if not 0.0 <= self.min_classifier_score <= 1.0:
                raise ValueError(f"min_classifier_score must be in [0, 1], got {self.min_classifier_score}")
        self._rules = configure_rules(
            self.families, self.thresholds, self.disable, calibrated=from_plain(self.calibrated), where=self.name
        )
        if not 0.0 <= self.ppl_weight <= 1.0:
            raise ValueError(f"ppl_weight must be in [0, 1], got {self.ppl_weight}")
        if not 1.0 < self.ppl_good < self.ppl_bad:
            raise ValueError("need 1 < ppl_good < ppl_bad")
        self._ppl_cfg = PerplexityConfig(
            self.model, self.device, self.ppl_window, self.ppl_stride, self.ppl_max_tokens, self.ppl_batch_tokens
        )
        self._signal_cfg = SignalConfig(
            self.cjk_share, self.cjk_ngram_scale, self.short_line_chars, self.short_line_chars_cjk
        )
        self._lid: LanguageIdentifier | None = None
        self._scorer: PerplexityScorer | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Workers get the parameters, never a loaded model or detector."""
        return {**self.__dict__, "_lid": None, "_scorer": None}

    def setup(self, root: Path) -> None:
        if self.detect_language and self._lid is None:
            self._lid = LanguageIdentifier(
                self.languages,
                max_chars=self.lang_chars,
                lingua_chars=self.lingua_chars,
                low_accuracy=self.lingua_low_accuracy,
            )
        if self.perplexity and self._scorer is None:
            self._scorer = PerplexityScorer(self._ppl_cfg)
        if self.classifier is not None:
            cached_classifier(self.classifier, self.classifier_sha)  # once per worker process

    def score(self, df: pl.DataFrame, state_dir: Path | None = None) -> pl.DataFrame:
        """The signals frame for ``df`` (one row per document, `ALL_SIGNALS` columns)."""
        texts = df.get_column("text")
        sig = compute_signals(texts, self._signal_cfg)
        if self.detect_language:
            if self._lid is None:
                self.setup(state_dir.parent if state_dir else Path("."))
            assert self._lid is not None
            ident = self._lid.identify(texts).rename({"lang": "lang_detected"})
            sig = sig.with_columns(ident)
        if self.perplexity:
            if self._scorer is None:
                self.setup(state_dir.parent if state_dir else Path("."))
            assert self._scorer is not None and state_dir is not None
            ppl, _ = score_with_cache(self._scorer, df.get_column("doc_id"), texts, state_dir)
            sig = sig.with_columns(ppl.get_column("perplexity"), ppl.get_column("ppl_tokens"))
        if self.classifier is not None:
            model = cached_classifier(self.classifier, self.classifier_sha)
            sig = sig.with_columns(pl.Series("classifier_score", model.score(texts.to_list()), dtype=pl.Float64))
        missing = [pl.lit(None, dtype=t).alias(n) for n, t in EXTRA_SIGNALS.items() if n not in sig.columns]
        return sig.with_columns(missing).select(list(ALL_SIGNALS))

    def cost(self) -> float:
        return 2000.0 if self.perplexity else self.cost_per_mb  # SmolLM2 on a CPU: ~128 tokens per CPU-s

    def applied_thresholds(self) -> list[tuple[str, str, float]]:
        """Every rule's effective threshold on its signal (defaults plus overrides), per script."""
        found: list[tuple[str, str, float]] = []
        annotate = "" if self.filter else " [not applied: filter false]"
        for rule in self._rules:
            if rule.kind == "flag":
                continue
            values = {"latin": rule.latin, "cjk": rule.cjk}
            if values["latin"] == values["cjk"]:
                values = {"": rule.latin}
            for script, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    label = f"{rule.name}{f' ({script})' if script else ''}{annotate}"
                    found.append((rule.signal, label, float(value)))
        if self.min_classifier_score is not None:
            found.append(("classifier_score", f"min_classifier_score{annotate}", float(self.min_classifier_score)))
        return found

    def quality_score(self, sig: pl.DataFrame, rule_score: pl.Series) -> pl.Series:
        """Mean rule margin, blended with a log-scaled perplexity score when there is one."""
        lo, hi = math.log(self.ppl_good), math.log(self.ppl_bad)
        ppl_s = ((hi - sig.get_column("perplexity").log()) / (hi - lo)).clip(0.0, 1.0)
        w = self.ppl_weight
        blended = pl.select(
            pl.when(ppl_s.is_null()).then(rule_score).otherwise((1 - w) * rule_score + w * ppl_s)
        ).to_series()
        return blended.clip(0.0, 1.0).alias("quality_score")

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        sig = self.score(df, ctx.state_dir)
        lang = pl.coalesce(pl.col("lang"), pl.col("lang_detected")) if self.detect_language else pl.col("lang")
        with_lang = pl.concat([df.select("lang"), sig], how="horizontal").with_columns(lang.alias("lang"))
        verdict = evaluate(with_lang, self._rules)
        reason = verdict.get_column("reason")
        detail = verdict.get_column("detail")
        if self.keep_languages is not None:
            bad = ~with_lang.get_column("lang").is_in(self.keep_languages).fill_null(False)
            reason = pl.select(pl.when(bad).then(pl.lit("lang_not_allowed")).otherwise(reason)).to_series()
            detail = pl.select(
                pl.when(bad)
                .then(pl.format("lang={}", with_lang.get_column("lang").fill_null("unknown")))
                .otherwise(detail)
            ).to_series()
        if self.min_classifier_score is not None:
            cls = sig.get_column("classifier_score")
            low = (cls < self.min_classifier_score) & reason.is_null()
            reason = pl.select(pl.when(low).then(pl.lit("classifier_score")).otherwise(reason)).to_series()
            detail = pl.select(
                pl.when(low)
                .then(pl.format("classifier_score={} < {}", cls.round(4), pl.lit(self.min_classifier_score)))
                .otherwise(detail)
            ).to_series()
        score = self.quality_score(sig, verdict.get_column("rule_score"))
        if not self.filter:
            reason = pl.Series("reason", [None] * df.height, dtype=pl.String)
        self._write_table(df, with_lang, score, reason, verdict, ctx)
        out = df.with_columns(
            with_lang.get_column("lang"),
            sig.select(pl.struct(pl.all()).alias("quality_signals")).to_series(),
            score,
            reason.alias("__reason"),
            detail.alias("__detail"),
        )
        result = split_by_mask(
            out, pl.col("__reason").is_not_null(), self.name, pl.col("__reason"), detail=pl.col("__detail")
        )
        result.kept = result.kept.drop("__reason", "__detail")
        return result

    def _write_table(
        self,
        df: pl.DataFrame,
        signals: pl.DataFrame,
        score: pl.Series,
        reason: pl.Series,
        verdict: pl.DataFrame,
        ctx: ShardContext,
    ) -> None:
        """Flattened signals of every document, with the decision, for SQL over the catalog: the
        first failing rule (also with ``filter: false``), its value, threshold and their origin."""
        table = pl.concat(
            [
                df.select("doc_id", "source"),
                signals,
                pl.DataFrame([score, reason.alias("reason")]),
                verdict.select(
                    pl.col("reason").alias("failed_rule"), "failed_value", "failed_threshold", "threshold_from"
                ),
            ],
            how="horizontal",
        ).with_columns(pl.col("reason").is_null().alias("kept"))
        write_table(table.to_arrow(), ctx.table_dir(TABLE) / f"part-{ctx.shard_index:05d}.parquet")
