"""Preference pairs for DPO: corpus rows whose ``meta`` holds ``prompt``, ``chosen`` and
``rejected`` (the synthesis job's `synth:preference` rows), tokenised once per shard, drawn in a
seeded order per pass with a resumable cursor, and padded into micro-batches.

Each answer goes through the model's chat template after the prompt, as an instruction row does
(`training.data.chat_tokens`): the loss mask is false on the prompt, so a sequence's log-probability
covers the answer only. Tokens are cached per shard like plain documents
(``<root>/state/tokens/<tokenizer key>-pairs/<checksum>.npz``, the shard checked against the catalog
first); rows without the three fields are skipped and counted. A pair whose prompt leaves no answer
token within ``seq_len`` is dropped with a count (its loss would be a constant); longer answers are
cut at ``seq_len``.

Order: pass p visits every pair once in the permutation seeded by ``(seed, p)``; a global group is
``world x micro_batch`` consecutive pairs and rank r takes pairs ``[r mb, (r + 1) mb)`` of it. The
state is (pass, index), so a resumed run continues the same sequence without replaying anything.
A micro-batch is laid out as ``[chosen rows; rejected rows]``, right-padded to its longest row.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.store import CorruptShardError, write_bytes
from training.curriculum import CurriculumError
from training.data import DocumentTokenizer, ShardRef, chat_tokens, check_shard
from training.distributed import Dist
from training.packing import IGNORE_INDEX
from training.stream import Cursor

PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")


class PreferenceError(CurriculumError):
    """The pairs cannot fill a group, or a checkpoint of another order is resumed; the message says why."""


def preference_parts(meta: str | None) -> tuple[str, str, str] | None:
    """(prompt, chosen, rejected) when ``meta`` carries all three as non-empty strings."""
    if not meta:
        return None
    try:
        data: Any = json.loads(meta)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    parts = tuple(data.get(k) for k in PREFERENCE_FIELDS)
    if all(isinstance(p, str) and p for p in parts):
        return parts  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class Pair:
    """One preference pair as token ids and loss masks (false on the prompt)."""

    chosen: np.ndarray
    chosen_mask: np.ndarray
    rejected: np.ndarray
    rejected_mask: np.ndarray
    shard: int
    row: int


@dataclass(frozen=True)
class ShardPairs:
    """The tokenised pairs of one shard: per side, ids and masks concatenated with offsets."""

    ids: tuple[np.ndarray, np.ndarray]
    masks: tuple[np.ndarray, np.ndarray]
    offsets: tuple[np.ndarray, np.ndarray]
    rows: np.ndarray  # the shard row of each pair
    skipped: int  # rows without preference fields

    def pair(self, k: int, shard: int) -> Pair:
        (ci, ri), (cm, rm), (co, ro) = self.ids, self.masks, self.offsets
        return Pair(
            ci[co[k] : co[k + 1]],
            cm[co[k] : co[k + 1]],
            ri[ro[k] : ro[k + 1]],
            rm[ro[k] : ro[k + 1]],
            shard,
            int(self.rows[k]),
        )


def tokenized_pairs(ref: ShardRef, doc_tok: DocumentTokenizer, cache_root: Path) -> ShardPairs:
    """The preference pairs of one shard, from the cache when present."""
    path = cache_root / f"{doc_tok.key}-pairs" / f"{ref.checksum}.npz"
    if path.exists():
        with np.load(path) as d:
            return ShardPairs(
                (d["chosen"], d["rejected"]),
                (d["chosen_mask"], d["rejected_mask"]),
                (d["chosen_offsets"], d["rejected_offsets"]),
                d["rows"],
                int(d["skipped"]),
            )
    check_shard(ref)
    sides: dict[str, tuple[list[int], list[bool], list[int]]] = {s: ([], [], [0]) for s in ("chosen", "rejected")}
    rows: list[int] = []
    n = skipped = 0
    try:
        for batch in pq.ParquetFile(ref.path).iter_batches(columns=["meta"]):
            for meta in batch.column("meta").to_pylist():
                parts = preference_parts(meta)
                if parts is None:
                    skipped += 1
                else:
                    prompt, chosen, rejected = parts
                    for side, answer in (("chosen", chosen), ("rejected", rejected)):
                        ids, mask = chat_tokens(doc_tok.tokenizer, prompt, answer)
                        sides[side][0].extend(ids)
                        sides[side][1].extend(mask)
                        sides[side][2].append(len(sides[side][0]))
                    rows.append(n)
                n += 1
    except (pa.ArrowException, KeyError) as exc:
        raise CorruptShardError(f"{ref.path}: not a readable document shard: {exc}") from None
    if n != ref.rows:
        raise CorruptShardError(f"{ref.path}: {n} documents, the catalog says {ref.rows}")
    arrays = {
        **{s: np.asarray(v[0], dtype=np.int32) for s, v in sides.items()},
        **{f"{s}_mask": np.asarray(v[1], dtype=bool) for s, v in sides.items()},
        **{f"{s}_offsets": np.asarray(v[2], dtype=np.int64) for s, v in sides.items()},
        "rows": np.asarray(rows, dtype=np.int64),
        "skipped": np.asarray(skipped),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(buf.getvalue(), path)
    return tokenized_pairs(ref, doc_tok, cache_root)


class PreferencePairs:
    """Every usable pair of a shard selection, addressable by a global index."""

    def __init__(self, refs: Sequence[ShardRef], doc_tok: DocumentTokenizer, cache_root: Path, seq_len: int) -> None:
        self.refs = list(refs)
        self.shards = [tokenized_pairs(ref, doc_tok, cache_root) for ref in self.refs]
        self.skipped = sum(s.skipped for s in self.shards)  # rows without preference fields
        self.too_long = 0  # pairs whose prompt leaves no answer token within seq_len
        self.index: list[tuple[int, int]] = []
        for s, shard in enumerate(self.shards):
            for k in range(len(shard.rows)):
                pair = shard.pair(k, s)
                if pair.chosen_mask[1:seq_len].any() and pair.rejected_mask[1:seq_len].any():
                    self.index.append((s, k))
                else:
                    self.too_long += 1

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Pair:
        s, k = self.index[i]
        return self.shards[s].pair(k, s)

    def where(self, pair: Pair) -> tuple[ShardRef, Cursor]:
        return self.refs[pair.shard], Cursor(pair.shard, pair.row, 0)


class PairOrder:
    """Pairs in a seeded permutation per pass, in global groups of ``world x micro_batch``; the
    same interface as the SFT curricula (`next_group`, `state`, `rows_by_bucket`)."""

    def __init__(self, pairs: PreferencePairs, seed: int, state: dict[str, Any] | None = None) -> None:
        if (state or {}).get("kind", "preference") != "preference":
            raise PreferenceError(
                "the checkpoint was written by an SFT run; this run trains DPO (use a new output_dir)"
            )
        self.pairs, self.seed = pairs, seed
        self.passes = int((state or {}).get("passes", 0))
        self.position = int((state or {}).get("index", 0))
        self._perm = self._permutation(self.passes)

    def _permutation(self, passes: int) -> np.ndarray:
        return np.random.default_rng((self.seed, passes)).permutation(len(self.pairs))

    def next_group(self, dist: Dist, micro_batch: int) -> tuple[list[Pair], tuple[ShardRef, Cursor]]:
        """This rank's pairs of the next global group (a group never straddles two passes)."""
        group = dist.world * micro_batch
        if group > len(self.pairs):
            raise PreferenceError(
                f"{len(self.pairs)} preference pair(s) cannot fill one group of world_size x micro_batch = {group}"
            )
        if self.position + group > len(self.pairs):
            self.passes, self.position = self.passes + 1, 0
            self._perm = self._permutation(self.passes)
        mine = self._perm[self.position + dist.rank * micro_batch : self.position + (dist.rank + 1) * micro_batch]
        first = self.pairs[int(self._perm[self.position])]
        self.position += group
        return [self.pairs[int(i)] for i in mine], self.pairs.where(first)

    def rows_by_bucket(self) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return {"kind": "preference", "passes": self.passes, "index": self.position}


def eval_groups(pairs: PreferencePairs, dist: Dist, micro_batch: int, limit: int) -> list[list[Pair]]:
    """This rank's slice of up to ``limit`` groups over the pairs in order; the last group may be
    partial and a slice empty (the caller runs a padding pair so every rank calls the model)."""
    group = dist.world * micro_batch
    out = []
    for start in range(0, min(len(pairs), limit * group), group):
        lo = start + dist.rank * micro_batch
        out.append([pairs[i] for i in range(lo, min(lo + micro_batch, start + group, len(pairs)))])
    return out


def pad_pairs(pairs: Sequence[Pair], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """``input_ids``, ``labels``, ``attention_mask`` [2 x pairs, L] as [chosen rows; rejected rows],
    right-padded to the longest row (at most ``seq_len``); the first label of a row is masked."""
    seqs = [(p.chosen, p.chosen_mask) for p in pairs] + [(p.rejected, p.rejected_mask) for p in pairs]
    length = max(min(len(ids), seq_len) for ids, _ in seqs)
    input_ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    labels = np.full((len(seqs), length), IGNORE_INDEX, dtype=np.int64)
    attention = np.zeros((len(seqs), length), dtype=np.int64)
    for i, (ids, mask) in enumerate(seqs):
        ids, mask = ids[:seq_len], mask[:seq_len]
        input_ids[i, : len(ids)] = ids
        labels[i, : len(ids)] = np.where(mask, ids, IGNORE_INDEX)
        labels[i, 0] = IGNORE_INDEX
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def padding_pair(pad_id: int) -> Pair:
    """A pair of two padding tokens with no labels: a forward call that adds nothing."""
    ids, mask = np.full(2, pad_id, dtype=np.int32), np.zeros(2, dtype=bool)
    return Pair(ids, mask, ids, mask, -1, -1)
