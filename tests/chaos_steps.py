"""Steps for tests only: one that kills its own worker once (executor retries), two that rewrite text."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl

from pipelines.step import Step, StepContext, StepOutput, empty_rejects


@dataclass
class KillWorkerOnce(Step):
    """Identity step; on shard ``shard`` it SIGKILLs its process the first time (marker file)."""

    name: ClassVar[str] = "kill_worker_once"
    marker: str = ""
    shard: int = 1

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        marker = Path(self.marker)
        if ctx.shard_index == self.shard and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return StepOutput(df, empty_rejects())


@dataclass
class Shout(Step):
    """Upper-cases ``text``; declares it, so the runner upper-cases the meta text fields too."""

    name: ClassVar[str] = "shout"
    rewrites_text: ClassVar[bool] = True

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        return StepOutput(df.with_columns(pl.col("text").str.to_uppercase()), empty_rejects())

    def rewrite_texts(self, texts: list[str], docs: pl.DataFrame) -> list[str]:
        return [t.upper() for t in texts]


@dataclass
class ShoutSilently(Step):
    """Upper-cases ``text`` without declaring ``rewrites_text``: the runner must refuse it."""

    name: ClassVar[str] = "shout_silently"

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        return StepOutput(df.with_columns(pl.col("text").str.to_uppercase()), empty_rejects())
