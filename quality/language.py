"""Language identification: the script decides where it can, lingua only where it must.

Why: running lingua on every document was 76% of the ``quality`` step. Most documents of a
Chinese/English corpus are settled by their characters alone: Han without Kana is Chinese, Kana
is Japanese, Hangul Korean, and Cyrillic or Arabic text is Russian or Arabic when that is the
only candidate in its script. Only the rest (Latin-script text, mixed text) goes to lingua, on a
bounded head of ``lingua_chars`` characters, with only the candidates that fit the script, in
lingua's low-accuracy mode (trigram models: several times faster, and sure enough on a few
hundred characters). The script counts are one vectorised Polars pass over a bounded head too.

The lingua detector is built lazily, once per process and candidate set, the first time a
document needs it, and without preloading every model: a shard of Chinese text never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import polars as pl

# A compact default set: the languages a mixed English/Chinese web and legal crawl actually meets.
# Fewer candidate languages = faster and fewer confusions; pass more (ISO 639-1) to widen it.
DEFAULT_LANGUAGES = ("en", "zh", "ja", "ko", "fr", "de", "es", "pt", "it", "nl", "ru", "ar", "vi", "id")
# The script of each language lingua knows that a candidate set may contain (the rest: "latin").
SCRIPT_OF = {
    "zh": "han",
    "ja": "kana",
    "ko": "hangul",
    **dict.fromkeys(("ru", "uk", "be", "bg", "mk", "sr", "kk", "mn"), "cyrillic"),
    **dict.fromkeys(("ar", "fa", "ur"), "arabic"),
    "el": "greek",
    "he": "hebrew",
    "hi": "devanagari",
    "mr": "devanagari",
    "th": "thai",
    "ka": "georgian",
    "hy": "armenian",
}
_SCRIPT_RE = {
    "han": r"\p{Han}",
    "kana": r"[\p{Hiragana}\p{Katakana}]",
    "hangul": r"\p{Hangul}",
    "latin": r"\p{Latin}",
    "cyrillic": r"\p{Cyrillic}",
    "arabic": r"\p{Arabic}",
    "greek": r"\p{Greek}",
    "hebrew": r"\p{Hebrew}",
    "devanagari": r"\p{Devanagari}",
    "thai": r"\p{Thai}",
    "georgian": r"\p{Georgian}",
    "armenian": r"\p{Armenian}",
}
DOMINANT = 0.5  # share of a text's letters a script needs to decide alone
KANA_SHARE = 0.05  # Japanese mixes Han with Kana; a few Kana per hundred letters already say Japanese


@lru_cache(maxsize=8)
def _detector(codes: tuple[str, ...], low_accuracy: bool):  # -> lingua.LanguageDetector
    """One detector per candidate set and process, built on first use; models load lazily."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*(IsoCode639_1.from_str(c) for c in codes))
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def _known_code(code: str) -> str:
    from lingua import IsoCode639_1

    try:
        IsoCode639_1.from_str(code.lower())
    except ValueError:
        raise ValueError(f"lingua does not know the ISO 639-1 language code {code!r}") from None
    return code.lower()


class LanguageIdentifier:
    """Script first, then lingua on what the script leaves open. Cheap to build: nothing loads
    until a document needs lingua."""

    def __init__(
        self,
        languages: Sequence[str] = DEFAULT_LANGUAGES,
        *,
        max_chars: int = 1000,
        lingua_chars: int = 300,
        low_accuracy: bool = True,
        use_script: bool = True,
    ) -> None:
        codes = sorted({_known_code(c) for c in languages})
        if len(codes) < 2:
            raise ValueError("language identification needs at least two candidate languages")
        if max_chars < 1 or lingua_chars < 1:
            raise ValueError("max_chars and lingua_chars must be positive")
        self.languages = tuple(codes)
        self.max_chars = max_chars
        self.lingua_chars = min(lingua_chars, max_chars)
        self.low_accuracy = low_accuracy
        self.use_script = use_script
        by_script: dict[str, list[str]] = {}
        for code in codes:
            by_script.setdefault(SCRIPT_OF.get(code, "latin"), []).append(code)
        self.by_script = by_script
        self.scripts = sorted({*by_script, "han", "kana", "latin"})

    def script_shares(self, texts: pl.Series) -> pl.DataFrame:
        """Letters per script in each text's head, as shares of its letters (plus ``letters``)."""
        heads = pl.DataFrame({"t": texts.cast(pl.String).fill_null("").str.slice(0, self.max_chars)})
        counts = heads.select(
            pl.col("t").str.count_matches(r"\p{L}").alias("letters"),
            *(pl.col("t").str.count_matches(_SCRIPT_RE[s]).alias(s) for s in self.scripts),
        )
        shares = [(pl.col(s) / pl.col("letters")).fill_nan(0.0).fill_null(0.0).alias(s) for s in self.scripts]
        return counts.select("letters", *shares)

    def decide_by_script(self, shares: pl.DataFrame) -> pl.DataFrame:
        """``lang``/``lang_confidence`` where the script decides, null where lingua must look."""
        lang: pl.Expr = pl.lit(None, dtype=pl.String)
        conf: pl.Expr = pl.lit(None, dtype=pl.Float64)
        rules: list[tuple[pl.Expr, str, pl.Expr]] = []
        if "ja" in self.languages:
            rules.append(((pl.col("kana") >= KANA_SHARE), "ja", pl.col("kana") + pl.col("han")))
        if "zh" in self.languages:
            no_kana = pl.col("kana") < KANA_SHARE if "ja" in self.languages else pl.lit(True)
            rules.append(((pl.col("han") >= DOMINANT) & no_kana, "zh", pl.col("han")))
        for script, codes in self.by_script.items():
            if script not in ("han", "kana", "latin") and len(codes) == 1:
                rules.append(((pl.col(script) >= DOMINANT), codes[0], pl.col(script)))
        for cond, code, share in reversed(rules):
            lang = pl.when(cond).then(pl.lit(code)).otherwise(lang)
            conf = pl.when(cond).then(share).otherwise(conf)
        none = pl.col("letters") == 0
        return shares.select(
            pl.when(none).then(None).otherwise(lang).alias("lang"),
            pl.when(none).then(0.0).otherwise(conf).alias("lang_confidence"),
            (~none & lang.is_null()).alias("needs_model"),
        )

    def identify(self, texts: pl.Series) -> pl.DataFrame:
        """``lang`` (ISO 639-1, null when undecidable) and ``lang_confidence`` in [0, 1] per text."""
        shares = self.script_shares(texts)
        if self.use_script:
            decided = self.decide_by_script(shares)
        else:
            decided = pl.DataFrame(
                {
                    "lang": [None] * len(texts),
                    "lang_confidence": [None] * len(texts),
                    "needs_model": [True] * len(texts),
                },
                schema={"lang": pl.String, "lang_confidence": pl.Float64, "needs_model": pl.Boolean},
            )
        rows = decided.with_row_index("row").filter("needs_model")
        langs = decided.get_column("lang").to_list()
        conf = decided.get_column("lang_confidence").fill_null(0.0).to_list()
        if rows.height:
            latin = shares.get_column("latin").gather(rows.get_column("row")).to_list()
            heads = texts.cast(pl.String).fill_null("").gather(rows.get_column("row")).str.slice(0, self.lingua_chars)
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, share in enumerate(latin):
                # mostly Latin letters: only Latin-script candidates (fewer models, fewer confusions)
                latin_codes = tuple(self.by_script.get("latin", ()))
                codes = latin_codes if share >= DOMINANT and len(latin_codes) >= 2 else self.languages
                groups.setdefault(codes, []).append(i)
            row_ids = rows.get_column("row").to_list()
            head_list = heads.to_list()
            for codes, members in groups.items():
                detector = _detector(codes, self.low_accuracy)
                results = detector.compute_language_confidence_values_in_parallel([head_list[i] for i in members])
                for i, ranked in zip(members, results, strict=True):
                    r = row_ids[i]
                    if ranked and ranked[0].value > 0:
                        langs[r] = ranked[0].language.iso_code_639_1.name.lower()
                        conf[r] = float(ranked[0].value)
                    else:
                        langs[r], conf[r] = None, 0.0
        return pl.DataFrame(
            {"lang": langs, "lang_confidence": conf}, schema={"lang": pl.String, "lang_confidence": pl.Float64}
        )
