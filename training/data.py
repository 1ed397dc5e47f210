"""Training data from the catalog: which final shards, in which order, tokenised once.

Shards are selected from the catalog (`Catalog.final_shards`: split and bucket; then sources)
and read with pyarrow one row group at a time, so a corpus is never loaded whole. The curriculum
order is the bucket order ("0", "1", ... easy to hard; "all" when no curriculum ran), then shard
path, then row order: deterministic for a given catalog. Each shard's tokenisation is cached on
disk under ``<root>/state/tokens/<tokenizer key>/<shard checksum>.npz``, written atomically, so a
crash never loses tokenised work and a rerun does not tokenise again. This module needs DuckDB
only to select shards (imported lazily) and never imports Polars.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.store import CorruptShardError, file_mismatch, write_bytes


class NoShardsError(LookupError):
    """The selection matched no final shard; the message says what was asked for."""


@dataclass(frozen=True)
class ShardRef:
    path: Path
    bucket: str
    split: str
    rows: int
    checksum: str
    bytes: int | None = None  # as cataloged; None: not checked


def bucket_key(bucket: str) -> tuple[int, int | str]:
    """Numbered buckets in numeric order, then named ones ("all") by name."""
    return (0, int(bucket)) if bucket.isdigit() else (1, bucket)


def select_shards(
    root: Path, *, split: str = "train", buckets: Sequence[str] | None = None, sources: Sequence[str] | None = None
) -> list[ShardRef]:
    """Final shards of ``split`` (and ``buckets``), in curriculum order; ``sources`` keeps shards
    holding at least one document from those sources."""
    from corpus.catalog import Catalog
    from corpus.store import CorpusLayout

    layout = CorpusLayout.at(root)
    if not layout.catalog.exists():
        raise NoShardsError(f"{layout.catalog}: no catalog; build the corpus first (python -m pipelines.build)")
    with Catalog.open(layout, read_only=True) as cat:
        found = cat.final_shards(split=split, buckets=buckets)
    refs = [ShardRef(f.path, f.bucket, f.split, f.rows, f.checksum, f.bytes) for f in found]
    if sources is not None:
        wanted = set(sources)
        refs = [r for r in refs if wanted & set(pq.read_table(r.path, columns=["source"]).column("source").to_pylist())]
    if not refs:
        raise NoShardsError(
            f"{root}: no final shards match split={split!r}, buckets={list(buckets) if buckets else 'any'}, "
            f"sources={list(sources) if sources else 'any'}"
        )
    return sorted(refs, key=lambda r: (bucket_key(r.bucket), str(r.path)))


def instruction_parts(meta: str | None) -> tuple[str, str] | None:
    """(prompt, response) when a synthesised instruction row carries them in ``meta``; a
    preference row (``prompt``, ``chosen``, ``rejected``) is the instruction prompt -> chosen, so
    supervised training on preference data learns the preferred answers (the usual SFT before DPO)."""
    if not meta:
        return None
    try:
        data: Any = json.loads(meta)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        return None
    for answer in ("response", "chosen"):
        if isinstance(data.get(answer), str):
            return data["prompt"], data[answer]
    return None


def chat_tokens(tok: Any, prompt: str, response: str) -> tuple[list[int], list[bool]]:
    """The chat template of (user prompt, assistant response) as token ids, and a loss mask that
    is true on the response only."""
    messages = [{"role": "user", "content": prompt}]
    prefix = _ids(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    full = _ids(tok.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=True))
    if full[: len(prefix)] != prefix:  # a template that rewrites the prompt: mask by length anyway
        prefix = prefix[: len(full)]
    return full, [False] * len(prefix) + [True] * (len(full) - len(prefix))


ENCODING = 2  # bump when `DocumentTokenizer.encode` changes what it makes of a row (2: preference rows)


@dataclass
class DocumentTokenizer:
    """Plain documents: text + EOS, loss everywhere. Instruction rows: the chat template, loss on
    the response tokens only."""

    tokenizer: Any

    @property
    def key(self) -> str:
        """Identity of the tokenisation, for the cache: vocabulary, template, EOS and the rules
        of `encode` (`ENCODING`)."""
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        vocab = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
        extra = json.dumps([tok.eos_token, getattr(tok, "chat_template", None), ENCODING], default=str)
        return hashlib.sha256((vocab + extra).encode()).hexdigest()[:16]

    def encode(self, text: str, meta: str | None) -> tuple[list[int], list[bool]]:
        tok = self.tokenizer
        parts = instruction_parts(meta)
        if parts is None:
            ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            return ids, [True] * len(ids)
        return chat_tokens(tok, *parts)


def _ids(encoded: Any) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def check_shard(ref: ShardRef) -> None:
    """The token caches are keyed by the catalog's checksum: check the file is that content before
    caching tokens under it (a shard rewritten or damaged after the build would otherwise train
    silently)."""
    mismatch = file_mismatch(ref.path, ref.bytes, ref.checksum)
    if mismatch is not None:
        problem, expected, actual = mismatch
        raise CorruptShardError(
            f"{ref.path}: {problem} (catalog {expected}, file {actual or 'none'}): the shard "
            "changed or was damaged after the build; rebuild the corpus (python -m pipelines.build)"
        )


def tokenized_shard(
    ref: ShardRef, doc_tok: DocumentTokenizer, cache_root: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, loss mask, document offsets) of one shard, from the cache when present."""
    path = cache_root / doc_tok.key / f"{ref.checksum}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["ids"], data["mask"], data["offsets"]
    ids: list[int] = []
    mask: list[bool] = []
    offsets = [0]
    check_shard(ref)
    try:
        for batch in pq.ParquetFile(ref.path).iter_batches(columns=["text", "meta"]):
            for text, meta in zip(batch.column("text").to_pylist(), batch.column("meta").to_pylist(), strict=True):
                doc_ids, doc_mask = doc_tok.encode(text, meta)
                ids.extend(doc_ids)
                mask.extend(doc_mask)
                offsets.append(len(ids))
    except (pa.ArrowException, KeyError) as exc:
        raise CorruptShardError(f"{ref.path}: not a readable document shard: {exc}") from None
    if len(offsets) - 1 != ref.rows:
        raise CorruptShardError(f"{ref.path}: {len(offsets) - 1} documents, the catalog says {ref.rows}")
    arrays = (np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=bool), np.asarray(offsets, dtype=np.int64))
    buf = io.BytesIO()
    np.savez(buf, ids=arrays[0], mask=arrays[1], offsets=arrays[2])
    write_bytes(buf.getvalue(), path)
    return arrays


def iter_documents(
    refs: Sequence[ShardRef], doc_tok: DocumentTokenizer, cache_root: Path
) -> Iterator[tuple[ShardRef, int, np.ndarray, np.ndarray]]:
    """(shard, document index, ids, loss mask) in curriculum order, one shard in memory at a time."""
    for ref in refs:
        ids, mask, offsets = tokenized_shard(ref, doc_tok, cache_root)
        for k in range(len(offsets) - 1):
            yield ref, k, ids[offsets[k] : offsets[k + 1]], mask[offsets[k] : offsets[k + 1]]
