"""The learned quality classifier on real data: held-out F1, and its cost inside the quality step.

`python benchmarks/classifier.py f1`: good = ``../shared/data/zh_legal_dev.jsonl`` (real court
texts and exam questions), junk = the quality benchmark's real junk (`benchmarks/quality_refs.py`:
code, number tables, word lists, word salad, nav text, Chinese keyword lists, SEO spam ...). The
split is quality_refs' own (by a hash of the document id): the model is trained on the ``calib``
half and measured on the ``heldout`` half, never tuned on it.

`python benchmarks/classifier.py throughput --mb 16`: one core (Polars and BLAS pinned to one
thread), the quality step's ``process`` over the same real text with and without
``classifier:``, and the classifier's ``score`` alone; MB of UTF-8 text per CPU second.
Run it under the heavy lock (docs/QUALITY.md).

`python benchmarks/classifier.py build --mb 8 --model clf.npz`: the same, measured the way a real
build sees it: two full builds (``python -m pipelines.build``, 1 worker, ``normalize`` then
``quality``) of one generated JSONL input (real text only: zh_legal_dev, the bundled sample,
zh_legal_ner_dev; repeated with a counter line to reach ``--mb``), one without and one with
``quality: {classifier: ...}``; reads the quality step's MB in and CPU seconds from each build's
``step_stats`` in the catalog, and prints both, the difference (the classifier's share) and its
marginal MB/s. The task's CPU includes the model load (once per worker).
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality.classifier import Features, load_classifier  # noqa: E402
from quality.train_classifier import THRESHOLDS, Example, metrics, train  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
REFS = ROOT / "bench-data" / "quality"


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        sys.exit(f"{path}: missing; run python benchmarks/quality_refs.py first (docs/QUALITY.md)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_sets() -> dict[str, list[dict]]:
    ids = {r["id"] for r in _rows(SHARED / "zh_legal_dev.jsonl")}
    out = {}
    for part in ("calib", "heldout"):
        out[f"good.{part}"] = [r for r in _rows(REFS / f"zh_good.{part}.jsonl") if r["id"] in ids]
        out[f"junk.{part}"] = _rows(REFS / f"junk.{part}.jsonl")
    return out


def cmd_f1(args: argparse.Namespace) -> None:
    sets = real_sets()
    examples = [Example(r["text"], 1, "zh_legal_dev") for r in sets["good.calib"]]
    examples += [Example(r["text"], 0, "junk") for r in sets["junk.calib"]]
    result = train(examples, Features(), seed=0, heldout=0.0, label_desc="zh_legal_dev vs junk")
    model = result.model
    if args.save:
        model.save(Path(args.save))
    good, junk = sets["good.heldout"], sets["junk.heldout"]
    scores = model.score([r["text"] for r in good + junk])
    y = np.array([1] * len(good) + [0] * len(junk))
    m = metrics(scores, y, THRESHOLDS, 0.5)
    print(f"train (calib half): {len(sets['good.calib'])} zh_legal_dev + {len(sets['junk.calib'])} junk, "
          f"{result.seconds:.1f} s; test (held-out half): {len(good)} + {len(junk)}")  # fmt: skip
    print(f"ROC AUC {m['auc']:.4f}; F1 at 0.5 {m['f1']:.4f}; confusion {m['confusion']}")
    for row in m["by_threshold"]:
        print(f"  t={row['threshold']:.1f}  P={row['precision']:.4f}  R={row['recall']:.4f}  F1={row['f1']:.4f}")
    kinds_kept = Counter(r.get("kind") for r, s in zip(junk, scores[len(good) :], strict=True) if s >= 0.5)
    good_lost = Counter(r.get("kind") for r, s in zip(good, scores[: len(good)], strict=True) if s < 0.5)
    print(f"junk kept at 0.5 by kind: {dict(kinds_kept)}; good dropped by kind: {dict(good_lost)}")
    others = {
        "zh_legal_ner_dev sentences (good, a kind never trained on)": [
            r["text"] for r in _rows(REFS / "zh_good.heldout.jsonl") if r.get("kind") == "judgment_sentence"
        ],
        "PRC Criminal Law sections (good, never trained on)": [
            r["text"] for r in _rows(REFS / "zh_good.heldout.jsonl") if r.get("kind") == "statute"
        ],
        "English references (news, licences; never trained on)": [
            r["text"] for r in _rows(REFS / "en_good.heldout.jsonl")
        ],
    }
    for name, texts in others.items():
        if texts:
            s = model.score(texts)
            print(
                f"{name}: {len(texts)} documents, share >= 0.5: {float((s >= 0.5).mean()):.3f}, "
                f"median {np.median(s):.3f}"
            )
    cjk = [i for i, r in enumerate(junk) if r.get("lang") == "zh"]
    print(f"Chinese junk in the held-out half: {len(cjk)}, kept at 0.5: "
          f"{sum(1 for i in cjk if scores[len(good) + i] >= 0.5)}")  # fmt: skip


def corpus_texts(mb: float) -> list[str]:
    base = [r["text"] for r in _rows(SHARED / "zh_legal_dev.jsonl")]
    base += [r["text"] for r in _rows(REFS / "en_good.heldout.jsonl")] + [
        r["text"] for r in _rows(REFS / "junk.heldout.jsonl")
    ]
    texts, size, k = [], 0, 0
    while size < mb * 1e6:
        t = base[k % len(base)] + ("" if k < len(base) else f"\n{k}")
        texts.append(t)
        size += len(t.encode())
        k += 1
    return texts


def cmd_throughput(args: argparse.Namespace) -> None:
    import polars as pl

    from pipelines.step import StepContext
    from pipelines.steps.quality import Quality

    texts = corpus_texts(args.mb)
    nbytes = sum(len(t.encode()) for t in texts)
    model_path = Path(args.model)
    df = pl.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(len(texts))],
            "source": ["bench"] * len(texts),
            "url": [None] * len(texts),
            "title": [None] * len(texts),
            "text": texts,
            "lang": [None] * len(texts),
        },
        schema_overrides={"url": pl.String, "title": pl.String, "lang": pl.String},
    )
    tmp = ROOT / "bench-data" / "classifier-throughput"
    ctx = StepContext(0, tmp, tmp)
    out = {}
    for name, params in (("quality step", {}), ("quality step + classifier", {"classifier": str(model_path)})):
        step = Quality.from_params({"thresholds_from": str(ROOT / "configs" / "quality"), **params}, where=name)
        step.setup(tmp)
        step.process(df.head(200), ctx)  # warm: detector, dictionary, model loaded
        t = time.process_time()
        step.process(df, ctx)
        out[name] = time.process_time() - t
    model = load_classifier(model_path)
    model.score(texts[:100])
    t = time.process_time()
    model.score(texts)
    out["classifier score alone"] = time.process_time() - t
    print(f"{len(texts)} documents, {nbytes / 1e6:.1f} MB (zh_legal_dev, en references, junk), one core:")
    for name, s in out.items():
        print(f"  {name:28s} {s:7.2f} CPU s  {nbytes / 1e6 / s:7.2f} MB/s")
    extra = out["quality step + classifier"] - out["quality step"]
    print(f"  classifier's share of the step: {extra:.2f} CPU s ({nbytes / 1e6 / max(extra, 1e-9):.1f} MB/s marginal)")


def build_input(mb: float, path: Path) -> int:
    base = [r["text"] for r in _rows(SHARED / "zh_legal_dev.jsonl")]
    base += [r["text"] for r in _rows(ROOT / "samples" / "legal_sample.jsonl") if (r.get("text") or "").strip()]
    if (SHARED / "zh_legal_ner_dev.jsonl").exists():
        base += [r["text"] for r in _rows(SHARED / "zh_legal_ner_dev.jsonl")]
    size, k = 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        while size < mb * 1e6:
            t = base[k % len(base)] + ("" if k < len(base) else f"\n{k}")
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
            size += len(t.encode())
            k += 1
    return k


def cmd_build(args: argparse.Namespace) -> None:
    import subprocess

    import duckdb

    work = ROOT / "bench-data" / "classifier-build"
    data = work / "input.jsonl"
    docs = build_input(args.mb, data)
    quality = {"perplexity": False, "thresholds_from": str(ROOT / "configs" / "quality")}
    out = {}
    for name, extra in (("without", {}), ("with classifier", {"classifier": str(Path(args.model).resolve())})):
        root = work / name.replace(" ", "-")
        cfg = {
            "root": str(root),
            "workers": 1,
            "sources": [{"path": str(data), "source": "bench"}],
            "steps": ["normalize", {"quality": {**quality, **extra}}],
        }
        config = work / f"{root.name}.yaml"
        config.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
        env = {**os.environ, "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pipelines.build", "--config", str(config), "--force"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
        rows = con.execute(
            "SELECT step, bytes_in, cpu_seconds, wall_seconds, tasks FROM step_stats WHERE run_id = "
            "(SELECT run_id FROM runs WHERE kind = 'build' ORDER BY started_at DESC LIMIT 1) ORDER BY step_index"
        ).fetchall()
        con.close()
        out[name] = {r[0]: r[1:] for r in rows}
    print(f"{docs} documents, {args.mb:g} MB asked (zh_legal_dev, legal sample, zh_legal_ner_dev), 1 worker:")
    for name, steps in out.items():
        for step, (nbytes, cpu, wall, tasks) in steps.items():
            if step in ("normalize", "quality"):
                print(f"  {name:16s} {step:10s} {nbytes / 1e6:6.2f} MB in  {cpu:6.2f} CPU s  "
                      f"{nbytes / 1e6 / cpu:6.2f} MB/CPU-s  (wall {wall:.2f} s, {tasks} tasks)")  # fmt: skip
    (_, c0, *_), (b1, c1, *_) = out["without"]["quality"], out["with classifier"]["quality"]
    extra = c1 - c0
    print(f"  classifier's share of the quality step: {extra:.2f} CPU s of {c1:.2f} "
          f"({b1 / 1e6 / max(extra, 1e-9):.1f} MB/CPU-s marginal)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f1 = sub.add_parser("f1")
    f1.add_argument("--save", default=None, help="also write the trained model here")
    tp = sub.add_parser("throughput")
    tp.add_argument("--mb", type=float, default=16)
    tp.add_argument("--model", required=True, help="a model file (e.g. from f1 --save)")
    bd = sub.add_parser("build")
    bd.add_argument("--mb", type=float, default=8)
    bd.add_argument("--model", required=True, help="a model file (python -m quality.train_classifier --out)")
    args = ap.parse_args()
    {"f1": cmd_f1, "throughput": cmd_throughput, "build": cmd_build}[args.cmd](args)


if __name__ == "__main__":
    main()
