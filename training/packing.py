"""Streaming sequence packing with document boundaries kept.

Documents (token ids plus a per-token loss mask) are appended to fixed-length rows as they
stream in, so no dataset is ever held in memory. Each row remembers its segments: position ids
restart at 0 in every segment, the attention mask is block-diagonal causal (a token sees only
earlier tokens of its own segment), and the first label of every segment is masked, because a
causal LM's label at position i is predicted from position i - 1, which belongs to the previous
document. A document longer than a row is cut into row-sized segments. Instruction rows pass a
loss mask that is false on the prompt, so the loss covers the response only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = -100


@dataclass
class PackedRow:
    """One training row of ``seq_len`` tokens and the lengths of the segments in it."""

    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray
    segment_lengths: list[int]

    def attention_mask(self) -> np.ndarray:
        """Boolean ``[seq_len, seq_len]``: True where query i may attend to key j."""
        return block_causal_mask(self.segment_lengths)


def block_causal_mask(segment_lengths: Sequence[int]) -> np.ndarray:
    total = int(sum(segment_lengths))
    segment = np.repeat(np.arange(len(segment_lengths)), segment_lengths)
    causal = np.tril(np.ones((total, total), dtype=bool))
    return causal & (segment[:, None] == segment[None, :])


@dataclass
class Packer:
    """Packs documents into rows of ``seq_len`` tokens; ``add`` yields the rows it completes."""

    seq_len: int
    pad_id: int
    _ids: list[int] = field(default_factory=list)
    _labels: list[int] = field(default_factory=list)
    _positions: list[int] = field(default_factory=list)
    _segments: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {self.seq_len}")

    def add(self, tokens: Sequence[int], loss_mask: Sequence[bool] | None = None) -> Iterator[PackedRow]:
        if loss_mask is not None and len(loss_mask) != len(tokens):
            raise ValueError(f"loss_mask has {len(loss_mask)} entries for {len(tokens)} tokens")
        start = 0
        while start < len(tokens):
            room = self.seq_len - len(self._ids)
            if room < 2:  # a 1-token segment teaches nothing: pad the slot and close the row
                yield self._pad_and_close()
                continue
            piece = tokens[start : start + room]
            mask = loss_mask[start : start + room] if loss_mask is not None else [True] * len(piece)
            labels = [t if m else IGNORE_INDEX for t, m in zip(piece, mask, strict=True)]
            labels[0] = IGNORE_INDEX  # predicted from the previous segment's last token
            self._ids.extend(piece)
            self._labels.extend(labels)
            self._positions.extend(range(len(piece)))
            self._segments.append(len(piece))
            start += len(piece)
            if len(self._ids) == self.seq_len:
                yield self._close()

    def flush(self) -> Iterator[PackedRow]:
        """The last, partly filled row, padded."""
        if self._ids:
            yield self._pad_and_close()

    def _pad_and_close(self) -> PackedRow:
        """Padding is a segment of its own with no loss, so it never mixes with a document."""
        pad = self.seq_len - len(self._ids)
        if pad:
            self._ids.extend([self.pad_id] * pad)
            self._labels.extend([IGNORE_INDEX] * pad)
            self._positions.extend(range(pad))
            self._segments.append(pad)
        return self._close()

    def _close(self) -> PackedRow:
        row = PackedRow(
            np.asarray(self._ids, dtype=np.int64),
            np.asarray(self._labels, dtype=np.int64),
            np.asarray(self._positions, dtype=np.int64),
            list(self._segments),
        )
        self._ids, self._labels, self._positions, self._segments = [], [], [], []
        return row


def pack(
    documents: Sequence[tuple[Sequence[int], Sequence[bool] | None]], seq_len: int, pad_id: int
) -> list[PackedRow]:
    """Pack a finite list of documents (tests, small jobs); training streams through `Packer`."""
    packer = Packer(seq_len, pad_id)
    rows = [row for tokens, mask in documents for row in packer.add(tokens, mask)]
    return rows + list(packer.flush())
