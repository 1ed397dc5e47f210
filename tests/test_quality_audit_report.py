"""The over-filtering audit and the report's quality-decisions section, on a real build of two sources:
one where `quality` removes most documents (a crawl full of junk) and one it leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_config, write_jsonl

from corpus.audit import main, run_audit
from corpus.report import render_report
from pipelines.config import load_config
from pipelines.runner import run_build

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "quality_fixtures.jsonl"


def variants(rows: list[dict], n: int) -> list[dict]:
    """``n`` distinct documents cycling through ``rows`` (a numbered closing line each)."""
    out = []
    for k in range(n):
        fx = rows[k % len(rows)]
        tail = f"\n本文件编号为第{k + 1}号。" if fx["lang"] == "zh" else f"\nThis copy was filed as number {k + 1}."
        out.append({"url": f"https://example.test/{fx['id']}/{k}", "text": fx["text"] + tail, "lang": fx["lang"]})
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("overfilter")
    fx = [json.loads(line) for line in FIXTURES.read_text(encoding="utf-8").splitlines()]
    good = [r for r in fx if r["label"] == "good"]
    junk = [r for r in fx if r["label"] == "junk"]
    junky = write_jsonl(tmp / "junky_crawl.jsonl", variants(good, 8) + variants(junk, 16))
    clean = write_jsonl(tmp / "statutes.jsonl", variants(good, 24))
    root = tmp / "corpus"
    steps = ["normalize", {"quality": {"thresholds_from": str(REPO / "configs" / "quality")}}]
    run_build(load_config(write_config(tmp / "build.yaml", root, [junky, clean], steps)), progress=False)
    return root


def test_over_filtering_names_step_source_and_reasons(corpus: Path) -> None:
    (res,) = run_audit(corpus, ["over_filtering"])
    assert res.status == "fail"
    cols = res.violations.columns
    (row,) = res.violations.rows
    got = dict(zip(cols, row, strict=True))
    assert got["step"] == "quality" and got["source"] == "import:junky_crawl"
    assert got["docs_in"] == 24 and got["docs_removed"] >= 12  # most of its 16 junk pages
    assert got["removed_share"] == pytest.approx(got["docs_removed"] / 24, abs=1e-4)
    assert got["max_share"] == 0.2
    assert ": " in got["top_reasons"] and got["top_reasons"].split(": ")[0].startswith(("gopher_", "c4_", "fineweb_"))
    # the limit is configurable, for every step or one step; small sources are not judged
    assert run_audit(corpus, ["over_filtering"], variables={"max_removed_share": 0.7})[0].status == "pass"
    per_step = {"max_removed_share_by_step": {"quality": 0.7}}
    assert run_audit(corpus, ["over_filtering"], variables=per_step)[0].status == "pass"
    assert run_audit(corpus, ["over_filtering"], variables={"min_source_docs": 25})[0].status == "pass"


def test_over_filtering_cli(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(corpus), "--check", "over_filtering"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  over_filtering" in out and "import:junky_crawl" in out and "quality" in out
    assert main(["--root", str(corpus), "--check", "over_filtering", "--max-removed-share", "quality=0.9"]) == 0
    assert main(["--root", str(corpus), "--check", "over_filtering", "--max-removed-share", "1.5"]) == 2
    assert "the share must be in [0, 1]" in capsys.readouterr().err


def test_report_shows_removed_shares_per_language_and_source(corpus: Path) -> None:
    html = render_report(corpus)
    assert "Quality decisions" in html
    section = html[html.index('id="quality-decisions"') :]
    section = section[: section.index("</section>")]
    assert "import:junky_crawl" in section and "import:statutes" in section
    assert "⚠" in section  # a rule above 20% of one group is flagged
    assert "share of the group" in section and "<svg" in section
    assert "zh, " in section or "en, " in section  # where the removing rule's threshold came from
