"""Heuristic quality signals (Gopher quality, Gopher repetition, C4, FineWeb) as vectorised Polars.

Every signal is computed for a whole column of texts at once: document-level counts are regex
``count_matches`` passes, line/paragraph statistics explode the texts into a long frame and
aggregate back by document, and n-gram repetition hashes word units with a wrapping polynomial
hash over shifted columns, checking longer n-grams only where shorter ones repeat. No Python
runs per document, which is where the speed over datatrove's per-document filters comes from.

CJK awareness: a document is ``script == "cjk"`` when at least ``cjk_share`` of its word
characters (CJK characters + letters/digits of other words) are Han/Kana/Hangul. Word-based
signals count *word units*: a Latin word, or one CJK character, so Chinese is never "one
3,000-character word". N-gram repetition runs on characters for CJK text with n scaled by
``cjk_ngram_scale`` (a 5-gram of words ~ a 10-gram of Han characters), and the short-line
length is per script. Thresholds per script live in `quality.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from quality import patterns as P
from quality.segment import word_counts

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_MUL = 0x100000001B3  # FNV prime: the rolling-hash multiplier (u64 arithmetic wraps)
_DOC_MUL = 0x9E3779B97F4A7C15  # golden-ratio constant: mixes the document index into n-gram keys

# (name, dtype) of every heuristic signal, in output order. Ratios are in [0, 1] unless named *_ratio.
SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "script": pl.String(),
    "n_chars": pl.Int64(),
    "n_words": pl.Int64(),
    "n_cjk_chars": pl.Int64(),
    "n_lines": pl.Int64(),
    "tokens_est": pl.Int64(),
    "mean_word_len": pl.Float64(),
    "hash_ratio": pl.Float64(),
    "ellipsis_ratio": pl.Float64(),
    "bullet_lines_frac": pl.Float64(),
    "ellipsis_lines_frac": pl.Float64(),
    "alpha_frac": pl.Float64(),
    "stop_words": pl.Int64(),
    "dict_word_frac": pl.Float64(),
    "dup_para_frac": pl.Float64(),
    "dup_para_char_frac": pl.Float64(),
    "dup_line_frac": pl.Float64(),
    "dup_line_char_frac": pl.Float64(),
    **{f"top_{n}gram_frac": pl.Float64() for n in TOP_NGRAMS},
    **{f"dup_{n}gram_frac": pl.Float64() for n in DUP_NGRAMS},
    "c4_sentences": pl.Int64(),
    "sentences": pl.Int64(),
    "c4_javascript_lines": pl.Int64(),
    "c4_policy_lines": pl.Int64(),
    "has_lorem_ipsum": pl.Boolean(),
    "has_curly_bracket": pl.Boolean(),
    "curly_brackets": pl.Int64(),
    "code_lines_frac": pl.Float64(),
    "line_punct_frac": pl.Float64(),
    "short_line_frac": pl.Float64(),
    "char_dup_frac": pl.Float64(),
    "newline_ratio": pl.Float64(),
}


@dataclass(frozen=True)
class SignalConfig:
    """Knobs of the signal *definitions* (thresholds are rules, not signals)."""

    cjk_share: float = 0.3  # share of word characters that are CJK for a document to count as CJK
    cjk_ngram_scale: int = 2  # CJK n-grams are n * scale characters
    short_line_chars: int = 30  # FineWeb's short line, Latin script
    short_line_chars_cjk: int = 12  # ~ the same amount of content in Han characters
    word_sample_chars: int = 1000  # dictionary words are matched on this head of a CJK text (stable, bounded cost)


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, 0.0 where den is 0 (an empty document has no duplicated lines, no hashes...)."""
    return pl.when(den > 0).then(num.cast(pl.Float64) / den).otherwise(0.0)


def compute_signals(texts: pl.Series, cfg: SignalConfig | None = None) -> pl.DataFrame:
    """One row of heuristic signals per text, in input order, columns as `SIGNAL_SCHEMA`."""
    cfg = cfg or SignalConfig()
    frame = pl.DataFrame({"text": texts.cast(pl.String).fill_null("")}).with_row_index("doc")
    docs = _doc_counts(frame, cfg)
    docs = docs.join(_cjk_words(frame.with_columns(docs.get_column("is_cjk")), cfg), on="doc", how="left")
    frame = frame.with_columns(docs.get_column("is_cjk"))
    lines = _line_stats(frame, cfg)
    paras = _para_stats(frame)
    grams = _ngram_stats(frame, cfg)
    out = docs.join(lines, on="doc", how="left").join(paras, on="doc", how="left").join(grams, on="doc", how="left")
    out = out.sort("doc").with_columns(pl.col(pl.Float64).fill_null(0.0), pl.col(pl.Int64, pl.UInt32).fill_null(0))
    n_chars = pl.col("n_chars")
    nonlf = n_chars - pl.col("_newlines")
    n_lines = pl.col("n_lines")
    return out.select(
        pl.when(pl.col("is_cjk")).then(pl.lit("cjk")).otherwise(pl.lit("latin")).alias("script"),
        n_chars,
        pl.col("n_words"),
        pl.col("n_cjk_chars"),
        n_lines,
        ((n_chars - pl.col("n_cjk_chars") - pl.col("_spaces")) / 4 + pl.col("n_cjk_chars")).ceil().alias("tokens_est"),
        _mean_word_len(),
        _ratio(pl.col("_hashes"), pl.col("n_words")).alias("hash_ratio"),
        _ratio(pl.col("_ellipses"), pl.col("n_words")).alias("ellipsis_ratio"),
        _ratio(pl.col("_bullet_lines"), n_lines).alias("bullet_lines_frac"),
        _ratio(pl.col("_ellipsis_lines"), n_lines).alias("ellipsis_lines_frac"),
        _ratio(pl.col("_alpha_chunks"), pl.col("_chunks")).alias("alpha_frac"),
        pl.when(pl.col("is_cjk")).then(pl.col("_stop_cjk")).otherwise(pl.col("_stop_latin")).alias("stop_words"),
        pl.when(pl.col("is_cjk") & (pl.col("_head_han") > 0))
        .then(pl.col("_dict_chars") / pl.col("_head_han"))
        .otherwise(None)
        .alias("dict_word_frac"),
        _ratio(pl.col("_dup_paras"), pl.col("_n_paras")).alias("dup_para_frac"),
        _ratio(pl.col("_dup_para_chars"), n_chars).alias("dup_para_char_frac"),
        _ratio(pl.col("_dup_lines"), n_lines).alias("dup_line_frac"),
        _ratio(pl.col("_dup_line_chars"), n_chars).alias("dup_line_char_frac"),
        *[_ratio(pl.col(f"_top_{n}"), n_chars).alias(f"top_{n}gram_frac") for n in TOP_NGRAMS],
        *[_ratio(pl.col(f"_dup_{n}"), n_chars).alias(f"dup_{n}gram_frac") for n in DUP_NGRAMS],
        pl.col("c4_sentences"),
        pl.col("sentences"),
        pl.col("c4_javascript_lines"),
        pl.col("c4_policy_lines"),
        pl.col("has_lorem_ipsum"),
        pl.col("has_curly_bracket"),
        pl.col("curly_brackets"),
        _ratio(pl.col("_code_lines"), n_lines).alias("code_lines_frac"),
        _ratio(pl.col("_term_lines"), n_lines).alias("line_punct_frac"),
        _ratio(pl.col("_short_lines"), n_lines).alias("short_line_frac"),
        _ratio(pl.col("_dup_line_chars"), nonlf).alias("char_dup_frac"),
        _ratio(pl.col("_newlines"), pl.col("n_words")).alias("newline_ratio"),
    ).cast(SIGNAL_SCHEMA)  # type: ignore[arg-type]


def _mean_word_len() -> pl.Expr:
    """Characters per word: Latin words, and for CJK text also dictionary words plus the Han
    characters outside them counted as one-character words (`quality.segment`)."""
    latin = pl.when(pl.col("_latin_words") > 0).then(pl.col("_latin_word_chars") / pl.col("_latin_words"))
    # on the head the dictionary saw: its Han characters in words, plus the rest one character each
    cjk_words = pl.col("_dict_words") + pl.col("_head_han") - pl.col("_dict_chars")
    cjk = pl.when(cjk_words > 0).then(pl.col("_head_han") / cjk_words)
    return pl.when(pl.col("is_cjk")).then(cjk).otherwise(latin).alias("mean_word_len")


def _cjk_words(frame: pl.DataFrame, cfg: SignalConfig) -> pl.DataFrame:
    """Dictionary-word counts on the head of each CJK document (zero for the others: no matching
    on Latin text): ``_dict_words``, ``_dict_chars`` (Han characters in them), ``_head_han``."""
    sub = frame.filter(pl.col("is_cjk")).select("doc", pl.col("text").str.slice(0, cfg.word_sample_chars))
    counts = word_counts(sub.get_column("text")).rename({"dict_words": "_dict_words", "dict_chars": "_dict_chars"})
    head_han = sub.select(pl.col("text").str.count_matches(r"\p{Han}").cast(pl.Int64).alias("_head_han"))
    out = pl.concat([sub.select("doc"), counts, head_han], how="horizontal")
    return frame.select("doc").join(out, on="doc", how="left").fill_null(0)


def _doc_counts(frame: pl.DataFrame, cfg: SignalConfig) -> pl.DataFrame:
    """Whole-document counts: one regex pass each over the text column."""
    t = pl.col("text")
    out = frame.select(
        "doc",
        t.str.len_chars().alias("n_chars"),
        t.str.count_matches(P.CJK_CHAR).alias("n_cjk_chars"),
        t.str.count_matches(P.LATIN_WORD).alias("_latin_words"),
        t.str.count_matches(r"[\p{P}\p{S}]").alias("_punct"),
        t.str.count_matches(r"\s").alias("_spaces"),
        t.str.count_matches("#", literal=True).alias("_hashes"),
        t.str.count_matches(P.ELLIPSIS).alias("_ellipses"),
        t.str.count_matches(P.CHUNK).alias("_chunks"),
        t.str.count_matches(P.ALPHA_CHUNK).alias("_alpha_chunks"),
        t.str.extract_all(P.STOP_LATIN_RE)
        .list.eval(pl.element().str.to_lowercase())
        .list.n_unique()
        .alias("_stop_latin"),
        t.str.extract_all(P.STOP_CJK_RE).list.n_unique().alias("_stop_cjk"),
        t.str.contains(P.LOREM).alias("has_lorem_ipsum"),
        t.str.count_matches(P.CURLY).cast(pl.Int64).alias("curly_brackets"),
        t.str.count_matches("\n", literal=True).alias("_newlines"),
    )
    # letters/digits of Latin-style words = what is neither space, punctuation/symbol nor CJK (one
    # regex pass over the rarer punctuation instead of one match per letter)
    out = out.with_columns(
        (pl.col("n_chars") - pl.col("_spaces") - pl.col("n_cjk_chars") - pl.col("_punct")).alias("_latin_word_chars"),
        (pl.col("curly_brackets") > 0).alias("has_curly_bracket"),
    )
    return out.with_columns(
        (pl.col("n_cjk_chars") >= cfg.cjk_share * (pl.col("n_cjk_chars") + pl.col("_latin_word_chars")))
        .and_(pl.col("n_cjk_chars") > 0)
        .alias("is_cjk"),
        (pl.col("_latin_words") + pl.col("n_cjk_chars")).alias("n_words"),
    )


def _line_stats(frame: pl.DataFrame, cfg: SignalConfig) -> pl.DataFrame:
    """Per-line flags on the exploded non-empty lines, aggregated per document."""
    lines = (
        frame.select("doc", "is_cjk", pl.col("text").str.split("\n").alias("line"))
        .explode("line")
        .with_columns(pl.col("line").str.strip_chars())
        .filter(pl.col("line").str.len_bytes() > 0)
    )
    line = pl.col("line")
    short_len = pl.when(pl.col("is_cjk")).then(cfg.short_line_chars_cjk).otherwise(cfg.short_line_chars)
    ellipsis_end = line.str.contains(P.ELLIPSIS_END)
    js = line.str.contains(P.JAVASCRIPT)
    policy = line.str.contains(P.POLICY)
    words3 = line.str.count_matches(P.WORD_UNIT) >= 3
    c4_kept = line.str.contains(P.C4_END) & ~ellipsis_end & words3 & ~js & ~policy
    # Chinese: every sentence mark counts (a clause ends in ；, a case fact may be one long sentence
    # without a final 。), and a numbered article or item line is one sentence when it has no mark.
    cjk_sentences = (
        pl.when(~words3 | js | policy)
        .then(0)
        .otherwise(
            pl.max_horizontal(
                line.str.count_matches(P.SENTENCE_END_CJK) + line.str.contains(P.UNTERMINATED_CJK).cast(pl.UInt32),
                line.str.contains(P.NUMBERED_LINE).cast(pl.UInt32),
            )
        )
    )
    latin_sentences = pl.when(c4_kept).then(line.str.count_matches(P.SENTENCE_END).clip(lower_bound=1)).otherwise(0)
    # Latin sentences wherever they end: C4 counts only lines that end in a mark, so hard-wrapped
    # text (licences, plain-text statutes) has almost none
    code = line.str.contains(P.CODE_LINE_START) | pl.any_horizontal(line.str.ends_with(e) for e in P.CODE_LINE_ENDS)
    # (an end-anchored regex scans every line: strip the quotes and test the last character instead)
    colon_end = line.str.strip_chars_end(P.COLON_QUOTES).str.ends_with(":")
    colon = (colon_end & ~code & ~line.str.contains(P.CODE_BLOCK_START)).cast(pl.UInt32)
    any_sentences = pl.when(~words3 | js | policy).then(0).otherwise(line.str.count_matches(P.SENTENCE_END) + colon)
    length = line.str.len_chars()
    repeat = ~pl.struct("doc", "line").is_first_distinct()
    return lines.group_by("doc").agg(
        pl.len().cast(pl.Int64).alias("n_lines"),
        line.str.contains(P.BULLET_START).sum().alias("_bullet_lines"),
        ellipsis_end.sum().alias("_ellipsis_lines"),
        line.str.contains(P.TERMINAL_END).sum().alias("_term_lines"),
        code.sum().alias("_code_lines"),
        (length <= short_len).sum().alias("_short_lines"),
        pl.when(pl.col("is_cjk"))
        .then(cjk_sentences)
        .otherwise(latin_sentences)
        .sum()
        .cast(pl.Int64)
        .alias("c4_sentences"),
        pl.when(pl.col("is_cjk")).then(cjk_sentences).otherwise(any_sentences).sum().cast(pl.Int64).alias("sentences"),
        js.sum().cast(pl.Int64).alias("c4_javascript_lines"),
        policy.sum().cast(pl.Int64).alias("c4_policy_lines"),
        repeat.sum().alias("_dup_lines"),
        pl.when(repeat).then(length).otherwise(0).sum().alias("_dup_line_chars"),
    )


def _para_stats(frame: pl.DataFrame) -> pl.DataFrame:
    """Duplicated paragraphs (blocks separated by blank lines)."""
    paras = (
        frame.select("doc", pl.col("text").str.split("\n\n").alias("para"))
        .explode("para")
        .with_columns(pl.col("para").str.strip_chars())
        .filter(pl.col("para").str.len_bytes() > 0)
    )
    repeat = ~pl.struct("doc", "para").is_first_distinct()
    return paras.group_by("doc").agg(
        pl.len().alias("_n_paras"),
        repeat.sum().alias("_dup_paras"),
        pl.when(repeat).then(pl.col("para").str.len_chars()).otherwise(0).sum().alias("_dup_para_chars"),
    )


def _ngram_stats(frame: pl.DataFrame, cfg: SignalConfig) -> pl.DataFrame:
    """Top and duplicated n-gram character fractions, Latin words and CJK characters handled apart."""
    parts = []
    for is_cjk, scale, sep in ((False, 1, 1), (True, cfg.cjk_ngram_scale, 0)):
        sub = frame.filter(pl.col("is_cjk") == is_cjk)
        if sub.height:
            parts.append(_ngrams_of(sub, scale, sep))
    cols = [f"_top_{n}" for n in TOP_NGRAMS] + [f"_dup_{n}" for n in DUP_NGRAMS]
    out = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame(schema={"doc": pl.UInt32})
    return out.with_columns(pl.lit(None, dtype=pl.Int64).alias(c) for c in cols if c not in out.columns)


def _ngrams_of(frame: pl.DataFrame, scale: int, sep: int) -> pl.DataFrame:
    """One row per word unit, n-gram keys by rolling hash, n-grams checked from short to long.

    top n-gram: among n-grams occurring more than once, max(count x characters) per document.
    dup n-gram: characters of words covered by a repeat (not the first occurrence) of any n-gram,
    the vectorised form of datatrove's greedy scan.
    Repetition is monotone (a repeated (n+1)-gram starts with a repeated n-gram), so each longer n
    only looks at the positions whose shorter n-gram repeats: a small fraction of the text.
    """
    tokens = (
        frame.select("doc", pl.col("text").str.extract_all(P.WORD_UNIT).alias("w"))
        .explode("w")
        .drop_nulls("w")
        .select("doc", pl.col("w").str.len_chars().cast(pl.Int64).alias("len"), pl.col("w").hash(seed=17).alias("h"))
    )
    if tokens.height == 0:
        return frame.select("doc")
    doc, h1, w_len = tokens.get_column("doc"), tokens.get_column("h"), tokens.get_column("len")
    rows = len(doc)
    doc_key = doc.cast(pl.UInt64) * _DOC_MUL
    len_sum = w_len.cum_sum()
    cand = pl.Series("i", range(rows), dtype=pl.Int64)  # positions whose shorter n-gram repeats
    key = pl.zeros(rows, dtype=pl.UInt64, eager=True)  # hash of the n-gram at each candidate, grown unit by unit
    key_size = 0
    covered: dict[str, pl.Series] = {}
    tops: list[pl.DataFrame] = []
    for n in (*TOP_NGRAMS, *DUP_NGRAMS):
        size = n * scale
        # keep the positions whose n-gram lies inside one document, then grow their hashes
        if key_size == 0:  # every position is a candidate: shifted columns are cheaper than gathers
            for k in range(size):
                key = key * _MUL + h1.shift(-k, fill_value=0)
            inside = (doc.shift(-(size - 1)) == doc).fill_null(False)
            cand, key = cand.filter(inside), key.filter(inside)
        else:
            last = cand + (size - 1)
            inside = (last < rows) & (doc.gather(last.clip(upper_bound=rows - 1)) == doc.gather(cand))
            cand, key = cand.filter(inside), key.filter(inside)
            for k in range(key_size, size):  # only the candidates' hashes grow: a shrinking set
                key = key * _MUL + h1.gather(cand + k)
        key_size = size
        keys = key + doc_key.gather(cand)
        repeated = keys.is_duplicated()
        if n in TOP_NGRAMS:
            clen = len_sum.gather(cand + (size - 1)) - len_sum.gather(cand) + w_len.gather(cand)
            top = (
                pl.DataFrame({"doc": doc.gather(cand), "key": keys, "clen": clen})
                .filter(repeated)
                .group_by("key")
                .agg(pl.col("doc").first(), (pl.len() * (pl.col("clen").first() + (size - 1) * sep)).alias("v"))
                .group_by("doc")
                .agg(pl.col("v").max().cast(pl.Int64).alias(f"_top_{n}"))
            )
            tops.append(top)
        else:
            later = cand.filter(~keys.is_first_distinct())
            dup_start = pl.zeros(rows, dtype=pl.UInt8, eager=True).scatter(later, 1)
            cover = dup_start.rolling_max(window_size=size, min_samples=1).cast(pl.Int64)
            covered[f"_dup_{n}"] = w_len * cover
        cand, key = cand.filter(repeated), key.filter(repeated)
    out = pl.DataFrame({"doc": doc, **covered}).group_by("doc").agg(pl.col(list(covered)).sum())
    for top in tops:
        out = out.join(top, on="doc", how="left")
    return frame.select("doc").join(out, on="doc", how="left")
