"""Perplexity under a small causal LM, batched, sliding-window, cached per document.

Why: perplexity under a reference model is the model-based complement of the heuristics (fluent
text scores low, boilerplate and garbled text high) and a natural curriculum difficulty.

How: every document is tokenised (truncated to ``max_tokens``), cut into windows of ``window``
tokens advancing by ``stride`` (each token is scored once, with up to ``window - stride`` tokens of
left context, as in the Hugging Face perplexity recipe), windows of all documents are sorted by
length and packed into batches of about ``batch_tokens`` tokens, and the summed negative
log-likelihoods are folded back per document. Results are cached per (doc_id, text hash) under
``<root>/state/quality/perplexity/<model key>/`` so a rerun only scores new or changed documents.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from common.models import resolve_model_path
from corpus.store import write_table

TEXT_HASH_SEED = 0x51A7


def text_hash(texts: pl.Series) -> pl.Series:
    """64-bit hash of each text: a cached score is reused only if the text is unchanged."""
    return texts.cast(pl.String).hash(seed=TEXT_HASH_SEED).alias("text_hash")


@dataclass(frozen=True)
class PerplexityConfig:
    model: str | None = None  # local HF directory; None = the bundled SmolLM2-135M-Instruct
    device: str = "auto"  # auto: cuda when available, else cpu
    window: int = 512
    stride: int = 384
    max_tokens: int = 1024  # tokens scored per document (its beginning)
    batch_tokens: int = 4096  # tokens per forward pass (padding included)

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.window:
            raise ValueError(f"need 0 < stride <= window, got stride={self.stride} window={self.window}")
        if self.max_tokens < 2 or self.batch_tokens < self.window:
            raise ValueError("need max_tokens >= 2 and batch_tokens >= window")


@lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[Any, Any]:
    """Tokenizer and eval-mode model, loaded once per process (scorers with other windows share it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return tokenizer, model


class PerplexityScorer:
    """Loads the model once; `score` returns perplexity and scored-token counts for a list of texts."""

    def __init__(self, cfg: PerplexityConfig | None = None) -> None:
        import torch

        self.cfg = cfg or PerplexityConfig()
        self.path = resolve_model_path(self.cfg.model)
        device = self.cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer, self.model = _load(str(self.path), str(self.device))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.key = self._key()

    def _key(self) -> str:
        """Identity of the scores: model weights' config and files, and the windowing."""
        h = hashlib.sha256((self.path / "config.json").read_bytes())
        for f in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        c = self.cfg
        h.update(json.dumps([c.window, c.stride, c.max_tokens]).encode())
        return f"{self.path.name}-{h.hexdigest()[:12]}"

    def windows(self, ids: list[int]) -> list[tuple[int, int, int]]:
        """(begin, end, first scored position) of each window over one document's token ids."""
        n = len(ids)
        out, prev_end, begin = [], 0, 0
        while prev_end < n:
            end = min(begin + self.cfg.window, n)
            out.append((begin, end, max(prev_end, begin + 1)))
            prev_end = end
            begin += self.cfg.stride
            if end == n:
                break
        return out

    def score(self, texts: list[str]) -> tuple[list[float | None], list[int]]:
        """Perplexity (None for texts with fewer than 2 tokens) and number of scored tokens."""
        import torch

        enc = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.cfg.max_tokens)
        all_ids: list[list[int]] = enc["input_ids"]
        jobs = [(d, ids[b:e], s - b) for d, ids in enumerate(all_ids) for b, e, s in self.windows(ids) if e - b >= 2]
        jobs.sort(key=lambda j: -len(j[1]))
        nll = np.zeros(len(texts), dtype=np.float64)
        count = np.zeros(len(texts), dtype=np.int64)
        i = 0
        while i < len(jobs):
            width = len(jobs[i][1])
            batch = jobs[i : i + max(1, self.cfg.batch_tokens // width)]
            i += len(batch)
            with torch.inference_mode():
                self._run_batch(batch, width, nll, count)
        ppl = [math.exp(nll[k] / count[k]) if count[k] else None for k in range(len(texts))]
        return ppl, count.tolist()

    def _run_batch(self, batch: list[tuple[int, list[int], int]], width: int, nll: np.ndarray, count: np.ndarray):
        import torch

        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        target = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose token is scored
        for row, (_, ids, first) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            target[row, first : len(ids)] = True
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        labels = input_ids[:, 1:]
        token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        mask = target[:, 1:].to(self.device)
        per_row = (token_nll * mask).sum(dim=1).double().cpu().numpy()
        per_count = mask.sum(dim=1).cpu().numpy()
        for row, (doc, _, _) in enumerate(batch):
            nll[doc] += per_row[row]
            count[doc] += per_count[row]


class PerplexityCache:
    """Parquet files of (doc_id, text_hash, perplexity, ppl_tokens) under one directory per model key."""

    def __init__(self, state_dir: Path, key: str) -> None:
        self.directory = state_dir / "quality" / "perplexity" / key

    def lookup(self, keys: pl.DataFrame) -> pl.DataFrame:
        """``keys`` (doc_id, text_hash) -> the cached rows among them."""
        files = sorted(self.directory.glob("part-*.parquet"))
        schema = {"doc_id": pl.String, "text_hash": pl.UInt64, "perplexity": pl.Float64, "ppl_tokens": pl.Int64}
        if not files or keys.height == 0:
            return pl.DataFrame(schema=schema)
        ids = keys.get_column("doc_id").implode()
        hits = pl.scan_parquet(files).filter(pl.col("doc_id").is_in(ids)).collect()
        return hits.join(keys, on=["doc_id", "text_hash"], how="semi").unique(["doc_id", "text_hash"], keep="first")

    def store(self, rows: pl.DataFrame) -> None:
        if rows.height:
            name = f"part-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
            write_table(rows.to_arrow(), self.directory / name)


def score_with_cache(
    scorer: PerplexityScorer, doc_ids: pl.Series, texts: pl.Series, state_dir: Path
) -> tuple[pl.DataFrame, int]:
    """(doc_id, perplexity, ppl_tokens) for every input row in order, and how many were scored anew."""
    keys = pl.DataFrame({"doc_id": doc_ids, "text_hash": text_hash(texts)})
    cache = PerplexityCache(state_dir, scorer.key)
    hits = cache.lookup(keys)
    todo = keys.with_row_index("row").join(hits, on=["doc_id", "text_hash"], how="anti")
    if todo.height:
        rows = todo.get_column("row").to_list()
        ppl, n = scorer.score(texts.gather(rows).to_list())
        fresh = todo.select("doc_id", "text_hash").with_columns(
            pl.Series("perplexity", ppl, dtype=pl.Float64), pl.Series("ppl_tokens", n, dtype=pl.Int64)
        )
        cache.store(fresh)
        hits = pl.concat([hits, fresh])
    out = keys.join(hits, on=["doc_id", "text_hash"], how="left", maintain_order="left")
    return out.select("doc_id", "perplexity", "ppl_tokens"), todo.height
