"""The order of training rows: buckets one after another, or a mixture by phase.

**Sequential** (the default, `SequentialCurriculum`): the selected shards in curriculum order
(buckets easy -> hard) as one packed stream; when a pass ends the next starts from the first
shard. A global group of rows never straddles two passes. Checkpoint state: the pass count and
the stream's cursor.

**Mixture** (`mixture:` in the config, `MixtureCurriculum`): every row comes from a bucket chosen
by the weights of the phase its step is in, e.g. mostly easy rows early, then an even mix::

    mixture:
      - {until_step: 200, weights: {"0": 0.8, "1": 0.2}}
      - {weights: {"0": 0.5, "1": 0.5}}         # the last phase runs to the end

Each bucket is its own `PackedStream` (rows never mix buckets) that starts over when it runs out,
so a small bucket is repeated rather than exhausting the run. The bucket of global row ``g`` is
a pure function of ``(seed, g)`` and the phase of ``g // rows_per_step``, so the sequence is
deterministic given the seed, the same on every rank, and a resumed run needs only ``g`` and each
bucket's cursor and pass count (`MixedStream.state`): no draw is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import ShardRef
from training.distributed import Dist, rank_rows
from training.packing import PackedRow
from training.stream import Cursor, PackedStream

OpenStream = Callable[[list[ShardRef], Cursor | None], PackedStream]
"""Opens a packed stream over shards (in order) at a cursor (None: the start)."""


class CurriculumError(ValueError):
    """The mixture config is malformed, names buckets the selection lacks, or a bucket is empty."""


class SequentialCurriculum:
    """The selected shards in order (buckets easy -> hard), pass after pass."""

    def __init__(self, refs: list[ShardRef], open_stream: OpenStream, state: dict[str, Any] | None = None) -> None:
        self.refs, self._open = refs, open_stream
        self.passes = int((state or {}).get("passes", 0))
        self.stream = open_stream(refs, Cursor(*state["cursor"]) if state else None)

    def next_group(self, dist: Dist, micro_batch: int) -> tuple[list[PackedRow], tuple[ShardRef, Cursor]]:
        """This rank's rows of the next global group, and where the group starts."""
        start = self.stream.cursor
        rows = rank_rows(self.stream, dist, micro_batch)
        if rows is None:  # the pass cannot fill another group: start the next pass
            self.passes, self.stream, start = self.passes + 1, self._open(self.refs, None), Cursor()
            rows = rank_rows(self.stream, dist, micro_batch)
            if rows is None:
                raise CurriculumError(
                    f"the selected train shards pack into fewer than world_size x micro_batch = "
                    f"{dist.world * micro_batch} rows of {self.stream.seq_len} tokens"
                )
        return rows, (self.refs[min(start.shard, len(self.refs) - 1)], start)

    def rows_by_bucket(self) -> None:
        """Rows per bucket are a mixture's to report; this order follows the shards."""
        return None

    def state(self) -> dict[str, Any]:
        return {"kind": "sequential", "passes": self.passes, "cursor": self.stream.cursor.as_list()}


@dataclass(frozen=True)
class Phase:
    """Weights per bucket for the steps before ``until_step`` (None: to the end of the run)."""

    until_step: int | None
    weights: dict[str, float]


def parse_mixture(raw: Any) -> list[Phase]:
    """Phases from the config's ``mixture`` list; errors say which phase and what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise CurriculumError(f"mixture must be a non-empty list of phases, got {raw!r}")
    phases: list[Phase] = []
    for k, item in enumerate(raw, start=1):
        where = f"mixture phase {k}"
        if not isinstance(item, dict) or set(item) - {"until_step", "weights"} or "weights" not in item:
            raise CurriculumError(f"{where}: expected {{until_step: N, weights: {{bucket: weight}}}}, got {item!r}")
        until, weights = item.get("until_step"), item["weights"]
        if not isinstance(weights, dict) or not weights:
            raise CurriculumError(f"{where}: weights must map bucket names to numbers, got {weights!r}")
        try:
            parsed = {str(b): float(w) for b, w in weights.items()}
        except (TypeError, ValueError):
            raise CurriculumError(f"{where}: weights must be numbers, got {weights!r}") from None
        if any(not np.isfinite(w) or w < 0 for w in parsed.values()) or sum(parsed.values()) <= 0:
            raise CurriculumError(f"{where}: weights must be >= 0 and not all 0, got {weights!r}")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int) or until < 1):
            raise CurriculumError(f"{where}: until_step must be a positive step number, got {until!r}")
        if phases and (phases[-1].until_step is None or (until is not None and until <= phases[-1].until_step)):
            raise CurriculumError(f"{where}: phases must be in increasing until_step order; only the last may omit it")
        phases.append(Phase(until, parsed))
    return phases


def check_buckets(phases: Sequence[Phase], available: Sequence[str]) -> None:
    named = sorted({b for p in phases for b, w in p.weights.items() if w > 0})
    missing = [b for b in named if b not in available]
    if missing:
        raise CurriculumError(
            f"mixture names bucket(s) {missing}, but the selected train shards have {list(available)}"
        )


class MixedStream:
    """Rows drawn from per-bucket streams by phase weights, with ``skip``/``take`` like
    `PackedStream` (so `training.distributed.rank_rows` shards it) but never exhausted."""

    def __init__(
        self,
        phases: Sequence[Phase],
        refs: list[ShardRef],
        open_stream: OpenStream,
        rows_per_step: int,
        seed: int,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.phases, self.rows_per_step, self.seed = list(phases), rows_per_step, seed
        self.buckets = sorted({b for p in self.phases for b, w in p.weights.items() if w > 0})
        check_buckets(self.phases, list(dict.fromkeys(r.bucket for r in refs)))
        self.refs = {b: [r for r in refs if r.bucket == b] for b in self.buckets}
        self._open = open_stream
        saved = (state or {}).get("buckets", {})
        self.row = int((state or {}).get("row", 0))
        self.passes = {b: int(saved.get(b, {}).get("passes", 0)) for b in self.buckets}
        self.streams = {
            b: open_stream(self.refs[b], Cursor(*saved[b]["cursor"]) if b in saved else None) for b in self.buckets
        }
        self.rows_by_bucket: dict[str, int] = dict.fromkeys(self.buckets, 0)  # rows taken or skipped, for logs

    def bucket_of(self, row: int) -> str:
        """The bucket of global row ``row``: a seeded draw by the weights of its step's phase."""
        step = row // self.rows_per_step
        phase = next(p for p in self.phases if p.until_step is None or step < p.until_step)
        names = [b for b in sorted(phase.weights) if phase.weights[b] > 0]
        cumulative = np.cumsum([phase.weights[b] for b in names])
        draw = np.random.default_rng((self.seed, row)).random() * cumulative[-1]
        return names[min(int(np.searchsorted(cumulative, draw, side="right")), len(names) - 1)]

    def _next(self, take: bool) -> PackedRow | None:
        bucket = self.bucket_of(self.row)
        for attempt in range(2):
            stream = self.streams[bucket]
            got = stream.take(1) if take else stream.skip(1)
            if got:
                self.row += 1
                self.rows_by_bucket[bucket] += 1
                return got[0] if take else None  # type: ignore[index]
            if attempt == 0:  # this bucket's pass is over: start it again
                self.passes[bucket] += 1
                self.streams[bucket] = self._open(self.refs[bucket], None)
        raise CurriculumError(f"bucket {bucket!r} packs into no rows")

    def skip(self, n: int) -> int:
        for _ in range(n):
            self._next(take=False)
        return n

    def take(self, n: int) -> list[PackedRow]:
        return [row for row in (self._next(take=True) for _ in range(n)) if row is not None]

    def where(self) -> tuple[ShardRef, Cursor]:
        """The shard and cursor where the next row starts (for error messages)."""
        bucket = self.bucket_of(self.row)
        cursor, refs = self.streams[bucket].cursor, self.refs[bucket]
        return (refs[cursor.shard], cursor) if cursor.shard < len(refs) else (refs[0], Cursor())

    def state(self) -> dict[str, Any]:
        buckets = {b: {"passes": self.passes[b], "cursor": self.streams[b].cursor.as_list()} for b in self.buckets}
        return {"row": self.row, "buckets": buckets}


class MixtureCurriculum:
    """`MixedStream` behind the same interface as `SequentialCurriculum`."""

    def __init__(self, stream: MixedStream) -> None:
        self.stream = stream

    def next_group(self, dist: Dist, micro_batch: int) -> tuple[list[PackedRow], tuple[ShardRef, Cursor]]:
        start = self.stream.where()
        rows = rank_rows(self.stream, dist, micro_batch)
        assert rows is not None, "a mixed stream never runs out"
        return rows, start

    def rows_by_bucket(self) -> dict[str, int]:
        """Global rows drawn from each bucket so far."""
        return dict(self.stream.rows_by_bucket)

    def state(self) -> dict[str, Any]:
        return {"kind": "mixture", **self.stream.state()}


Curriculum = SequentialCurriculum | MixtureCurriculum


def open_curriculum(
    mixture: Any,
    refs: list[ShardRef],
    open_stream: OpenStream,
    rows_per_step: int,
    seed: int,
    state: dict[str, Any] | None = None,
) -> Curriculum:
    """The run's row order (``mixture``: the config's phases or None), at ``state`` (a checkpoint's
    `state()`) when resuming; a checkpoint of the other kind of curriculum is refused."""
    kind = (state or {}).get("kind")
    if mixture is None:
        if kind not in (None, "sequential"):
            raise CurriculumError("the checkpoint was written by a run with a mixture; this run has none")
        return SequentialCurriculum(refs, open_stream, state)
    if kind not in (None, "mixture"):
        raise CurriculumError("the checkpoint was written by a run without a mixture; this run has one")
    return MixtureCurriculum(MixedStream(parse_mixture(mixture), refs, open_stream, rows_per_step, seed, state))


__all__ = [
    "Curriculum",
    "CurriculumError",
    "MixedStream",
    "MixtureCurriculum",
    "Phase",
    "SequentialCurriculum",
    "check_buckets",
    "open_curriculum",
    "parse_mixture",
]
