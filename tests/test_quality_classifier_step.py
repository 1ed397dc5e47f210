"""The classifier in the build: `quality: {classifier, min_classifier_score}` adds the signal and
rejects low scores under their own reason, `curriculum: {difficulty: classifier}` buckets by it,
and a model file of another classifier version stops the config with one line."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import query, write_config, write_jsonl

import quality.classifier as qc
from common.config import ConfigError
from corpus.catalog import Catalog
from corpus.report import render_report
from corpus.sample import SampleGenerator
from corpus.store import CorpusLayout
from pipelines.config import load_config
from pipelines.runner import run_build
from pipelines.steps.curriculum import Curriculum, CurriculumError
from pipelines.steps.quality import Quality
from quality.annotate import ANNOTATIONS_SCHEMA
from quality.annotate import TABLE as ANNOTATIONS
from quality.classifier import load_classifier
from quality.train_classifier import main as train_main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], Path]:
    """(a model trained on one generated sample, documents of another, the model's directory)."""
    out = tmp_path_factory.mktemp("clfstep")
    train = SampleGenerator(11).generate()
    for label, keep in (("good", lambda k: k == "legal"), ("junk", lambda k: k.startswith("junk_"))):
        rows = [d for d in train if keep(d["meta"]["kind"])]
        (out / f"{label}.jsonl").write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in rows), "utf-8")
    model = out / "model.npz"
    args = ["--good", str(out / "good.jsonl"), "--junk", str(out / "junk.jsonl"), "--out", str(model)]
    assert train_main([*args, "--bits", "16"]) == 0
    docs = SampleGenerator(12).generate()
    test = [d for d in docs if d["meta"]["kind"] == "legal"][:30] + [
        d for d in docs if d["meta"]["kind"].startswith("junk_")
    ][:12]
    return model, test, out


def test_build_adds_classifier_score_filters_and_buckets(corpus: tuple[Path, list[dict], Path], tmp_path: Path) -> None:
    model, docs, _ = corpus
    source = write_jsonl(tmp_path / "in.jsonl", [{"url": d["url"], "text": d["text"], "lang": d["lang"]} for d in docs])
    kinds = {d["url"]: d["meta"]["kind"] for d in docs}
    root = tmp_path / "corpus"
    steps = [
        # no heuristic rule, so every removal below is the classifier's
        {"quality": {"families": [], "classifier": str(model), "min_classifier_score": 0.5}},
        {"curriculum": {"difficulty": "classifier", "buckets": 2}},
    ]
    cfg = load_config(write_config(tmp_path / "build.yaml", root, [source], steps, workers=1))
    result = run_build(cfg, progress=False)
    assert result.docs_in == len(docs)

    rejected = query(root, "SELECT url, reason, detail FROM rejects WHERE step = 'quality'")
    assert rejected and {r for _, r, _ in rejected} == {"classifier_score"}
    assert all(kinds[u].startswith("junk_") for u, _, _ in rejected)  # no legal document lost
    assert all(d.startswith("classifier_score=") and d.endswith(" < 0.5") for _, _, d in rejected)
    junk = sum(1 for k in kinds.values() if k.startswith("junk_"))
    assert len(rejected) >= junk - 1  # held-out junk of a generator seed the model never saw

    kept = query(root, "SELECT url, quality_signals.classifier_score, bucket FROM documents")
    assert len(kept) == result.docs_out and all(s >= 0.5 for _, s, _ in kept)
    signals = query(root, "SELECT count(*), count(classifier_score), min(classifier_score) FROM quality_signals")[0]
    assert signals[0] == signals[1] == len(docs) and signals[2] < 0.5  # every document scored, kept or not
    # difficulty = 1 - score: bucket 0 holds the documents the classifier likes most
    by_bucket = {b: [s for _, s, bb in kept if str(bb) == b] for b in ("0", "1")}
    assert min(by_bucket["0"]) >= max(by_bucket["1"])
    summary = query(root, 'SELECT "by", mean_classifier_score FROM curriculum_buckets ORDER BY bucket_index')
    assert [r[0] for r in summary] == ["classifier", "classifier"] and summary[0][1] > summary[1][1]
    applied = json.loads(query(root, "SELECT thresholds FROM step_settings WHERE step = 'quality'")[0][0])
    assert ["classifier_score", "min_classifier_score", 0.5] in applied

    # the report: scores per source, and agreement with annotations written through the catalog API
    ids = query(root, "SELECT doc_id, source, classifier_score FROM quality_signals ORDER BY doc_id")
    rows = [("t", "r", d, s, "en", 5 if c >= 0.5 else 1, "why", "m", "annotate.en.v1", "sha", 1, 100)
            for d, s, c in ids]  # fmt: skip
    rows[0] = (*rows[0][:5], 1 if rows[0][5] == 5 else 5, *rows[0][6:])  # one disagreement
    with Catalog.open(CorpusLayout.at(root)) as cat:
        cat.ensure_table(ANNOTATIONS, ANNOTATIONS_SCHEMA)
        cat.append_rows(ANNOTATIONS, rows)
    html = render_report(root)
    section = html[html.index("Learned quality score") :]
    assert "import:in" in section and "removed by it" in section and "section-error" not in html
    n = len(ids)
    assert f"{n} annotated documents (m (annotate.en.v1)): agreement {(n - 1) / n:.1%}" in section


def test_step_scores_without_filtering_and_loads_once(corpus: tuple[Path, list[dict], Path]) -> None:
    model, docs, _ = corpus
    step = Quality.from_params({"families": [], "classifier": str(model)}, where="t")
    df = pl.DataFrame({"doc_id": [str(i) for i in range(len(docs))], "text": [d["text"] for d in docs]})
    qc.cached_classifier.cache_clear()
    sig = step.score(df)
    sig2 = step.score(df)
    assert qc.cached_classifier.cache_info().misses == 1  # loaded once in this process
    assert sig["classifier_score"].equals(sig2["classifier_score"])
    assert sig["classifier_score"].to_list() == pytest.approx(load_classifier(model).score(df["text"].to_list()))
    plain = Quality.from_params({"families": []}, where="t").score(df)
    assert plain["classifier_score"].null_count() == len(docs)


def test_other_classifier_version_refused_in_one_line(corpus: tuple[Path, list[dict], Path], tmp_path: Path) -> None:
    model, _, _ = corpus
    old = tmp_path / "v0.npz"
    clf = load_classifier(model)
    real = qc.CLASSIFIER_VERSION
    try:
        qc.CLASSIFIER_VERSION = 0
        clf.save(old)
    finally:
        qc.CLASSIFIER_VERSION = real
    with pytest.raises(ConfigError) as err:
        Quality.from_params({"classifier": str(old)}, where="build.yaml: steps[0]")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        f"build.yaml: steps[0]: step 'quality': {old}: classifier file version 0, this corpusforge reads "
        f"version {real}; retrain it with python -m quality.train_classifier"
    )
    with pytest.raises(ConfigError, match="min_classifier_score needs a classifier"):
        Quality.from_params({"min_classifier_score": 0.5}, where="t")
    with pytest.raises(ConfigError, match=r"min_classifier_score must be in \[0, 1\]"):
        Quality.from_params({"classifier": str(model), "min_classifier_score": 2}, where="t")


def test_classifier_difficulty_needs_scores(tmp_path: Path) -> None:
    step = Curriculum(difficulty="classifier", buckets=2)
    ctx_dir = tmp_path / "step"
    from corpus.stage import StageDir
    from pipelines.step import StepContext

    path = StageDir(ctx_dir, ctx_dir / "state").scan(0, 0)
    path.parent.mkdir(parents=True)
    pl.DataFrame({"doc_id": ["a", "b"], "tokens": [1, 2]}).write_parquet(path)  # no classifier_score
    with pytest.raises(CurriculumError, match=r"classifier: <model\.npz>"):
        step.reduce(StepContext(-1, ctx_dir, ctx_dir))
