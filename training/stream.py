"""A packed-row stream with a seekable cursor, so resuming and rank sharding never re-pack.

The packed stream is a pure function of the document lengths: every row starts at a known
(shard, document, token offset) and `Packer` starts a fresh row there (positions restart, the
first label is masked, exactly as when the row follows the previous one). So the stream keeps a
`Cursor` at the start of the next row, and

- `skip(n)` moves the cursor over ``n`` rows with arithmetic on the documents' offsets only, no
  tokens read and no rows built (how a rank steps over the other ranks' rows, and how a resumed
  run jumps to its checkpointed cursor in O(1)),
- `take(n)` packs exactly the next ``n`` rows from the cached tokens.

`take` after any sequence of skips yields the same rows as packing the whole stream from the
start (tested), which is what makes rank sharding disjoint and resume exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.packing import PackedRow, Packer

# shard index -> (token ids, loss mask, document offsets), as `training.data.tokenized_shard` returns
ShardLoader = Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Cursor:
    """The first token of the next row: document ``doc`` of shard ``shard``, ``offset`` tokens in."""

    shard: int = 0
    doc: int = 0
    offset: int = 0

    def as_list(self) -> list[int]:
        return [self.shard, self.doc, self.offset]


class PackedStream:
    """Rows of ``seq_len`` tokens over ``num_shards`` tokenised shards, from ``cursor`` on."""

    def __init__(
        self, num_shards: int, load: ShardLoader, seq_len: int, pad_id: int, cursor: Cursor | None = None
    ) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
        self.num_shards, self.seq_len, self.pad_id = num_shards, seq_len, pad_id
        self._load = load
        # the last two shards: `take` re-walks from its start, which may lie in the shard before the one `skip` reached
        self._cached: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.cursor = cursor or Cursor()
        if not 0 <= self.cursor.shard <= num_shards:
            raise ValueError(f"cursor {self.cursor} is outside the {num_shards} shard(s) of this stream")

    def _shard(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in self._cached:
            if len(self._cached) >= 2:
                del self._cached[min(self._cached)]
            self._cached[index] = self._load(index)
        return self._cached[index]

    def _normalise(self, c: Cursor) -> Cursor:
        """Step over finished documents (and empty ones / exhausted shards) to the next token."""
        shard, doc, offset = c.shard, c.doc, c.offset
        while shard < self.num_shards:
            offsets = self._shard(shard)[2]
            while doc < len(offsets) - 1 and offset >= offsets[doc + 1] - offsets[doc]:
                doc, offset = doc + 1, 0
            if doc < len(offsets) - 1:
                return Cursor(shard, doc, offset)
            shard, doc, offset = shard + 1, 0, 0
        return Cursor(self.num_shards, 0, 0)

    @property
    def exhausted(self) -> bool:
        return self._normalise(self.cursor).shard >= self.num_shards

    def _row_end(self, start: Cursor) -> Cursor | None:
        """Where the row starting at ``start`` ends, by `Packer`'s rules; None when no token is left."""
        c = self._normalise(start)
        if c.shard >= self.num_shards:
            return None
        fill = 0
        while c.shard < self.num_shards:
            room = self.seq_len - fill
            if room < 2:  # Packer pads the last slot and closes the row
                return c
            offsets = self._shard(c.shard)[2]
            remaining = int(offsets[c.doc + 1] - offsets[c.doc]) - c.offset
            piece = min(room, remaining)
            fill += piece
            c = self._normalise(Cursor(c.shard, c.doc, c.offset + piece))
            if fill == self.seq_len:
                return c
        return c  # the data ends inside this row: Packer.flush pads it

    def skip(self, n: int) -> int:
        """Move over up to ``n`` rows without reading tokens; returns how many there were."""
        done = 0
        while done < n:
            end = self._row_end(self.cursor)
            if end is None:
                break
            self.cursor, done = end, done + 1
        return done

    def take(self, n: int) -> list[PackedRow]:
        """The next (up to) ``n`` rows, packed from the cached tokens."""
        start = self.cursor
        count = self.skip(n)
        if count == 0:
            return []
        end, packer, rows = self.cursor, Packer(self.seq_len, self.pad_id), []
        c = self._normalise(start)
        while c != end:
            ids, mask, offsets = self._shard(c.shard)
            base = int(offsets[c.doc])
            stop = end.offset if (c.shard, c.doc) == (end.shard, end.doc) else int(offsets[c.doc + 1]) - base
            rows.extend(
                packer.add(ids[base + c.offset : base + stop].tolist(), mask[base + c.offset : base + stop].tolist())
            )
            c = self._normalise(Cursor(c.shard, c.doc, stop))
        rows.extend(packer.flush())
        if len(rows) != count:  # the planner and the packer disagree: a bug, never silently train on it
            raise AssertionError(f"packed {len(rows)} rows between {start} and {end}, planned {count}")
        return rows


def shard_loader(refs: Sequence, doc_tok: object, cache_root: object) -> ShardLoader:
    """A loader over `training.data` shard refs (tokens from the on-disk cache)."""
    from training.data import tokenized_shard

    return lambda index: tokenized_shard(refs[index], doc_tok, cache_root)  # type: ignore[arg-type]


def packed_stream(
    refs: Sequence, doc_tok: object, cache_root: object, seq_len: int, cursor: Cursor | None = None
) -> PackedStream:
    """The packed rows of `training.data` shards (in order) from ``cursor``, padded with EOS."""
    return PackedStream(
        len(refs), shard_loader(refs, doc_tok, cache_root), seq_len, doc_tok.tokenizer.eos_token_id, cursor
    )  # type: ignore[attr-defined]
