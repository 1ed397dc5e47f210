"""The learned quality classifier: held-out F1 on separable data, determinism, the model file's
version check, and scores that do not depend on which other documents share the batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import quality.classifier as qc
from common.config import ConfigError
from corpus.sample import SampleGenerator
from quality.classifier import ClassifierError, Features, file_sha256, load_classifier, read_header
from quality.train_classifier import main, read_jsonl

BITS = ["--bits", "16"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Generated legal documents (en, zh) as good, the generator's junk kinds as junk."""
    docs = SampleGenerator(7).generate()
    out = tmp_path_factory.mktemp("clf")
    good, junk = out / "good.jsonl", out / "junk.jsonl"
    kinds = {"good": [d for d in docs if d["meta"]["kind"] == "legal"],
             "junk": [d for d in docs if d["meta"]["kind"].startswith("junk_")]}  # fmt: skip
    for path, rows in ((good, kinds["good"]), (junk, kinds["junk"])):
        path.write_text("".join(json.dumps({"text": d["text"]}, ensure_ascii=False) + "\n" for d in rows), "utf-8")
    return good, junk


def test_heldout_f1_and_same_bytes_for_same_seed(labelled: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    good, junk = labelled
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert main(["--good", str(good), "--junk", str(junk), "--out", str(a), "--heldout", "0.3", *BITS]) == 0
    printed = capsys.readouterr().out
    assert "confusion at 0.5" in printed and "ROC AUC" in printed
    header = read_header(a)
    held = header["heldout"]
    assert held["docs"] >= 40 and held["junk"] >= 5
    assert held["f1"] >= 0.95, held
    conf = held["confusion"]
    assert sum(conf.values()) == held["docs"]
    assert conf["good_as_good"] + conf["good_as_junk"] == held["good"]
    inputs = header["inputs"]
    assert inputs["good.jsonl"]["junk"] == 0 and inputs["junk.jsonl"]["good"] == 0
    assert sum(v["good"] + v["junk"] for v in inputs.values()) == header["train_docs"] + held["docs"]
    assert main(["--good", str(good), "--junk", str(junk), "--out", str(b), "--heldout", "0.3", *BITS]) == 0
    assert file_sha256(a) == file_sha256(b)  # deterministic: same data and seed, same bytes
    assert main(["--good", str(good), "--junk", str(junk), "--out", str(c), "--heldout", "0.3", "--seed", "1",
                 *BITS]) == 0  # fmt: skip
    other = read_header(c)
    assert other["data_sha256"] == header["data_sha256"]  # same data ...
    assert other["train_docs"] != header["train_docs"] or file_sha256(c) != file_sha256(a)  # ... another split


def test_scores_do_not_depend_on_the_batch(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    good, junk = labelled
    path = tmp_path / "m.npz"
    assert main(["--good", str(good), "--junk", str(junk), "--out", str(path), *BITS]) == 0
    model = load_classifier(path)
    texts = [e.text for e in read_jsonl(good, "text", label=1)[:5]] + ["", "短", "x"]
    together = model.score(texts)
    alone = np.array([model.score([t])[0] for t in texts])
    assert np.allclose(together, alone)
    qc.BATCH_CHARS, real = 60, qc.BATCH_CHARS  # many small batches: the same scores
    try:
        assert np.allclose(model.score(texts), together)
    finally:
        qc.BATCH_CHARS = real
    assert together[:5].min() > 0.5  # training documents of the good class


def test_other_version_and_bad_files_are_refused(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    good, junk = labelled
    path = tmp_path / "m.npz"
    assert main(["--good", str(good), "--junk", str(junk), "--out", str(path), *BITS]) == 0
    model = load_classifier(path)
    model.meta["x"] = 1
    old = tmp_path / "old.npz"
    real = qc.CLASSIFIER_VERSION
    try:
        qc.CLASSIFIER_VERSION = real + 1  # a file written by another corpusforge version
        model.save(old)
    finally:
        qc.CLASSIFIER_VERSION = real
    with pytest.raises(ClassifierError) as err:
        load_classifier(old)
    assert str(err.value) == (
        f"{old}: classifier file version {real + 1}, this corpusforge reads version {real}; "
        "retrain it with python -m quality.train_classifier"
    )
    junk_file = tmp_path / "not.npz"
    junk_file.write_text("hello")
    with pytest.raises(ClassifierError, match="not a corpusforge quality classifier file"):
        load_classifier(junk_file)
    with pytest.raises(ClassifierError, match="no classifier file"):
        load_classifier(tmp_path / "missing.npz")


def test_bad_records_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "good"}\n{"text": 3, "label": "good"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{bad}:2: field 'text' missing or not a string$"):
        read_jsonl(bad, "text")
    bad.write_text('{"text": "fine", "score": "high"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r":1: field 'score': label 'high' is not a number"):
        read_jsonl(bad, "text", label_field="score", min_label=3)
    with pytest.raises(ValueError, match="bits"):
        Features(bits=40)
