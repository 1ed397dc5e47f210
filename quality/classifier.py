"""A fast learned quality score: hashed character and word n-grams, a logistic regression.

Why this model: it has to score every document of the corpus on CPU, so features are computed
for a whole shard at once with numpy (no per-document Python loop): the shard's texts become one
array of code points, every substring hash comes from one polynomial prefix sum (hash of
``[i, i+n)`` = ``(H[i+n] - H[i]) * P^-i`` mod 2^64, P odd so it has an inverse), and the hashes
go to ``2^bits`` buckets. Features per document:

* character n-grams, n = 1..``char_n`` (lowercased, digits folded to 0, whitespace to a space):
  for Chinese these are characters and the 2-4 character units words are made of, so no
  segmenter is needed (Han-aware by construction);
* word unigrams and bigrams of Latin/Cyrillic/... runs of letters and digits (Han characters
  are not word characters: a run of Han text is a clause, not a word).

A document's vector is the mean of its n-gram one-hots (each group weighs by its count), so the
score is ``sigmoid(b + mean(w[bucket]))``: one gather and one ``bincount`` per shard. Only the
first ``max_chars`` characters are read. The model file (``.npz``) carries the weights and a
JSON header: format name and `CLASSIFIER_VERSION` (bumped whenever features or layout change,
so a file from another version is refused instead of scoring garbage), the feature settings,
the training data's sha256, labels and held-out metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "corpusforge.quality_classifier"
CLASSIFIER_VERSION = 1  # bump when the features, the hash or the file layout change

_P = np.uint64(0x100000001B3)  # odd: invertible mod 2^64
_P_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the high bits of h * _MIX are well mixed
_SALT_WORD = np.uint64(0xD6E8FEB86659FD93)
_SALT_BIGRAM = np.uint64(0xA0761D6478BD642F)
BATCH_CHARS = 1 << 17  # characters hashed at once when scoring (8 MB: 4.9 MB/s whole, 16 MB/s in batches)
_SEP = "\x01"  # between documents: not a word character, and n-grams across it are masked out


class ClassifierError(ValueError):
    """A classifier file that cannot be used (missing, not a classifier, another version)."""


@dataclass(frozen=True)
class Features:
    """What the hashed features are; stored in the model file and used as stored."""

    bits: int = 20
    char_n: int = 4
    words: bool = True
    max_chars: int = 20_000

    def __post_init__(self) -> None:
        if not 10 <= self.bits <= 26:
            raise ValueError(f"bits must be in [10, 26], got {self.bits}")
        if not 1 <= self.char_n <= 8:
            raise ValueError(f"char_n must be in [1, 8], got {self.char_n}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {self.max_chars}")


def _code_points(texts: list[str], max_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised code points of all texts joined by `_SEP`, start and end index of each text)."""
    cut = [t[:max_chars].lower() if t else "" for t in texts]
    lengths = np.fromiter((len(t) for t in cut), dtype=np.int64, count=len(cut))
    starts = np.zeros(len(cut), dtype=np.int64)
    if len(cut) > 1:
        starts[1:] = np.cumsum(lengths[:-1] + 1)
    cp = np.frombuffer(_SEP.join(cut).encode("utf-32-le"), dtype=np.uint32).copy()
    digit = (cp >= 48) & (cp <= 57) | (cp >= 0xFF10) & (cp <= 0xFF19)
    cp[digit] = 48
    space = (cp <= 32) & (cp != 1) | (cp == 0x3000) | (cp == 0xA0)
    cp[space] = 32
    return cp, starts, starts + lengths


def _prefix(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial prefix sums H (len n+1) and P^-i (len n): hash(i, n) = (H[i+n]-H[i]) * inv[i]."""
    n = cp.size
    powers = np.full(n, _P, dtype=np.uint64)
    if n:
        powers[0] = 1
    powers = np.cumprod(powers, dtype=np.uint64)
    inv = np.full(n, _P_INV, dtype=np.uint64)
    if n:
        inv[0] = 1
    inv = np.cumprod(inv, dtype=np.uint64)
    h = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(cp.astype(np.uint64) * powers, dtype=np.uint64, out=h[1:])
    return h, inv


def _bucket(h: np.ndarray, salt: np.uint64, bits: int) -> np.ndarray:
    return (((h ^ salt) * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def hashed_ngrams(texts: list[str], feat: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every feature occurrence of ``texts``: (document index, bucket) pairs, and the number of
    features per document (the mean's divisor; at least 1)."""
    cp, starts, ends = _code_points(texts, feat.max_chars)
    ndoc = len(texts)
    with np.errstate(over="ignore"):
        h, inv = _prefix(cp)
        marks = np.zeros(cp.size + 1, dtype=np.int64)
        np.add.at(marks, starts[1:], 1)  # a document's first character opens it; a separator
        doc_of = np.cumsum(marks[: cp.size])  # belongs to the one before (0 characters left: masked)
        remaining = ends[doc_of] - np.arange(cp.size)  # characters left in the document from i
        docs: list[np.ndarray] = []
        buckets: list[np.ndarray] = []
        for n in range(1, feat.char_n + 1):
            if cp.size < n:
                break
            valid = remaining[: cp.size - n + 1] >= n
            sub = (h[n:] - h[:-n]) * inv[: cp.size - n + 1]
            docs.append(doc_of[: cp.size - n + 1][valid])
            buckets.append(_bucket(sub[valid], np.uint64(n), feat.bits))
        if feat.words and cp.size:
            is_word = (cp >= 97) & (cp <= 122) | (cp == 48) | (cp >= 0xC0) & (cp < 0x2000)
            edge = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
            w_start, w_end = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
            wh = (h[w_end] - h[w_start]) * inv[w_start]
            w_doc = doc_of[w_start]
            docs.append(w_doc)
            buckets.append(_bucket(wh, _SALT_WORD, feat.bits))
            same = w_doc[1:] == w_doc[:-1]
            docs.append(w_doc[1:][same])
            buckets.append(_bucket(wh[:-1][same] * _P + wh[1:][same], _SALT_BIGRAM, feat.bits))
    doc_idx = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
    bucket = np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.int64)
    counts = np.maximum(np.bincount(doc_idx, minlength=ndoc), 1)
    return doc_idx, bucket, counts


def feature_matrix(texts: list[str], feat: Features) -> Any:
    """The documents' mean-pooled one-hot vectors as a CSR matrix (for training)."""
    from scipy import sparse

    doc_idx, bucket, counts = hashed_ngrams(texts, feat)
    values = 1.0 / counts[doc_idx]
    m = sparse.coo_matrix((values, (doc_idx, bucket)), shape=(len(texts), 1 << feat.bits)).tocsr()
    m.sum_duplicates()
    return m


@dataclass
class QualityClassifier:
    """Weights over hashed n-grams; ``score`` is P(good) in [0, 1]."""

    features: Features
    weights: np.ndarray  # float32, 2^bits
    bias: float
    meta: dict[str, Any] = field(default_factory=dict)  # training data hash, labels, metrics, seed

    def logits(self, texts: list[str]) -> np.ndarray:
        """In batches of about `BATCH_CHARS` characters: the hash arrays (~80 bytes per character)
        stay small enough to be reused rather than faulted in fresh for a whole shard."""
        out = np.zeros(len(texts))
        start = 0
        while start < len(texts):
            end, chars = start, 0
            while end < len(texts) and (end == start or chars < BATCH_CHARS):
                chars += min(len(texts[end] or ""), self.features.max_chars)
                end += 1
            batch = texts[start:end]
            doc_idx, bucket, counts = hashed_ngrams(batch, self.features)
            sums = np.bincount(doc_idx, weights=self.weights[bucket], minlength=len(batch))
            out[start:end] = self.bias + sums / counts
            start = end
        return out

    def score(self, texts: list[str]) -> np.ndarray:
        z = np.clip(self.logits(texts), -60, 60)
        return 1.0 / (1.0 + np.exp(-z))

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": CLASSIFIER_VERSION, "features": asdict(self.features), **self.meta}

    def save(self, path: Path) -> str:
        """Write the model file atomically; returns its sha256 (what a build records)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        arrays = {
            "header": np.frombuffer(json.dumps(self.header(), sort_keys=True).encode(), dtype=np.uint8),
            "weights": self.weights.astype(np.float32),
            "bias": np.array([self.bias], dtype=np.float64),
        }
        # an .npz written with fixed entry times: the same training gives the same bytes (and sha)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())
        tmp.replace(path)
        return file_sha256(path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_header(path: Path) -> dict[str, Any]:
    """The file's JSON header, checked: right format and `CLASSIFIER_VERSION`, else one clear line."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: no classifier file (train one with python -m quality.train_classifier)")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ClassifierError(f"{path}: not a corpusforge quality classifier file ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ClassifierError(f"{path}: not a corpusforge quality classifier file (format {header.get('format')!r})")
    if header.get("version") != CLASSIFIER_VERSION:
        raise ClassifierError(
            f"{path}: classifier file version {header.get('version')!r}, this corpusforge reads version "
            f"{CLASSIFIER_VERSION}; retrain it with python -m quality.train_classifier"
        )
    return header


def load_classifier(path: Path) -> QualityClassifier:
    header = read_header(path)
    try:
        feat = Features(**header["features"])
        with np.load(path, allow_pickle=False) as z:
            weights = z["weights"].astype(np.float32)
            bias = float(z["bias"][0])
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifierError(f"{path}: damaged classifier file: {exc}") from None
    if weights.shape != (1 << feat.bits,):
        raise ClassifierError(f"{path}: {weights.shape[0]} weights for {feat.bits} hash bits (damaged file)")
    meta = {k: v for k, v in header.items() if k not in ("format", "version", "features")}
    return QualityClassifier(feat, weights, bias, meta)


@lru_cache(maxsize=2)
def cached_classifier(path: str, sha: str) -> QualityClassifier:
    """One load per worker process and file content (``sha`` keys the cache, so an edited file
    is reloaded)."""
    return load_classifier(Path(path))
