"""The CJK font a self-contained report page carries, so Chinese never renders as empty boxes.

A report is one HTML file that may be opened anywhere, including on a machine with no CJK font
(most servers and CI images). So the page embeds the glyphs it uses: the CJK characters of the
finished page are subset out of a CJK font found on the machine that writes the report (by
fontconfig, or `CORPUSFORGE_CJK_FONT=/path/to/font.ttf[c]`) into a WOFF2 (or TTF) ``data:`` URI,
typically 20-100 KB. The embedded face carries the source font's own family name, which is also in
matplotlib's font list, so plot labels (SVG text) and HTML text both use it. When no CJK font
exists on the writing machine, the page falls back to a stack of common system CJK fonts and says
so. Debian: ``apt-get install fonts-wqy-microhei`` (1.6 MB) or ``fonts-noto-cjk``.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ENV_VAR = "CORPUSFORGE_CJK_FONT"
# Han, kana, hangul, CJK and full-width punctuation: the characters the embedded face is used for.
RANGES = (
    (0x2E80, 0x2FDF),
    (0x3000, 0x33FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
)
UNICODE_RANGE = ", ".join(f"U+{lo:04X}-{hi:04X}" for lo, hi in RANGES)
CJK_CHARS = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in RANGES) + "]")
# Families the browser may find on the viewer's machine (macOS, Windows, Linux), after the embedded one.
SYSTEM_STACK = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "PingFang SC",
    "Hiragino Sans GB",
    "Microsoft YaHei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
)
PREFERRED = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei")


@dataclass(frozen=True)
class CjkFont:
    path: Path
    index: int  # face number in a .ttc collection
    family: str


def _family_of(path: Path, index: int) -> str:
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=index, lazy=True)
    name = font["name"].getBestFamilyName()
    font.close()
    return str(name or path.stem)


def _fontconfig_fonts() -> list[CjkFont]:
    """Fonts fontconfig says cover Chinese, as (path, face index, first family name)."""
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "file", "index", "family"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    fonts = []
    for line in out.splitlines():
        path, _, rest = line.partition(": ")
        family = rest.split(":index=")[0].split(",")[0].strip()
        index = int(m.group(1)) if (m := re.search(r":index=(\d+)", rest)) else 0
        if path.endswith((".ttf", ".ttc", ".otf", ".otc")) and family:
            fonts.append(CjkFont(Path(path), index, family))
    return fonts


@lru_cache(maxsize=1)
def find_cjk_font() -> CjkFont | None:
    """The font to embed: ``$CORPUSFORGE_CJK_FONT`` (``none`` disables), else the preferred
    fontconfig font covering Chinese (non-monospace first), else None."""
    override = os.environ.get(ENV_VAR)
    if override:
        if override.lower() == "none":
            return None
        path = Path(override)
        return CjkFont(path, 0, _family_of(path, 0)) if path.is_file() else None
    fonts = _fontconfig_fonts()
    rank = {name: i for i, name in enumerate(PREFERRED)}
    fonts.sort(key=lambda f: (rank.get(f.family, len(rank)), "mono" in f.family.lower(), str(f.path), f.index))
    return fonts[0] if fonts else None


def cjk_chars(text: str) -> set[str]:
    return set(CJK_CHARS.findall(text))


def subset_data_uri(font: CjkFont, chars: set[str]) -> str:
    """A ``data:`` URI of ``font`` cut down to ``chars`` (WOFF2 when brotli is importable)."""
    import logging

    from fontTools import subset
    from fontTools.ttLib import TTFont

    logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # "FFTM NOT subset" is expected

    try:
        import brotli  # noqa: F401  (WOFF2 compression)

        flavor, mime = "woff2", "font/woff2"
    except ImportError:
        flavor, mime = None, "font/ttf"
    options = subset.Options()
    options.flavor = flavor
    options.layout_features = []  # no ligatures/vertical forms needed for report text
    options.hinting = False
    options.name_IDs = [1, 2]  # family and style names only
    options.notdef_outline = True
    ttf = TTFont(font.path, fontNumber=font.index, lazy=True)
    sub = subset.Subsetter(options)
    sub.populate(unicodes=sorted(ord(c) for c in chars))
    sub.subset(ttf)
    buf = io.BytesIO()
    ttf.flavor = flavor
    ttf.save(buf)
    ttf.close()
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _css_family(name: str) -> str:
    return '"' + name.replace("\\", "").replace('"', "") + '"'


def font_stack(font: CjkFont | None) -> str:
    """CSS font-family fallbacks for CJK text after the page's Latin fonts."""
    names = ([font.family] if font else []) + [n for n in SYSTEM_STACK if not font or n != font.family]
    return ", ".join(_css_family(n) for n in names)


def font_face_css(page_text: str) -> tuple[str, bool]:
    """(``@font-face`` rule embedding the page's CJK glyphs or "", whether the page has CJK text
    that no embedded font covers)."""
    chars = cjk_chars(page_text)
    if not chars:
        return "", False
    font = find_cjk_font()
    if font is None:
        return "", True
    try:
        uri = subset_data_uri(font, chars)
    except Exception:  # an unreadable or unusual font file: fall back to the system stack
        return "", True
    rule = (
        f"@font-face {{ font-family: {_css_family(font.family)}; src: url({uri}) format("
        f'"{"woff2" if uri.startswith("data:font/woff2") else "truetype"}"); unicode-range: {UNICODE_RANGE}; }}'
    )
    return rule, False
