"""`python -m quality.train_classifier`: learn a fast quality classifier from labelled JSONL.

Two ways to give labels:

* DCLM-style: ``--good refs.jsonl --junk junk.jsonl`` (each file repeatable): known-good
  references against junk or random web text;
* one file of labelled rows: ``--data annotations.jsonl`` with a ``label`` field (good/junk,
  true/false, 1/0) or, with ``--min-label 3``, a numeric field (``--label-field score``: the 0-5
  rubric score of ``python -m quality.annotate``) where ``>= 3`` counts as good (FineWeb-Edu's cut).

A stable held-out share (``--heldout``, by a hash of seed and text, so identical texts land on
the same side) is never trained on; on it the command prints precision / recall / F1 of the good
class at several thresholds, ROC AUC and the confusion matrix at ``--threshold``, and writes them
into the model file next to the sha256 of the training data. Same data and seed give the same
bytes. The model: `quality.classifier` (hashed char/word n-grams + L2 logistic regression, fit
with L-BFGS from zero weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from common.config import ConfigError
from quality.classifier import Features, QualityClassifier, feature_matrix

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GOOD = {"good", "true", "1", "yes", "pos", "positive", "keep"}
JUNK = {"junk", "bad", "false", "0", "no", "neg", "negative", "drop", "reject"}


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 1 good, 0 junk
    origin: str  # file name


def _label(value: Any, min_label: float | None, where: str) -> int:
    if min_label is not None:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: label {value!r} is not a number (--min-label {min_label:g} needs one)")
        try:
            return int(float(value) >= min_label)
        except ValueError:
            raise ConfigError(f"{where}: label {value!r} is not a number (--min-label {min_label:g})") from None
    if isinstance(value, bool):
        return int(value)
    key = str(value).strip().lower()
    if key in GOOD:
        return 1
    if key in JUNK:
        return 0
    raise ConfigError(f"{where}: label {value!r} is neither good ({'/'.join(sorted(GOOD))}) nor junk")


def read_jsonl(
    path: Path, text_field: str, *, label: int | None = None, label_field: str = "label", min_label: float | None = None
) -> list[Example]:
    """Examples of one file; a bad line stops with ``file:line: what is wrong``."""
    out: list[Example] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        text = row.get(text_field)
        if not isinstance(text, str):
            raise ConfigError(f"{where}: field {text_field!r} missing or not a string")
        if label is None:
            if label_field not in row or row[label_field] is None:
                raise ConfigError(f"{where}: no {label_field!r} field (or use --good/--junk files)")
            y = _label(row[label_field], min_label, f"{where}: field {label_field!r}")
        else:
            y = label
        if text.strip():
            out.append(Example(text, y, path.name))
    if not out:
        raise ConfigError(f"{path}: no non-empty texts in field {text_field!r}")
    return out


def data_sha256(examples: Iterable[Example]) -> str:
    """What the model was trained from: sha256 over (label, text) in input order."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(f"{ex.label}\t{len(ex.text)}\t".encode())
        h.update(ex.text.encode())
    return h.hexdigest()


def is_heldout(text: str, seed: int, share: float) -> bool:
    return xxhash.xxh3_64_intdigest(text.encode(), seed=seed) / 2**64 < share


def fit(x: Any, y: np.ndarray, *, l2: float, balanced: bool, max_iter: int = 400) -> tuple[np.ndarray, float, int]:
    """L2 logistic regression by L-BFGS from zeros (deterministic): (weights, bias, iterations)."""
    from scipy.special import expit

    n, full = x.shape
    used = np.unique(x.indices)  # unused buckets stay 0 (the L2 optimum): fit only the rest
    x = x[:, used]
    d = used.size
    if balanced:
        pos = max(int(y.sum()), 1)
        neg = max(n - int(y.sum()), 1)
        c = np.where(y == 1, n / (2 * pos), n / (2 * neg))
    else:
        c = np.ones(n)
    c = c / c.sum()
    xt = x.T.tocsr()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        # log(1 + e^z) - y z, stably
        lse = np.logaddexp(0.0, z)
        f = _dot(c, lse - y * z) + 0.5 * l2 * _dot(w, w)
        r = c * (expit(z) - y)
        grad = np.empty(d + 1)
        grad[:d] = xt @ r + l2 * w
        grad[d] = r.sum()
        return f, grad

    theta, iterations = lbfgs(loss, np.zeros(d + 1), max_iter=max_iter)
    weights = np.zeros(full, dtype=np.float32)
    weights[used] = theta[:d]
    return weights, float(theta[d]), iterations


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """A dot product without BLAS: OpenBLAS threads spin on a busy machine (40x slower here)."""
    return float(np.multiply(a, b).sum())


def lbfgs(
    fg: Any, x: np.ndarray, *, m: int = 10, max_iter: int = 400, ftol: float = 1e-9, gtol: float = 1e-7
) -> tuple[np.ndarray, int]:
    """Minimise a smooth convex ``fg(x) -> (f, grad)``: L-BFGS two-loop recursion with an Armijo
    backtracking line search. Written here because scipy's L-BFGS-B costs ~70 ms per iteration of
    bookkeeping at 65k dimensions (this one: a few vector operations)."""
    f, g = fg(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * _dot(s, q)
            q -= a * y
            alphas.append(a)
        if hist:
            s, y, _ = hist[-1]
            q *= _dot(s, y) / _dot(y, y)
        else:
            q /= max(float(np.abs(g).max()), 1e-12)
        for (s, y, rho), a in zip(hist, reversed(alphas), strict=True):
            q += s * (a - rho * _dot(y, q))
        p = -q
        slope = _dot(g, p)
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist.clear()
            p, slope = -g, -_dot(g, g)
        t = 1.0
        while True:
            fn, gn = fg(x + t * p)
            if fn <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        step = t * p
        yv = gn - g
        sy = _dot(step, yv)
        if sy > 1e-16:
            hist.append((step, yv, 1.0 / sy))
            if len(hist) > m:
                hist.pop(0)
        x = x + step
        done = abs(f - fn) <= ftol * max(1.0, abs(f)) or float(np.abs(gn).max()) < gtol
        f, g = fn, gn
        if done:
            break
    return x, it


def metrics(scores: np.ndarray, y: np.ndarray, thresholds: Iterable[float], threshold: float) -> dict[str, Any]:
    """Precision / recall / F1 of the good class per threshold, ROC AUC, confusion at ``threshold``."""
    rows = []
    for t in thresholds:
        pred = scores >= t
        tp = int((pred & (y == 1)).sum())
        fp = int((pred & (y == 0)).sum())
        fn = int((~pred & (y == 1)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        rows.append({"threshold": t, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0})
    pred = scores >= threshold
    confusion = {
        "good_as_good": int((pred & (y == 1)).sum()),
        "good_as_junk": int((~pred & (y == 1)).sum()),
        "junk_as_good": int((pred & (y == 0)).sum()),
        "junk_as_junk": int((~pred & (y == 0)).sum()),
    }
    npos, nneg = int(y.sum()), int((y == 0).sum())
    auc = None
    if npos and nneg:
        order = np.argsort(scores, kind="stable")
        ranks = np.empty(len(scores))
        ranks[order] = np.arange(1, len(scores) + 1)
        for v in np.unique(scores):  # ties share the mean rank
            tie = scores == v
            if tie.sum() > 1:
                ranks[tie] = ranks[tie].mean()
        auc = float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    at = next((r for r in rows if abs(r["threshold"] - threshold) < 1e-12), None)
    f1 = at["f1"] if at else metrics(scores, y, [threshold], threshold)["by_threshold"][0]["f1"]
    return {"docs": len(y), "good": npos, "junk": nneg, "auc": auc, "threshold": threshold, "f1": f1,
            "by_threshold": rows, "confusion": confusion}  # fmt: skip


@dataclass
class TrainResult:
    model: QualityClassifier
    train_docs: int
    heldout: dict[str, Any] | None
    seconds: float


def train(
    examples: list[Example],
    feat: Features,
    *,
    seed: int = 0,
    heldout: float = 0.2,
    l2: float = 1e-6,
    balanced: bool = True,
    threshold: float = 0.5,
    label_desc: str = "",
) -> TrainResult:
    started = time.perf_counter()
    held = [is_heldout(e.text, seed, heldout) for e in examples]
    tr = [e for e, h in zip(examples, held, strict=True) if not h]
    te = [e for e, h in zip(examples, held, strict=True) if h]
    y = np.array([e.label for e in tr], dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise ConfigError(f"the training part needs good and junk examples; it has {len(tr)} of one label only")
    w, b, iters = fit(feature_matrix([e.text for e in tr], feat), y, l2=l2, balanced=balanced)
    origins: dict[str, dict[str, int]] = {}
    for e in examples:
        o = origins.setdefault(e.origin, {"good": 0, "junk": 0})
        o["good" if e.label else "junk"] += 1
    model = QualityClassifier(feat, w, b)
    report = None
    if te:
        yt = np.array([e.label for e in te])
        report = metrics(model.score([e.text for e in te]), yt, THRESHOLDS, threshold)
    model.meta = {
        "data_sha256": data_sha256(examples),
        "labels": label_desc,
        "inputs": origins,
        "seed": seed,
        "heldout_share": heldout,
        "l2": l2,
        "balanced": balanced,
        "iterations": iters,
        "train_docs": len(tr),
        "heldout": report,
    }
    return TrainResult(model, len(tr), report, time.perf_counter() - started)


def format_report(r: TrainResult) -> str:
    m = r.model.meta
    lines = [f"trained on {r.train_docs} documents in {r.seconds:.1f} s ({m['iterations']} L-BFGS iterations); "
             f"data sha256 {m['data_sha256'][:16]}"]  # fmt: skip
    h = r.heldout
    if h is None:
        lines.append("no held-out documents (--heldout 0): no metrics")
        return "\n".join(lines)
    auc = f"{h['auc']:.3f}" if h["auc"] is not None else "n/a"
    lines.append(f"held out: {h['docs']} documents ({h['good']} good, {h['junk']} junk), ROC AUC {auc}")
    lines.append("threshold  precision  recall  F1")
    for row in h["by_threshold"]:
        mark = "  <-" if abs(row["threshold"] - h["threshold"]) < 1e-12 else ""
        lines.append(f"{row['threshold']:9.2f}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:.3f}{mark}")
    c = h["confusion"]
    lines.append(f"confusion at {h['threshold']:g} (rows: true label):")
    lines.append(f"  good: {c['good_as_good']:6d} kept  {c['good_as_junk']:6d} dropped")
    lines.append(f"  junk: {c['junk_as_good']:6d} kept  {c['junk_as_junk']:6d} dropped")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quality.train_classifier", description=__doc__.split("\n\n")[0])
    ap.add_argument("--good", type=Path, action="append", default=[], help="JSONL of good references")
    ap.add_argument("--junk", type=Path, action="append", default=[], help="JSONL of junk / random text")
    ap.add_argument("--data", type=Path, action="append", default=[], help="JSONL with a label field")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--min-label", type=float, default=None, help="numeric labels: >= this is good (e.g. 3)")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    ap.add_argument("--heldout", type=float, default=0.2, help="share held out for metrics (0-0.9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5, help="where the confusion matrix is cut")
    ap.add_argument("--l2", type=float, default=1e-6, help="L2 penalty (features are means: keep it small)")
    ap.add_argument("--no-balance", action="store_true", help="do not weight the classes equally")
    ap.add_argument("--bits", type=int, default=Features.bits)
    ap.add_argument("--char-n", type=int, default=Features.char_n)
    ap.add_argument("--no-words", action="store_true")
    ap.add_argument("--max-chars", type=int, default=Features.max_chars)
    ap.add_argument("--metrics-out", type=Path, default=None, help="also write the held-out metrics as JSON")
    args = ap.parse_args(argv)
    try:
        if not (args.data or (args.good and args.junk)):
            raise ConfigError("give --good and --junk files, or --data with a label field")
        if not 0.0 <= args.heldout <= 0.9:
            raise ConfigError(f"--heldout must be in [0, 0.9], got {args.heldout}")
        examples: list[Example] = []
        for p in args.good:
            examples += read_jsonl(p, args.text_field, label=1)
        for p in args.junk:
            examples += read_jsonl(p, args.text_field, label=0)
        for p in args.data:
            examples += read_jsonl(p, args.text_field, label_field=args.label_field, min_label=args.min_label)
        feat = Features(args.bits, args.char_n, not args.no_words, args.max_chars)
        desc = (
            f"{args.label_field} >= {args.min_label:g}"
            if args.data and args.min_label is not None
            else ("good/junk files" if not args.data else f"{args.label_field} good/junk")
        )
        result = train(
            examples,
            feat,
            seed=args.seed,
            heldout=args.heldout,
            l2=args.l2,
            balanced=not args.no_balance,
            threshold=args.threshold,
            label_desc=desc,
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sha = result.model.save(args.out)
    print(format_report(result))
    print(f"wrote {args.out} (sha256 {sha[:16]}; features {json.dumps(asdict(feat))})")
    if args.metrics_out:
        args.metrics_out.write_text(json.dumps(result.heldout, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
