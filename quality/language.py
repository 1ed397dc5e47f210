"""Language identification with lingua (offline models shipped in the wheel), batched.

Only the first ``max_chars`` characters of a document are examined: language is settled long
before that, and lingua's cost grows with length. One call classifies a whole shard with lingua's
own thread pool (``compute_language_confidence_values_in_parallel``), never one document at a time
from Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import polars as pl
from lingua import IsoCode639_1, LanguageDetector, LanguageDetectorBuilder

# A compact default set: the languages a mixed English/Chinese web and legal crawl actually meets.
# Fewer candidate languages = faster and fewer confusions; pass more (ISO 639-1) to widen it.
DEFAULT_LANGUAGES = ("en", "zh", "ja", "ko", "fr", "de", "es", "pt", "it", "nl", "ru", "ar", "vi", "id")


@lru_cache(maxsize=4)
def _detector(codes: tuple[IsoCode639_1, ...]) -> LanguageDetector:
    """One detector per language set and process: loading the models is the expensive part."""
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


class LanguageIdentifier:
    """Wraps one lingua detector; build once per worker (loading models takes ~1 s)."""

    def __init__(self, languages: Sequence[str] = DEFAULT_LANGUAGES, *, max_chars: int = 1000) -> None:
        codes = []
        for code in languages:
            try:
                codes.append(IsoCode639_1.from_str(code.lower()))
            except ValueError:
                raise ValueError(f"lingua does not know the ISO 639-1 language code {code!r}") from None
        if len(codes) < 2:
            raise ValueError("language identification needs at least two candidate languages")
        self.max_chars = max_chars
        self.detector = _detector(tuple(sorted(codes, key=str)))

    def identify(self, texts: pl.Series) -> pl.DataFrame:
        """``lang`` (ISO 639-1, null when undecidable) and ``lang_confidence`` in [0, 1] per text."""
        heads = texts.cast(pl.String).fill_null("").str.slice(0, self.max_chars).to_list()
        results = self.detector.compute_language_confidence_values_in_parallel(heads)
        langs: list[str | None] = []
        conf: list[float] = []
        for ranked in results:
            if ranked and ranked[0].value > 0:
                langs.append(ranked[0].language.iso_code_639_1.name.lower())
                conf.append(float(ranked[0].value))
            else:
                langs.append(None)
                conf.append(0.0)
        return pl.DataFrame(
            {"lang": langs, "lang_confidence": conf}, schema={"lang": pl.String, "lang_confidence": pl.Float64}
        )
