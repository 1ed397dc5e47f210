"""corpus.report and training.report: self-contained pages, every section, escaped documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from report_corpus import REPO, build, build_once, write_metrics

from corpus.html import table
from corpus.report import ReportContext, _hist, render_report, write_report
from corpus.report import main as report_main
from pipelines.build import main as build_main
from training.report import MetricsError, write_training_report

SECTIONS = (
    "Build",
    "Funnel",
    "Document lengths",
    "Language mix",
    "Quality",
    "Quality decisions",
    "Near duplicates",
    "PII",
    "Buckets and tokens",
    "Sample documents",
)
MARKUP_DOCS = [
    '<script>alert("owned")</script> A document that tries to run code inside the report page.',
    '</td></tr></table><img src="http://127.0.0.1:9/x.png" onerror="alert(1)"> breaking out of a table cell.',
    'Ampersands & <b>bold</b> tags & "quotes" in an otherwise ordinary legal paragraph of text.',
    "<style>body{display:none}</style> A style block that would hide the whole report if it got in.",
]


@pytest.fixture(scope="session")
def plain_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), "plain")


@pytest.fixture(scope="session")
def full_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory.getbasetemp(), "full")


@pytest.fixture(scope="session")
def markup_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("markup")
    src = base / "markup.jsonl"
    src.write_text("".join(json.dumps({"text": t, "lang": "en"}) + "\n" for t in MARKUP_DOCS))
    return build(base / "corpus", "plain", [src])


def external_references(html: str) -> list[str]:
    """Anything that would make the browser fetch: src/href not starting with '#', url(...), @import."""
    refs = re.findall(r"""(?:src|href|xlink:href)\s*=\s*["']([^"']*)["']""", html)
    refs = [r for r in refs if not r.startswith(("#", "data:"))]  # data: URIs are inside the page
    return refs + re.findall(r"url\(\s*['\"]?(?!#|data:)[^)]*\)", html) + re.findall(r"@import", html)


def test_full_report_has_every_section_with_plots(full_corpus: Path, tmp_path: Path) -> None:
    out = write_report(full_corpus, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html, title
    assert "section-error" not in html
    assert "did not run" not in html  # every optional stage ran in this build
    plots = re.findall(r'data-plot="([^"]+)"', html)
    assert len(plots) == 10, plots
    assert html.count("<svg") == len(plots)
    for name in (
        "quality signal distributions",
        "quality removals per language and source",
        "near-duplicate cluster size distribution",
        "PII findings by type",
    ):
        assert name in plots
    assert "gopher_below_avg_word_len (latin) = 3.5" in html  # a threshold from the config drawn on its plot
    # #16.14: other steps' parameters are not quality thresholds; far thresholds do not stretch an axis
    assert "minhash_dedup.threshold" not in html and "pii_redact.min_score" not in html
    assert "gopher_long_doc (latin) = 100,000 (off scale)" in html
    assert "(not drawn): ellipsis_ratio = 0" in html  # a panel of zeros is named, not drawn
    steps = html.split("<h3>Steps</h3>")[1].split("</table>")[0]  # one row per step, only what the config set
    assert "<td>split</td><td>validation_ratio=0.1</td>" in steps and "fix_mojibake" not in steps
    assert "<script" not in html.lower()
    assert external_references(html) == []
    assert len(html.encode()) < 1_500_000
    # the largest near-dup clusters link to their examples in the page
    links = re.findall(r'href="#(cluster-[^"]+)"', html)
    assert links and all(f'id="{a}"' in html for a in links)
    # PII values are not repeated in the report
    assert "@example.com" not in html.split('id="pii"')[1].split("</section>")[0]


def test_sections_whose_steps_did_not_run_say_so(plain_corpus: Path) -> None:
    html = render_report(plain_corpus)
    assert "section-error" not in html
    assert "No quality scoring ran in this build" in html
    assert "Near-duplicate detection did not run in this build" in html
    assert "PII redaction did not run in this build" in html
    assert "No curriculum bucketing ran in this build" in html
    assert len(re.findall(r"data-plot=", html)) == 5  # funnel, drops, lengths, languages, buckets


def test_documents_are_escaped(markup_corpus: Path) -> None:
    html = render_report(markup_corpus)
    assert "<script" not in html.lower()
    assert (
        "<style>body" not in html and "<b>bold</b>" not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    )
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in html
    assert external_references(html) == []


def test_table_helper_escapes_cells() -> None:
    out = table(["<h>"], [("<i>x</i> & y",), (3,)])
    assert "&lt;h&gt;" in out and "&lt;i&gt;x&lt;/i&gt; &amp; y" in out and '<td class="num">3</td>' in out


def test_cli_and_build_print_the_report_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "built"
    config = tmp_path / "build.yaml"
    config.write_text(
        f"root: {root}\nworkers: 1\nsources: [{{path: {REPO / 'samples' / 'legal_sample.jsonl'}}}]\n"
        "steps: [normalize, {length_filter: {min_chars: 50}}, exact_dedup, {split: {validation_ratio: 0.1}}]\n"
    )
    assert build_main(["--config", str(config), "--quiet"]) == 0  # the report is on demand (#27.1)
    assert f"report: python -m corpus.report --root {root}, or pass --report" in capsys.readouterr().out
    assert not (root / "report.html").exists()
    assert build_main(["--config", str(config), "--quiet", "--report"]) == 0  # resumes, then writes it
    assert f"report: {root / 'report.html'}" in capsys.readouterr().out
    assert (root / "report.html").stat().st_size > 10_000

    assert report_main(["--root", str(root), "--out", str(tmp_path / "again.html")]) == 0
    assert f"report: {tmp_path / 'again.html'}" in capsys.readouterr().out
    assert report_main(["--root", str(tmp_path / "nothing-here")]) == 2
    assert "no catalog" in capsys.readouterr().err


def test_training_report(tmp_path: Path) -> None:
    out_dir = write_metrics(tmp_path / "run")
    path = write_training_report(out_dir)
    assert path == out_dir / "training_report.html"
    html = path.read_text(encoding="utf-8")
    plots = re.findall(r'data-plot="([^"]+)"', html)
    assert plots == ["training curves", "evaluation perplexity per bucket"]
    for text in ("0-easy", "1-medium", "2-hard", "learning rate", "best ppl", "moving average"):
        assert text in html
    assert external_references(html) == [] and "<script" not in html
    assert len(html.encode()) < 400_000  # 3000 steps thinned, not 3000 points per curve


def test_training_report_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="metrics file not found"):
        write_training_report(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"kind": "train", "step"\n')
    with pytest.raises(MetricsError, match=r"metrics\.jsonl:2: invalid JSON"):
        write_training_report(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 2.0}\n')
    html = write_training_report(tmp_path).read_text()
    assert "No evaluation was logged" in html


def test_report_and_audit_on_a_build_that_kept_nothing(tmp_path: Path) -> None:
    from corpus.audit import run_audit
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps.length_filter import LengthFilter

    root = tmp_path / "empty"
    sample = REPO / "samples" / "legal_sample.jsonl"
    cfg = BuildConfig(root=root, workers=1, sources=[SourceSpec(sample)], steps=[LengthFilter(10**6, 10**7)])
    run_build(cfg, progress=False)
    html = render_report(root)
    assert "section-error" not in html
    assert html.count("The final shards hold no documents.") == 4
    assert len(re.findall(r"data-plot=", html)) == 2  # the funnel and its drops still tell the story
    results = {r.check.name: r for r in run_audit(root)}
    assert {r.status for n, r in results.items() if n != "over_filtering"} <= {"pass", "skip"}
    # removing every document of a source is exactly what over_filtering is there to flag
    assert results["over_filtering"].status == "fail"
    assert results["over_filtering"].violations.rows[0][:2] == ("length_filter", "import:legal_sample")


def test_thresholds_are_those_of_the_rule_on_the_signal() -> None:
    """Regression (#16.14): any step's `threshold`/`min_score` used to be drawn as a quality threshold.
    The steps record the thresholds they apply (`Step.applied_thresholds`, catalog `step_settings`)."""
    from corpus.catalog import StepSettings
    from pipelines.steps import LengthFilter, MinHashDedup, PiiRedact, Quality

    steps = [
        MinHashDedup(threshold=0.8),
        PiiRedact(min_score=0.5),
        LengthFilter(min_chars=50),
        Quality(thresholds={"gopher_short_doc": {"latin": 60}}, disable=["gopher_few_stop_words"]),
    ]
    settings = [
        StepSettings(i, s.name, s.params(), s.changed_params(), s.applied_thresholds()) for i, s in enumerate(steps)
    ]
    ctx = ReportContext(None, {}, {}, settings)  # type: ignore[arg-type]
    assert ctx.thresholds("quality_score") == []  # the score ranks; no step thresholds it
    words = dict(ctx.thresholds("n_words"))
    assert words["gopher_short_doc (latin)"] == 60 and words["gopher_short_doc (cjk)"] == 80  # override, default
    assert words["gopher_long_doc (latin)"] == 100_000
    assert ctx.thresholds("stop_words") == []  # the rule is disabled
    assert ctx.thresholds("alpha_frac") == [("gopher_below_alpha_threshold", 0.8)]
    assert not [k for k in words if k.startswith(("minhash", "pii", "length"))]
    assert ctx.thresholds("characters") == [("length_filter.min_chars", 50.0), ("length_filter.max_chars", 1e6)]
    assert settings[3].changed == {
        "thresholds": {"gopher_short_doc": {"latin": 60}},
        "disable": ["gopher_few_stop_words"],
    }
    off = Quality(filter=False)
    off_ctx = ReportContext(None, {}, {}, [StepSettings(1, "quality", {}, {}, off.applied_thresholds())])  # type: ignore[arg-type]
    assert all("[not applied: filter false]" in k for k, _ in off_ctx.thresholds("n_words"))


def test_a_far_threshold_does_not_stretch_the_axis() -> None:
    """Regression (#16.14): gopher_long_doc = 200,000 squashed n_words (0..800) into one spike."""
    import numpy as np

    from corpus.html import new_figure

    _fig, ax = new_figure()
    values = np.arange(0, 800, dtype=float)
    _hist(ax, {"kept": values}, [("short", 50.0), ("long", 200_000.0)], "n_words")
    lo, hi = ax.get_xlim()
    assert lo < 50 and 800 <= hi < 1200
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["short = 50", "long = 200,000 (off scale)"]


def test_chinese_glyphs_are_embedded_or_the_page_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (#16.14): Chinese rendered as empty boxes where no CJK font is installed."""
    from corpus import cjk_font
    from corpus.html import Section, page

    text = "原告与被告签订了书面合同。"
    if cjk_font.find_cjk_font() is None:
        pytest.fail("a CJK font is needed to embed (apt-get install fonts-wqy-microhei)", pytrace=False)
    html = page("t", "s", [Section("x").add(f"<p>{text}</p>")])
    face = re.search(r"@font-face \{ font-family: \"([^\"]+)\"; src: url\(data:font/(woff2|ttf);base64,", html)
    assert face, html[:2000]
    assert f'"{face.group(1)}"' in html.split("body {")[1].split("}")[0]  # the page text uses it
    assert "font-src data:" in html and len(html) < 100_000  # a subset of the glyphs, not the whole font
    assert "@font-face" not in page("t", "s", [Section("x").add("<p>only latin</p>")])

    monkeypatch.setenv(cjk_font.ENV_VAR, "none")
    cjk_font.find_cjk_font.cache_clear()
    try:
        html = page("t", "s", [Section("x").add(f"<p>{text}</p>")])
    finally:
        cjk_font.find_cjk_font.cache_clear()
    assert "@font-face" not in html and "no CJK font found to embed" in html
    assert '"Noto Sans CJK SC"' in html  # still names the common system fonts
