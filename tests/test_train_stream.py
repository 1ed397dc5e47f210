"""The seekable packed stream: skips and seeks give exactly the rows of packing from the start."""

from __future__ import annotations

import numpy as np
import pytest

from training.packing import Packer, pack
from training.stream import Cursor, PackedStream

SEQ = 16


def _shards(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Token shards as the cache stores them, with the awkward lengths: 1, seq-1, seq, seq+1, 3*seq."""
    rng = np.random.default_rng(seed)
    shards = []
    for n_docs in (5, 1, 7):
        lengths = rng.choice([1, 2, 3, SEQ - 1, SEQ, SEQ + 1, 3 * SEQ, 9], size=n_docs)
        ids = rng.integers(1, 1000, size=int(lengths.sum()))
        mask = rng.random(ids.size) > 0.2
        shards.append((ids, mask, np.concatenate([[0], np.cumsum(lengths)])))
    return shards


def _documents(shards):
    return [
        (ids[offsets[k] : offsets[k + 1]].tolist(), mask[offsets[k] : offsets[k + 1]].tolist())
        for ids, mask, offsets in shards
        for k in range(len(offsets) - 1)
    ]


def _same(a, b) -> bool:
    return all(
        (x.input_ids == y.input_ids).all()
        and (x.labels == y.labels).all()
        and (x.position_ids == y.position_ids).all()
        and x.segment_lengths == y.segment_lengths
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("seed", range(6))
def test_take_and_skip_match_packing_from_the_start(seed):
    shards = _shards(seed)
    want = pack(_documents(shards), SEQ, pad_id=0)
    stream = PackedStream(len(shards), shards.__getitem__, SEQ, pad_id=0)
    assert _same(stream.take(len(want) + 5), want) and stream.exhausted and stream.take(3) == []

    cursors = []
    stream = PackedStream(len(shards), shards.__getitem__, SEQ, pad_id=0)
    for _ in want:
        cursors.append(stream.cursor)
        assert stream.skip(1) == 1
    assert stream.skip(1) == 0
    for k, cursor in enumerate(cursors):  # a resumed run seeks straight to its checkpointed cursor
        seeked = PackedStream(len(shards), shards.__getitem__, SEQ, pad_id=0, cursor=cursor)
        assert _same(seeked.take(len(want)), want[k:]), k

    # two ranks, micro-batch 2: rank r takes rows [4i + 2r, 4i + 2r + 2) and skips the rest
    for rank in (0, 1):
        stream, got = PackedStream(len(shards), shards.__getitem__, SEQ, pad_id=0), []
        while not stream.exhausted:
            stream.skip(2 * rank)
            got += stream.take(2)
            stream.skip(2 * (1 - rank))
        expected = [row for i, row in enumerate(want) if (i // 2) % 2 == rank]
        assert _same(got, expected)


def test_skip_reads_offsets_only_and_never_packs(monkeypatch):
    shards = _shards(0)
    loads: list[int] = []

    def load(index):
        loads.append(index)
        return shards[index]

    total = len(pack(_documents(shards), SEQ, pad_id=0))
    stream = PackedStream(len(shards), load, SEQ, pad_id=0)
    monkeypatch.setattr(Packer, "add", lambda *a: pytest.fail("skip packed a row"))
    assert stream.skip(10**6) == total
    assert loads == [0, 1, 2]  # each shard opened once, in order
    with pytest.raises(ValueError, match="outside the 3 shard"):
        PackedStream(3, load, SEQ, pad_id=0, cursor=Cursor(4, 0, 0))


def test_model_inputs_carry_the_block_causal_mask_of_each_row():
    import torch

    from training.batches import model_inputs

    rows = pack(_documents(_shards(1)), SEQ, pad_id=0)[:5]
    t = model_inputs(rows, torch.float32, torch.device("cpu"))
    allowed = np.stack([r.attention_mask() for r in rows])[:, None]
    assert t["attention_mask"].shape == (5, 1, SEQ, SEQ)
    assert ((t["attention_mask"] == 0).numpy() == allowed).all()
    assert (t["attention_mask"][~torch.from_numpy(allowed)] == torch.finfo(torch.float32).min).all()
    assert (t["labels"].numpy() == np.stack([r.labels for r in rows])).all()
    assert (t["position_ids"].numpy() == np.stack([r.position_ids for r in rows])).all()
