"""corpus.report and training.report: self-contained pages, every section, escaped documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from report_corpus import REPO, build, build_once, write_metrics

from corpus.html import table
from corpus.report import main as report_main
from corpus.report import render_report, write_report
from pipelines.build import main as build_main
from training.report import MetricsError, write_training_report

SECTIONS = (
    "Build",
    "Funnel",
    "Document lengths",
    "Language mix",
    "Quality",
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
    refs = [r for r in refs if not r.startswith("#")]
    return refs + re.findall(r"url\(\s*['\"]?(?!#)[^)]*\)", html) + re.findall(r"@import", html)


def test_full_report_has_every_section_with_plots(full_corpus: Path, tmp_path: Path) -> None:
    out = write_report(full_corpus, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html, title
    assert "section-error" not in html
    assert "did not run" not in html  # every optional stage ran in this build
    plots = re.findall(r'data-plot="([^"]+)"', html)
    assert len(plots) == 9, plots
    assert html.count("<svg") == len(plots)
    for name in ("quality signal distributions", "near-duplicate cluster size distribution", "PII findings by type"):
        assert name in plots
    assert "gopher_below_avg_word_len (latin) = 3.5" in html  # a threshold from the config drawn on its plot
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
    assert build_main(["--config", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"report: {root / 'report.html'}" in out
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
    assert {r.status for r in run_audit(root)} <= {"pass", "skip"}
