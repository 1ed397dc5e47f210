"""Held-out loss per bucket: a bucket too small for one micro-batch group is evaluated, never dropped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from training.batches import model_inputs
from training.config import TrainConfig
from training.data import DocumentTokenizer, select_shards, tokenized_shard
from training.distributed import Dist, rank_rows
from training.heldout import heldout_loss
from training.loss import ChunkedCausalLMLoss
from training.packing import pack
from training.run import announce_data
from training.stream import PackedStream, packed_stream

CPU = Dist(0, 1, torch.device("cpu"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from common.models import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


def _reference_loss(model, rows, cfg: TrainConfig) -> float:
    """Mean next-token loss over every labelled token of ``rows``, one row at a time."""
    total = count = 0.0
    for row in rows:
        t = model_inputs([row], torch.float32, torch.device("cpu"), cfg.packed_attention)
        labels = t.pop("labels")
        with torch.no_grad():
            logits = model(**t).logits[0, :-1]
        target = labels[0, 1:]
        keep = target != -100
        total += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
        count += int(keep.sum())
    return total / count


def test_a_bucket_smaller_than_one_group_is_evaluated_on_all_its_rows(train_corpus: Path, tokenizer) -> None:
    """micro_batch 256 x seq 128: neither validation bucket fills one group (~90 rows each); the eval
    used to skip both silently. Now each is evaluated on its partial group, and the value is the
    token-weighted loss over all of the bucket's rows (chunked loss: no [256 x 128 x vocab] logits)."""
    cfg = TrainConfig(root=str(train_corpus), seq_len=128, micro_batch=256, eval_batches=4, lora=None)
    refs = select_shards(train_corpus, split="validation")
    doc_tok, cache = DocumentTokenizer(tokenizer), train_corpus / "state" / "tokens"
    for ref in refs:
        tokenized_shard(ref, doc_tok, cache)
    model = tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=128).eval()
    got = heldout_loss(model, ChunkedCausalLMLoss(model, 4096), cfg, refs, doc_tok, cache, torch.float32, CPU)
    assert sorted(got) == ["0", "1"]
    for bucket, loss in got.items():
        rows = packed_stream([r for r in refs if r.bucket == bucket], doc_tok, cache, cfg.seq_len).take(10**6)
        assert 0 < len(rows) < cfg.micro_batch
        assert math.isclose(loss, _reference_loss(model, rows, cfg), rel_tol=1e-5)


def test_a_partial_group_is_split_across_ranks_with_empty_slices_allowed() -> None:
    """Every rank walks the same groups; in the last, partial one rank r gets what is left of its
    slice (possibly nothing), and only with ``partial`` (eval); training still never sees it."""
    doc = list(range(1, 40))
    n = len(pack([(doc, None)] * 3, 16, pad_id=0))
    shard = (np.tile(np.arange(1, 40), 3).astype(np.int32), np.ones(117, bool), np.array([0, 39, 78, 117]))
    world, mb = 2, 3
    assert n > world * mb and n % (world * mb) < mb  # one full group, then a short one rank 1 has no row of
    for partial in (False, True):
        groups = math.ceil(n / (world * mb)) if partial else n // (world * mb)
        for rank in range(world):
            stream = PackedStream(1, lambda _: shard, 16, pad_id=0)
            got = []
            while (part := rank_rows(stream, Dist(rank, world, None), mb, partial=partial)) is not None:
                got.append(len(part))
            left = [n - g * world * mb for g in range(groups)]
            assert got == [min(mb, max(0, rows - rank * mb)) for rows in left], (partial, rank)


def test_a_train_bucket_without_validation_shards_is_named(train_corpus: Path, capsys) -> None:
    train = select_shards(train_corpus, split="train")
    heldout = [r for r in select_shards(train_corpus, split="validation") if r.bucket == "0"]
    announce_data(train, heldout, TrainConfig(root=str(train_corpus)))
    err = capsys.readouterr().err
    assert f"eval: bucket(s) ['1'] have no validation shards in {train_corpus}; they are not evaluated" in err
