"""Training data from a real built corpus: shard selection, curriculum order, tokenisation cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE, write_jsonl
from transformers import AutoTokenizer

from common.models import default_model_dir
from corpus.store import file_checksum
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import Curriculum, ExactDedup, Normalize, Split
from training.data import DocumentTokenizer, NoShardsError, iter_documents, select_shards, tokenized_shard
from training.packing import IGNORE_INDEX, Packer

PROMPT = "What must a tenant keep in repair under the lease?"
RESPONSE = "The premises, in good and substantial repair, for the whole term."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("train-data")
    instructions = write_jsonl(
        base / "synth.jsonl",
        [
            {
                "text": f"{PROMPT}\n\n{RESPONSE}",
                "source": "synth:instruction",
                "meta": {"prompt": PROMPT, "response": RESPONSE},
            },
        ],
    )
    cfg = BuildConfig(
        root=base / "data",
        workers=1,
        sources=[SourceSpec(SAMPLE), SourceSpec(instructions)],
        steps=[Normalize(), ExactDedup(), Split(validation_ratio=0.1), Curriculum(buckets=3)],
    )
    run_build(cfg, progress=False)
    return base / "data"


@pytest.fixture(scope="module")
def doc_tok() -> DocumentTokenizer:
    return DocumentTokenizer(AutoTokenizer.from_pretrained(default_model_dir()))


def test_selection_is_in_curriculum_order_and_filters(corpus):
    refs = select_shards(corpus, split="train")
    assert [r.bucket for r in refs] == ["0", "1", "2"] and {r.split for r in refs} == {"train"}
    assert [r.bucket for r in select_shards(corpus, split="validation", buckets=["2", "0"])] == ["0", "2"]
    assert [r.bucket for r in select_shards(corpus, sources=["synth:instruction"])] != []
    with pytest.raises(NoShardsError, match=r"split='train', buckets=\['9'\]"):
        select_shards(corpus, buckets=["9"])
    with pytest.raises(NoShardsError, match="no catalog"):
        select_shards(corpus.parent / "nowhere")


def test_instruction_rows_train_on_the_response_only(doc_tok):
    ids, mask = doc_tok.encode(f"{PROMPT}\n\n{RESPONSE}", json.dumps({"prompt": PROMPT, "response": RESPONSE}))
    trained = doc_tok.tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert RESPONSE in trained and PROMPT not in trained
    assert PROMPT in doc_tok.tokenizer.decode(ids)
    plain_ids, plain_mask = doc_tok.encode("A plain statute.", None)
    assert plain_ids[-1] == doc_tok.tokenizer.eos_token_id and all(plain_mask)


def test_a_preference_row_trains_sft_on_its_chosen_answer(doc_tok):
    """SFT before DPO: a preference row is the instruction prompt -> chosen; the rejected answer is never a target."""
    meta = json.dumps({"prompt": PROMPT, "chosen": RESPONSE, "rejected": "The tenant owes nothing at all."})
    ids, mask = doc_tok.encode(f"{PROMPT}\n{RESPONSE}", meta)
    assert (ids, mask) == doc_tok.encode("", json.dumps({"prompt": PROMPT, "response": RESPONSE}))
    assert "owes nothing" not in doc_tok.tokenizer.decode(ids)


def test_tokenisation_is_cached_per_shard_and_packs_every_token(corpus, doc_tok, tmp_path, monkeypatch):
    refs = select_shards(corpus)
    cache = tmp_path / "tokens"
    first = [tokenized_shard(r, doc_tok, cache) for r in refs]
    assert len(list(cache.rglob("*.npz"))) == len(refs)
    monkeypatch.setattr(doc_tok, "encode", lambda *a: pytest.fail("tokenised again instead of using the cache"))
    again = [tokenized_shard(r, doc_tok, cache) for r in refs]
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again, strict=True))
    assert sum(len(f[2]) - 1 for f in first) == sum(r.rows for r in refs)

    packer = Packer(seq_len=256, pad_id=doc_tok.tokenizer.eos_token_id)
    rows = [row for _, _, ids, mask in iter_documents(refs, doc_tok, cache) for row in packer.add(ids, mask)]
    rows += list(packer.flush())
    packed = sum(int((r.labels != IGNORE_INDEX).sum()) for r in rows)
    assert all(r.input_ids.shape == (256,) for r in rows)
    total_trainable = sum(int(m.sum()) for _, m, _ in first)
    assert packed <= total_trainable and packed > 0.95 * total_trainable  # only segment starts are lost
    assert np.concatenate([r.input_ids for r in rows]).size == 256 * len(rows)


def test_a_damaged_or_changed_shard_is_named_instead_of_training_on_it(corpus, doc_tok, tmp_path):
    """Tokens are cached under the catalog's checksum, so a shard is checked against the catalog
    first (the audit's check): a truncated file, one rewritten in place since the build, or a
    missing one stops with the file named."""
    import dataclasses
    import shutil

    from corpus.store import CorruptShardError

    ref = select_shards(corpus)[0]
    copy = tmp_path / ref.path.name
    good = dataclasses.replace(ref, path=copy)
    data = ref.path.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CorruptShardError, match=rf"{copy}: size differs \(catalog {len(data)}, file \d+\): the shard changed"
    ):
        tokenized_shard(good, doc_tok, tmp_path / "tokens")
    recorded = dataclasses.replace(good, checksum=file_checksum(copy), bytes=copy.stat().st_size)
    with pytest.raises(CorruptShardError, match=r"not a readable document shard"):  # damaged as recorded
        tokenized_shard(recorded, doc_tok, tmp_path / "tokens")
    shutil.copy(ref.path, copy)
    with open(copy, "r+b") as fh:  # same size, one byte changed
        fh.seek(len(data) // 2)
        fh.write(bytes([data[len(data) // 2] ^ 0xFF]))
    with pytest.raises(
        CorruptShardError, match=rf"{copy}: sha256 differs \(catalog {ref.checksum[:16]}, file [0-9a-f]{{16}}\)"
    ):
        tokenized_shard(good, doc_tok, tmp_path / "tokens")
    with pytest.raises(
        CorruptShardError, match=rf"{tmp_path / 'gone.parquet'}: missing on disk \(catalog [0-9a-f]{{16}}, file none\)"
    ):
        tokenized_shard(dataclasses.replace(good, path=tmp_path / "gone.parquet"), doc_tok, tmp_path / "tokens")
    assert not list((tmp_path / "tokens").rglob("*.npz"))  # nothing cached for any of them
