"""Curricula (`training.curriculum`): the mixture's draws follow the phase weights, are the same
for the same seed, shard across ranks and resume from their state exactly; a small bucket
starts over instead of ending the run; bad configs are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.curriculum import CurriculumError, MixedStream, SequentialCurriculum, open_curriculum, parse_mixture
from training.data import ShardRef
from training.distributed import Dist, rank_rows
from training.packing import PackedRow
from training.stream import Cursor, PackedStream

SEQ = 16
# bucket "0": 2 shards of 40 documents, tokens 1000-1999; bucket "1": 1 shard of 2 documents, 2000-2999
SHARDS: dict[str, tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
for name, bucket, n_docs in (("a", "0", 40), ("b", "0", 40), ("c", "1", 2)):
    rng = np.random.default_rng(len(SHARDS))
    lengths = rng.integers(3, 2 * SEQ, size=n_docs)
    ids = rng.integers(1000, 2000, size=int(lengths.sum())) + 1000 * int(bucket)
    SHARDS[name] = (bucket, (ids, np.ones(ids.size, dtype=bool), np.concatenate([[0], np.cumsum(lengths)])))
REFS = [ShardRef(Path(f"{n}.parquet"), bucket, "train", 1, n) for n, (bucket, _) in SHARDS.items()]
PHASES = [{"until_step": 5, "weights": {"0": 1.0}}, {"weights": {0: 1, "1": 3}}]  # YAML may give int keys
ROWS_PER_STEP = 4


def open_stream(shards: list[ShardRef], cursor: Cursor | None) -> PackedStream:
    return PackedStream(len(shards), lambda i: SHARDS[shards[i].checksum][1], SEQ, 0, cursor)


def mixed(seed: int = 7, state: dict | None = None) -> MixedStream:
    return MixedStream(parse_mixture(PHASES), REFS, open_stream, ROWS_PER_STEP, seed, state)


def bucket(row: PackedRow) -> str:
    tokens = row.input_ids[row.input_ids != 0]
    assert len(set(tokens // 1000)) == 1, "a row mixes buckets"
    return str(int(tokens[0] // 1000) - 1)


def same(a: list[PackedRow], b: list[PackedRow]) -> bool:
    return len(a) == len(b) and all(
        (x.input_ids == y.input_ids).all() and (x.labels == y.labels).all() and x.segment_lengths == y.segment_lengths
        for x, y in zip(a, b, strict=True)
    )


def test_rows_follow_the_weights_of_their_phase() -> None:
    stream = mixed()
    first = stream.take(5 * ROWS_PER_STEP)
    assert {bucket(r) for r in first} == {"0"}  # steps 0-4: only the easy bucket
    later = [bucket(r) for r in stream.take(2000)]
    assert abs(later.count("1") / len(later) - 0.75) < 0.03
    assert stream.passes["1"] > 10  # bucket "1" packs into a few rows: it starts over, the run goes on
    assert stream.rows_by_bucket == {"0": 20 + later.count("0"), "1": later.count("1")}


def test_the_same_seed_gives_the_same_rows_and_another_seed_other_draws() -> None:
    assert same(mixed(7).take(200), mixed(7).take(200))
    assert [mixed(7).bucket_of(g) for g in range(20, 220)] != [mixed(8).bucket_of(g) for g in range(20, 220)]


def test_ranks_take_disjoint_slices_of_the_same_sequence_and_a_resume_continues_it() -> None:
    whole = mixed().take(48)
    for world in (2, 3):
        streams = [mixed() for _ in range(world)]
        got: list[PackedRow] = []
        for _ in range(48 // (2 * world)):  # groups of world x 2 rows, each rank its slice
            for rank, stream in enumerate(streams):
                got += rank_rows(stream, Dist(rank, world, None), 2) or []
        assert same(got, whole)
    first = mixed()
    head = first.take(21)
    resumed = mixed(state=first.state())  # a fresh process from the checkpointed state
    assert same(head + resumed.take(27), whole)


def test_sequential_curriculum_restarts_the_pass_without_straddling_it() -> None:
    order = SequentialCurriculum(REFS, open_stream)
    one = Dist(0, 1, None)
    total = len(open_stream(REFS, None).take(10**6))  # rows in one pass
    groups = [order.next_group(one, 4) for _ in range(total // 4 + 1)]
    assert order.passes == 1
    assert groups[-1][1] == (REFS[0], Cursor())  # the group that opened pass 2 starts at the first shard
    assert same(groups[-1][0], open_stream(REFS, None).take(4))
    resumed = SequentialCurriculum(REFS, open_stream, order.state())
    assert same(resumed.next_group(one, 4)[0], order.next_group(one, 4)[0])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "non-empty list of phases"),
        ([{"weights": {"0": 1}, "steps": 3}], "phase 1: expected"),
        ([{"weights": {"0": -1}}], "phase 1: weights must be >= 0"),
        ([{"weights": {"0": 0}}], "not all 0"),
        ([{"weights": {"0": "lots"}}], "weights must be numbers"),
        ([{"until_step": 0, "weights": {"0": 1}}], "until_step must be a positive step number"),
        ([{"weights": {"0": 1}}, {"weights": {"1": 1}}], "phase 2: phases must be in increasing until_step order"),
        ([{"until_step": 9, "weights": {"0": 1}}, {"until_step": 4, "weights": {"1": 1}}], "increasing"),
    ],
)
def test_bad_mixtures_are_named(raw, message: str) -> None:
    with pytest.raises(CurriculumError, match=message):
        parse_mixture(raw)


def test_a_mixture_naming_a_bucket_the_selection_lacks_is_refused() -> None:
    with pytest.raises(CurriculumError, match=r"names bucket\(s\) \['2'\], but the selected train shards have"):
        MixedStream(parse_mixture([{"weights": {"0": 1, "2": 1}}]), REFS, open_stream, 4, 0)


def test_a_checkpoint_of_the_other_kind_of_curriculum_is_refused() -> None:
    sequential = open_curriculum(None, REFS, open_stream, ROWS_PER_STEP, 7).state()
    mixture = open_curriculum(PHASES, REFS, open_stream, ROWS_PER_STEP, 7).state()
    assert (sequential["kind"], mixture["kind"]) == ("sequential", "mixture")
    with pytest.raises(CurriculumError, match="written by a run with a mixture; this run has none"):
        open_curriculum(None, REFS, open_stream, ROWS_PER_STEP, 7, mixture)
    with pytest.raises(CurriculumError, match="written by a run without a mixture; this run has one"):
        open_curriculum(PHASES, REFS, open_stream, ROWS_PER_STEP, 7, sequential)
    resumed = open_curriculum(PHASES, REFS, open_stream, ROWS_PER_STEP, 7, mixture)
    assert resumed.rows_by_bucket() == {"0": 0, "1": 0}
