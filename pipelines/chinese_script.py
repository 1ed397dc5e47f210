"""Traditional <-> Simplified Chinese with OpenCC, converting only what is in the other script.

Why not convert every text: OpenCC's ``t2s`` is not the identity on Simplified text. A
mainland document naming 乾县 (a county) or quoting 乾隆 comes out as 干县, because 乾 is also
the Traditional form of 干. So a document is converted only when it is *written* in the other
script: it holds more characters that only that script uses than characters that only the
target script uses (`script_counts`). Those character sets are the characters OpenCC's
``t2s`` / ``s2t`` change on their own (about 4,200 and 3,200, computed once per process from
the installed OpenCC), minus the ones both change (compatibility ideographs that NFKC folds
anyway).

A Simplified corpus is then mostly checked, not converted: one regex pass over each text finds
the documents that contain any Traditional-only character at all, and only those are counted
and converted (`to_script`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

import numpy as np
import polars as pl

Script = Literal["simplified", "traditional"]
TARGETS = ("keep", "simplified", "traditional")
DEFAULT_CONFIG = {"simplified": "t2s", "traditional": "s2t"}  # OpenCC configuration per target
# the other script's configuration: which characters are "only Traditional" / "only Simplified"
_CHAR_CONFIG = {"traditional": "t2s", "simplified": "s2t"}
_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))


@lru_cache(maxsize=8)
def converter(config: str):  # -> opencc.OpenCC
    """An OpenCC converter for ``config`` (``t2s``, ``s2t``, ``tw2sp``, ``hk2s`` ...), once per process."""
    import opencc

    name = config.removesuffix(".json")
    try:
        return opencc.OpenCC(f"{name}.json")
    except Exception as exc:  # OpenCC raises a bare RuntimeError for an unknown configuration
        known = ", ".join(sorted(getattr(opencc, "CONFIGS", []))) or "t2s, s2t, tw2s, s2tw, hk2s, s2hk, tw2sp, s2twp"
        raise ValueError(f"unknown OpenCC configuration {config!r}; known: {known}") from exc


def _changed_by(config: str) -> set[str]:
    chars = [chr(c) for lo, hi in _HAN_RANGES for c in range(lo, hi + 1)]
    out = converter(config).convert("\n".join(chars)).split("\n")
    if len(out) != len(chars):  # a conversion never joins or splits lines; guard anyway
        raise RuntimeError(f"OpenCC {config} changed the number of lines of the character table")
    return {c for c, o in zip(chars, out, strict=True) if c != o}


@lru_cache(maxsize=1)
def script_only_chars() -> dict[str, str]:
    """``{"traditional": chars, "simplified": chars}``: characters only that script uses."""
    trad, simp = _changed_by(_CHAR_CONFIG["traditional"]), _changed_by(_CHAR_CONFIG["simplified"])
    both = trad & simp
    return {"traditional": "".join(sorted(trad - both)), "simplified": "".join(sorted(simp - both))}


@lru_cache(maxsize=2)
def _char_class(script: str) -> str:
    return "[" + "".join(re.escape(c) for c in script_only_chars()[script]) + "]"


def script_counts(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(Traditional-only, Simplified-only) character counts per text (int64 arrays)."""
    texts = texts.cast(pl.String).fill_null("")
    trad = texts.str.count_matches(_char_class("traditional")).to_numpy().astype(np.int64)
    simp = texts.str.count_matches(_char_class("simplified")).to_numpy().astype(np.int64)
    return trad, simp


def written_in(texts: pl.Series, script: Script) -> np.ndarray:
    """Which texts are written in ``script``: more of its own characters than of the other's."""
    other: Script = "simplified" if script == "traditional" else "traditional"
    texts = texts.cast(pl.String).fill_null("")
    candidate = texts.str.contains(_char_class(script)).to_numpy().astype(bool)
    out = np.zeros(len(texts), bool)
    rows = np.flatnonzero(candidate)
    if len(rows):
        sub = texts.gather(rows)
        mine = sub.str.count_matches(_char_class(script)).to_numpy()
        theirs = sub.str.count_matches(_char_class(other)).to_numpy()
        out[rows] = mine > theirs
    return out


def to_script(texts: pl.Series, target: Script, config: str | None = None) -> tuple[pl.Series, np.ndarray]:
    """``texts`` with every text written in the other script converted to ``target`` (OpenCC
    ``config``, default `DEFAULT_CONFIG`), and which texts were converted (and changed)."""
    source: Script = "traditional" if target == "simplified" else "simplified"
    cc = converter(config or DEFAULT_CONFIG[target])
    rows = np.flatnonzero(written_in(texts, source))
    changed = np.zeros(len(texts), bool)
    if not len(rows):
        return texts, changed
    before = texts.gather(rows).to_list()
    after = [cc.convert(t) for t in before]
    changed[rows] = [a != b for a, b in zip(after, before, strict=True)]
    return texts.scatter(rows, pl.Series(after, dtype=pl.String)), changed


__all__ = ["DEFAULT_CONFIG", "TARGETS", "converter", "script_counts", "script_only_chars", "to_script", "written_in"]
