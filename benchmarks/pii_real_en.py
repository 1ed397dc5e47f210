"""What the English analyzer finds in real English text no one here wrote, and what a change moved.

    python benchmarks/pii_real_en.py [--texts readmes|licenses|headers] [--save FILE] [--compare FILE] [--show N]

The texts (`real_texts`): by default the METADATA (README) of every package installed in this
environment and ``benchmarks/data/extraction_gold`` (about 2.8 M characters of real English:
author lists, changelogs, prose), which were read while tuning the English rules; ``--texts
licenses``, the packages' licence, AUTHORS and NOTICE files (~2 M characters), held out until the
eighth session and read while tuning in the ninth; ``--texts headers``, the comment and docstring
headers of the packages' Python modules (copyright lines, author credits; ~2 M characters), held
out from the ninth session on; ``--texts manpages``, the system's man pages in section 1 rendered
to plain text by ``man`` (every 2nd page in name order, at most 3 per command, ~2 M characters: option prose full of
product and command names, AUTHOR sections with real names), held out from the tenth session on.
There is no gold here, so the figures are counts: PERSON, ADDRESS
and PHONE findings per type, and with ``--compare`` (findings saved by ``--save`` from another
checkout or commit) the findings that are new and gone, with their context, to be read. A rule
that judges names by a short common-word list shows up here as hundreds of "License" and "URL"
findings (docs/PII.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.pii.engine import analyze_texts

REPO = Path(__file__).resolve().parents[1]
TYPES = ("PERSON", "ADDRESS", "PHONE")


LICENCE_NAMES = ("LICENSE", "LICENCE", "AUTHORS", "NOTICE", "COPYING", "CONTRIBUTORS")
OWN_PROJECT = "corpusforge"
HEADER_END = re.compile(r"(?m)^(?:import |from |def |class |@|if __name__)")
HEADERS_PER_PACKAGE = 60
HEADERS_CHARS = 2_000_000
MAN_DIR = Path("/usr/share/man/man1")
MAN_EVERY = 2
MAN_PER_FAMILY = 3


def module_headers(dist: md.Distribution, seen: set[str]) -> list[tuple[str, str]]:
    """The text of each Python module of ``dist`` before its first import, def or class (its
    licence comment and docstring), once per distinct text, at most HEADERS_PER_PACKAGE."""
    out = []
    for f in sorted(dist.files or [], key=str):
        if not str(f).endswith(".py") or len(out) >= HEADERS_PER_PACKAGE:
            continue
        try:
            source = Path(str(dist.locate_file(f))).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        m = HEADER_END.search(source)
        header = source[: m.start() if m else 4000][:4000]
        if sum(c.isalpha() for c in header) >= 200 and header not in seen:
            seen.add(header)
            out.append((f"{dist.metadata['Name']}/{f}", header))
    return out


def _man_family(path: Path) -> str:
    """The command a page belongs to ("gcloud" for gcloud_alpha_sql_export.1.gz)."""
    return re.split(r"[_.\-]", path.name, maxsplit=1)[0]


def man_pages(limit_chars: int = HEADERS_CHARS) -> list[tuple[str, str]]:
    """Every MAN_EVERY-th man page of section 1 in name order, at most MAN_PER_FAMILY per command
    (gcloud alone has thousands of pages), rendered without hyphenation or justification (so words
    are whole), up to ``limit_chars``; empty where ``man`` is missing."""
    if shutil.which("man") is None or not MAN_DIR.is_dir():
        return []
    out, total, families = [], 0, Counter()
    for path in sorted(MAN_DIR.iterdir())[::MAN_EVERY]:
        families[family := _man_family(path)] += 1
        if families[family] > MAN_PER_FAMILY:
            continue
        run = subprocess.run(
            ["man", "--nh", "--nj", "-l", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            check=False,
        )
        text = re.sub(r".\x08", "", run.stdout)  # overstrike bold/underline
        if run.returncode or sum(c.isalpha() for c in text) < 200:
            continue
        out.append((path.name, text))
        total += len(text)
        if total > limit_chars:
            break
    return out


def real_texts(which: str = "readmes") -> list[tuple[str, str]]:
    """(name, text): ``readmes``, the installed packages' METADATA files and the extraction gold
        texts (read while the English rules were tuned); ``licenses``, the packages' licence,
        AUTHORS, NOTICE and COPYING files (~2 M characters); ``headers``, the leading comment and
    docstring of the packages' Python modules (~2 M characters, held out); ``manpages``, section-1 man
    pages as plain text (~2 M characters, held out from the tenth session on)."""
    if which == "manpages":
        return man_pages()
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        if (dist.metadata["Name"] or "").lower() == OWN_PROJECT:
            continue  # our own README and modules are text we wrote
        name = f"{dist.metadata['Name']}-{dist.version}"
        if which == "headers":
            out += module_headers(dist, seen)
            continue
        if which == "readmes":
            text = dist.read_text("METADATA")
            if text:
                out.append((name, text))
            continue
        for f in sorted(dist.files or [], key=str):
            if ".dist-info" in str(f) and Path(str(f)).name.upper().startswith(LICENCE_NAMES):
                text = dist.read_text(str(f).split(".dist-info/", 1)[1])
                if text:
                    out.append((f"{name}/{Path(str(f)).name}", text))
    if which == "headers":  # the packages in name order up to HEADERS_CHARS
        total = 0
        for i, (_, text) in enumerate(out):
            total += len(text)
            if total > HEADERS_CHARS:
                return out[:i]
    if which == "readmes":
        for path in sorted((REPO / "benchmarks/data/extraction_gold").glob("*.txt")):
            out.append((path.name, path.read_text(encoding="utf-8", errors="replace")))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--texts",
        choices=["readmes", "licenses", "headers", "manpages"],
        default="readmes",
        help="which real texts (real_texts)",
    )
    p.add_argument("--save", type=Path, help="write the findings (JSON) for a later --compare")
    p.add_argument("--compare", type=Path, help="findings saved by --save before a change")
    p.add_argument("--show", type=int, default=40, help="new/gone findings to print with --compare")
    args = p.parse_args()
    texts = real_texts(args.texts)
    found = []
    for (name, text), findings in zip(texts, analyze_texts([t for _, t in texts], ["en"] * len(texts)), strict=True):
        for f in findings:
            if f.entity in TYPES:
                context = text[max(0, f.start - 40) : f.end + 40].replace("\n", " | ")
                found.append([name, f.entity, f.start, text[f.start : f.end], context])
    chars = sum(len(t) for _, t in texts)
    print(f"{len(texts)} real English texts, {chars / 1e6:.2f} M characters")
    counts = Counter(f[1] for f in found)
    print("  ".join(f"{t} {counts[t]}" for t in TYPES))
    if args.save:
        args.save.write_text(json.dumps(found, ensure_ascii=False), encoding="utf-8")
    if args.compare:
        before = json.loads(args.compare.read_text(encoding="utf-8"))
        old, now = {tuple(f[:3]) for f in before}, {tuple(f[:3]) for f in found}
        new = [f for f in found if tuple(f[:3]) not in old]
        gone = [f for f in before if tuple(f[:3]) not in now]
        print(f"vs {args.compare}: {len(before)} -> {len(found)} findings, {len(new)} new, {len(gone)} gone")
        for title, rows in (("new", new), ("gone", gone)):
            print(f"-- {title}: " + ", ".join(f"{v!r} x{n}" for v, n in Counter(f[3] for f in rows).most_common(15)))
            for f in rows[: args.show]:
                print(f"   {f[0][:28]:28} {f[1]:8} {f[3]!r} in {f[4]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
