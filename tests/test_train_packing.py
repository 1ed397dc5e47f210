"""Sequence packing: no attention or label across documents, prompts unmasked nowhere, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from training.packing import IGNORE_INDEX, Packer, block_causal_mask, pack


def additive(mask: np.ndarray) -> torch.Tensor:
    out = torch.zeros(1, 1, *mask.shape)
    return out.masked_fill_(~torch.from_numpy(mask), torch.finfo(torch.float32).min)


def test_block_causal_mask_never_crosses_documents():
    mask = block_causal_mask([3, 2])
    expected = np.array(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 1, 0],
            [0, 0, 0, 1, 1],
        ],
        dtype=bool,
    )
    assert (mask == expected).all()


def test_labels_are_masked_at_boundaries_on_prompts_and_padding():
    prompt, response = [11, 12, 13], [14, 15]
    rows = pack([([1, 2, 3, 4], None), (prompt + response, [False] * 3 + [True] * 2)], seq_len=12, pad_id=0)
    (row,) = rows
    assert row.segment_lengths == [4, 5, 3]
    assert row.input_ids.tolist() == [1, 2, 3, 4, 11, 12, 13, 14, 15, 0, 0, 0]
    assert row.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]
    ignore = IGNORE_INDEX
    assert row.labels.tolist() == [ignore, 2, 3, 4, ignore, ignore, ignore, 14, 15, ignore, ignore, ignore]


def test_streaming_keeps_every_token_once_and_splits_long_documents():
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 1000, size=n).tolist() for n in (5, 70, 1, 33, 2, 64, 9)]
    packer = Packer(seq_len=32, pad_id=0)
    rows = [r for d in docs for r in packer.add(d)] + list(packer.flush())
    assert all(len(r.input_ids) == 32 and sum(r.segment_lengths) == 32 for r in rows)
    tokens = np.concatenate([r.input_ids for r in rows])
    assert tokens[tokens != 0].tolist() == [t for d in docs for t in d]
    assert all(min(r.segment_lengths) >= 1 for r in rows)
    with pytest.raises(ValueError, match="loss_mask has 2 entries for 3 tokens"):
        list(packer.add([1, 2, 3], [True, False]))


def test_packed_documents_do_not_see_each_other_in_a_real_model():
    model = tiny_llama(vocab_size=128).eval()
    a, b = list(range(5, 15)), list(range(30, 42))
    (row,) = pack([(a, None), (b, None)], seq_len=32, pad_id=0)
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(row.input_ids)[None],
            position_ids=torch.from_numpy(row.position_ids)[None],
            attention_mask=additive(row.attention_mask()),
            labels=torch.from_numpy(row.labels)[None],
        )
        alone_a = model(input_ids=torch.tensor([a]), labels=torch.tensor([a]))
        alone_b = model(input_ids=torch.tensor([b]), labels=torch.tensor([b]))
        naive = model(input_ids=torch.from_numpy(row.input_ids)[None]).logits[0]
    torch.testing.assert_close(out.logits[0, 10:22], alone_b.logits[0], atol=1e-5, rtol=1e-5)
    assert (naive[10:22] - alone_b.logits[0]).abs().max() > 1e-2  # without the mask, b would see a
    # the packed loss is the token-weighted mean of the documents' own losses
    expected = (alone_a.loss * (len(a) - 1) + alone_b.loss * (len(b) - 1)) / (len(a) + len(b) - 2)
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
