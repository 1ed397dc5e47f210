"""A generated multi-level news / court site with known article bodies, for crawl tests and the benchmark.

`make_site(directory, articles=N)` writes what an unknown real site looks like to a crawler
that has no profile for it: a home page, paginated listings (``/news/``, ``/news/page/N/``) of
teasers, a tag page, article pages buried in boilerplate (navigation, cookie banner, breadcrumbs,
share bar, "related" and "most read" boxes, reader comments, newsletter box, footer) with
relative links to pages that do not exist, a print view and an AMP copy of each article (both
declaring the article as canonical), the same article linked with ``?page=1`` and
``?utm_source=`` variants, a PDF judgment, two Chinese pages (GBK sent with the charset only in
the HTTP header; UTF-8 whose ``<meta charset>`` claims GB2312), robots.txt and a sitemap.

It returns a `SampleSite`: the article URL paths with the body text a human would keep, the
listing paths, and the paths of links that answer 404. Texts are drawn (seeded) from the
fictitious legal prose in ``benchmarks/data/extraction_gold``.
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from crawlers.minipdf import make_pdf

PROSE = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "extraction_gold"
SUBJECTS = ("Court", "Tribunal", "Appeal panel", "Ministry", "Regulator", "High Court", "Commission")
VERBS = ("rejects", "upholds", "reviews", "publishes", "clarifies", "overturns", "suspends")
OBJECTS = ("planning appeal", "fee rules", "sentencing guidance", "tenancy claim", "data request", "licence decision")
PLACES = ("Riverside", "Northgate", "Harbour district", "the county", "Eastfield", "the capital")
TAGS = ("courts", "planning", "housing", "criminal", "regulation")
ZH_NOTICE = [
    "为进一步规范政府信息公开工作，根据《中华人民共和国政府信息公开条例》，现就有关事项通知如下。",
    "各区县人民政府、市政府各部门应当在收到申请之日起二十个工作日内予以答复，需要延长答复期限的，应当经政府信息公开工作机构负责人同意。",
    "申请人对答复不服的，可以依法申请行政复议或者提起行政诉讼。本通知自二〇二三年九月一日起施行。",
]
ZH_JUDGMENT = [
    "原告陈某与被告某物业服务有限公司物业服务合同纠纷一案，本院于二〇二三年三月立案后，依法适用简易程序公开开庭进行了审理。",
    "原告诉称，被告未按约定履行小区公共区域的维修义务，导致原告房屋漏水，请求判令被告赔偿损失人民币一万二千元。",
    "本院认为，被告作为物业服务人，负有维修、养护共有部分的义务。被告未能举证证明已尽到维修义务，应当承担相应的赔偿责任。",
    "判决如下：被告于本判决生效之日起十日内赔偿原告损失人民币八千元；驳回原告的其他诉讼请求。",
]


@dataclass
class SampleSite:
    articles: dict[str, str] = field(default_factory=dict)  # URL path -> body text a human would keep
    listings: list[str] = field(default_factory=list)  # URL paths of pages without main text
    duplicates: dict[str, str] = field(default_factory=dict)  # URL path (with query) -> the article it copies
    missing: set[str] = field(default_factory=set)  # URL paths linked from the site that answer 404


def _sentences() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(PROSE.glob("en_*.txt")))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]


def _page(title: str, body: str, *, canonical: str | None = None, charset: str = "utf-8", lang: str = "en") -> str:
    head = f'<meta charset="{charset}"><title>{html.escape(title)} | Riverside Courts News</title>'
    if canonical:
        head += f'<link rel="canonical" href="{canonical}">'
    return f'<!DOCTYPE html>\n<html lang="{lang}"><head>{head}</head><body>\n{body}\n</body></html>\n'


def _chrome(main: str, sidebar: str = "") -> str:
    """Site header, cookie banner, footer around ``main``: the boilerplate of every page."""
    nav = "".join(
        f'<li><a href="{href}">{label}</a></li>'
        for href, label in (
            ("/index.html", "Home"),
            ("/news/", "News"),
            ("/tags/courts/", "Courts"),
            ("/about/", "About us"),
            ("/login", "Sign in"),
            ("https://social.example/riverside", "Follow us"),
        )
    )
    footer_links = " | ".join(
        f'<a href="{h}">{t}</a>'
        for h, t in (("/about/privacy.html", "Privacy"), ("/about/terms.html", "Terms"), ("/contact/", "Contact"))
    )
    return (
        f'<header><a class="logo" href="/index.html">Riverside Courts News</a><nav><ul>{nav}</ul></nav>'
        '<form action="/search"><input name="q"><button>Search</button></form></header>\n'
        '<div class="cookie-banner">We use cookies to measure readership and remember your settings. '
        '<a href="/about/cookies.html">Cookie policy</a> <button>Accept all</button> <button>Reject</button></div>\n'
        f"{main}\n{sidebar}\n"
        f"<footer><p>{footer_links}</p><p>Copyright 2024 Riverside Courts News Ltd. All rights reserved. "
        "Registered in Riverside, company no. 0412231.</p></footer>"
    )


def make_site(directory: Path, *, articles: int = 24, per_page: int = 10, seed: int = 0) -> SampleSite:
    rng = random.Random(seed)
    pool = _sentences()
    site = SampleSite()
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(articles):
        title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} in {rng.choice(PLACES)}"
        paragraphs = [" ".join(rng.sample(pool, rng.randint(2, 3))) for _ in range(rng.randint(4, 7))]
        entries.append((f"/news/2023/article-{i:03d}.html", title, paragraphs, rng.choice(TAGS)))
    titles = {path: title for path, title, _, _ in entries}

    for n, (path, title, paragraphs, tag) in enumerate(entries):
        related = "".join(
            f'<li><a href="{p}">{html.escape(titles[p])}</a></li>' for p in rng.sample(sorted(titles), 3) if p != path
        )
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        comments = "".join(
            f'<div class="comment"><span class="author">Reader{rng.randint(1, 99)}</span>'
            f"<p>{html.escape(rng.choice(pool))}</p></div>"
            for _ in range(2)
        )
        stem = Path(path).stem
        main = (
            f'<div class="breadcrumb"><a href="/index.html">Home</a> &gt; <a href="/news/">News</a> &gt; '
            f'<a href="../../tags/{tag}/">{tag.title()}</a></div>\n'
            f'<main><article><h1>{html.escape(title)}</h1><p class="byline">By <a href="author/staff-{n % 4}.html">'
            f"Staff reporter</a> | 2023-0{1 + n % 9}-1{n % 10}</p>\n{body}\n"
            + ('<p><a href="/files/judgment-2023-17.pdf">Download the judgment (PDF)</a></p>' if n == 0 else "")
            + f'</article>\n<div class="share"><a href="{stem}/print.html">Print</a> | '
            f'<a href="/amp{path}">AMP</a> | <a href="https://social.example/share?u={stem}">Share</a> | '
            f'<a href="mailto:?subject={stem}">E-mail</a></div>\n'
            f'<section class="comments"><h3>2 comments</h3>{comments}<a href="comments/{stem}.html">'
            "Show all comments</a></section>\n"
            '<div class="newsletter"><h3>Get the weekly digest</h3><p>Court news in your inbox every Friday.</p>'
            '<form action="/subscribe"><input name="email"><button>Subscribe</button></form></div></main>'
        )
        sidebar = (
            f"<aside><h3>Related articles</h3><ul>{related}</ul><h3>Most read</h3><ul>"
            '<li><a href="/news/2022/fees.html">Court fees rise from January</a></li>'
            '<li><a href="/news/2022/judges.html">New judges sworn in</a></li></ul></aside>'
        )
        target = directory / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_page(title, _chrome(main, sidebar), canonical=path), encoding="utf-8")
        printed = f"<h1>{html.escape(title)}</h1>{body}<p>Printed from Riverside Courts News.</p>"
        (target.parent / stem).mkdir(exist_ok=True)
        (target.parent / stem / "print.html").write_text(_page(title, printed, canonical=path), encoding="utf-8")
        amp = directory / "amp" / path.lstrip("/")
        amp.parent.mkdir(parents=True, exist_ok=True)
        amp.write_text(_page(title, f"<main><h1>{html.escape(title)}</h1>{body}</main>", canonical=path), "utf-8")
        site.articles[path] = "\n".join(paragraphs)
        site.duplicates[f"/news/2023/{stem}/print.html"] = path
        site.duplicates[f"/amp{path}"] = path
        site.missing |= {f"/news/2023/author/staff-{n % 4}.html", f"/news/2023/comments/{stem}.html"}
    site.missing |= {"/login", "/about/", "/about/privacy.html", "/about/terms.html", "/contact/"}
    site.missing |= {"/about/cookies.html", "/news/2022/fees.html", "/news/2022/judges.html"}
    site.missing |= {f"/tags/{t}/" for t in TAGS if t != "courts"}
    # a variant of the first article's URL: the same bytes (and canonical) under another URL
    site.duplicates[entries[0][0] + "?page=1"] = entries[0][0]
    site.duplicates[entries[1][0] + "?utm_source=home"] = entries[1][0]

    pdf_lines = ["Judgment 2023/17 of the Riverside High Court.", *entries[0][2][:2]]
    pdf_words = [[line[i : i + 90] for i in range(0, len(line), 90)] for line in pdf_lines]
    (directory / "files").mkdir(exist_ok=True)
    (directory / "files" / "judgment-2023-17.pdf").write_bytes(
        make_pdf([[w for chunk in pdf_words for w in chunk]], title="Judgment 2023/17")
    )
    site.articles["/files/judgment-2023-17.pdf"] = "\n".join(pdf_lines)

    _chinese_pages(directory, site)
    pages = [entries[i : i + per_page] for i in range(0, len(entries), per_page)]
    for k, chunk in enumerate(pages, 1):
        teasers = "".join(
            f'<article class="teaser"><h2><a href="/news/2023/{Path(p).name}">{html.escape(t)}</a></h2>'
            f'<p>{html.escape(paras[0].split(". ")[0])}.</p><a href="{p}">Read more</a></article>'
            for p, t, paras, _ in chunk
        )
        pager = " ".join(
            f'<a href="{"/news/" if j == 1 else f"/news/page/{j}/"}">{j}</a>' for j in range(1, len(pages) + 1)
        )
        if k < len(pages):
            pager += f' <a rel="next" href="/news/page/{k + 1}/">Next</a>'
        main = f"<main><h1>News, page {k}</h1>{teasers}<div class='pager'>{pager}</div></main>"
        sidebar = (
            "<aside><h3>Tags</h3><ul>"
            + "".join(f'<li><a href="/tags/{t}/">{t}</a></li>' for t in TAGS)
            + "</ul></aside>"
        )
        path = "/news/" if k == 1 else f"/news/page/{k}/"
        (directory / path.strip("/")).mkdir(parents=True, exist_ok=True)
        (directory / path.strip("/") / "index.html").write_text(
            _page(f"News page {k}", _chrome(main, sidebar)), "utf-8"
        )
        site.listings.append(path)
    tag_links = "".join(f'<li><a href="{p}">{html.escape(t)}</a></li>' for p, t, _, tag in entries if tag == "courts")
    (directory / "tags" / "courts").mkdir(parents=True, exist_ok=True)
    (directory / "tags" / "courts" / "index.html").write_text(
        _page("Courts", _chrome(f"<main><h1>Tag: courts</h1><ul>{tag_links}</ul></main>")), "utf-8"
    )
    site.listings.append("/tags/courts/")
    latest = "".join(
        f'<li><a href="{p}{"?utm_source=home" if i == 1 else "?page=1" if i == 0 else ""}">{html.escape(t)}</a></li>'
        for i, (p, t, _, _) in enumerate(entries[:5])
    )
    home = f'<main><h1>Riverside Courts News</h1><h2>Latest</h2><ul>{latest}</ul><a href="/news/">All news</a>'
    home += '<ul><li><a href="/zh/notice-2023-41.gbk.html">政府信息公开通知</a></li>'
    home += '<li><a href="/zh/judgment-388.html">物业服务合同纠纷判决</a></li></ul></main>'
    (directory / "index.html").write_text(_page("Home", _chrome(home)), encoding="utf-8")
    site.listings.append("/index.html")
    sitemap = "".join(f"<url><loc>{{{{BASE}}}}{p}</loc></url>" for p in site.articles)
    (directory / "sitemap.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{sitemap}</urlset>\n",
        encoding="utf-8",
    )
    (directory / "robots.txt").write_text(
        "User-agent: *\nDisallow: /admin/\n\nSitemap: {{BASE}}/sitemap.xml\n", "utf-8"
    )
    return site


def _chinese_pages(directory: Path, site: SampleSite) -> None:
    """A GBK notice whose charset is only in the HTTP header (``*.gbk.html``, see SiteServer) and
    a UTF-8 judgment whose ``<meta charset>`` lies (says gb2312)."""
    (directory / "zh").mkdir(exist_ok=True)
    body = "".join(f"<p>{p}</p>" for p in ZH_NOTICE)
    notice = _chrome(f"<main><h1>关于规范政府信息公开申请答复工作的通知</h1>{body}</main>")
    page = _page("关于规范政府信息公开申请答复工作的通知", notice, lang="zh-CN").replace('<meta charset="utf-8">', "")
    (directory / "zh" / "notice-2023-41.gbk.html").write_bytes(page.encode("gbk"))
    body = "".join(f"<p>{p}</p>" for p in ZH_JUDGMENT)
    judgment = _chrome(f"<main><h1>陈某与某物业服务有限公司物业服务合同纠纷一审民事判决书</h1>{body}</main>")
    page = _page("物业服务合同纠纷一审民事判决书", judgment, charset="gb2312", lang="zh-CN")
    (directory / "zh" / "judgment-388.html").write_bytes(page.encode("utf-8"))
    site.articles["/zh/notice-2023-41.gbk.html"] = "\n".join(ZH_NOTICE)
    site.articles["/zh/judgment-388.html"] = "\n".join(ZH_JUDGMENT)
