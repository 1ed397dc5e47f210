"""Build `pipelines/pii/data/en_lower_words.txt.gz`: English words that are written in lower case
far more often than capitalised, so a word that no person's name is made of.

Source: the ``spacy-lookups-data`` wheel (MIT, explosion/spacy-lookups-data), whose
``en_lexeme_prob`` table holds the case-sensitive log-probabilities of ~1 M word forms counted in
a large English corpus. A word counts as lower-case when its lower-case form is at least e times
(``--margin`` 1.0 in log-probability) as frequent as its capitalised form and not rare
(``--floor`` -18): "license" (-10.6 vs "License" -13.9), "harsh", "ping", "good"; not "matt"
(-14.0 vs "Matt" -11.3), "jain", "einstein", "python", which WordNet lists as words too:

    pip download --no-deps spacy-lookups-data==1.0.5 -d /tmp/slu
    python benchmarks/make_en_lower_words.py /tmp/slu/spacy_lookups_data-1.0.5-py2.py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "pipelines/pii/data/en_lower_words.txt.gz"
TABLE = "spacy_lookups_data/data/en_lexeme_prob.json.gz"
WORD = re.compile(r"^[a-z][a-z'\-]*[a-z]$")


def lower_words(probs: dict[str, float], margin: float, floor: float) -> list[str]:
    """The lower-case words of ``probs`` (form -> log-probability) per the module docstring."""
    missing = float("-inf")
    return sorted(
        w for w, p in probs.items() if WORD.match(w) and p > floor and p >= probs.get(w.title(), missing) + margin
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel", type=Path, help="spacy_lookups_data-1.0.5-py2.py3-none-any.whl")
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--floor", type=float, default=-18.0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    with zipfile.ZipFile(args.wheel) as z:
        probs = json.loads(gzip.decompress(z.read(TABLE)))
    words = lower_words(probs, args.margin, args.floor)
    # mtime=0: the same words give the same bytes (a rebuild shows no change in git)
    with gzip.GzipFile(args.out, "wb", mtime=0) as f:
        f.write(("\n".join(words) + "\n").encode("utf-8"))
    print(f"{len(words)} lower-case words of {len(probs)} forms -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
