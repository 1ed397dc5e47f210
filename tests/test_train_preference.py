"""Preference pairs: which rows are pairs, the seeded order (rank slices, passes, resume) and padding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.distributed import Dist
from training.packing import IGNORE_INDEX
from training.preference import Pair, PairOrder, PreferenceError, eval_groups, pad_pairs, preference_parts


class FakePairs:
    """``n`` pairs whose chosen ids encode their index (the order logic only needs len, [] and where)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Pair:
        ids = np.array([i, i], dtype=np.int32)
        return Pair(ids, np.array([False, True]), ids, np.array([False, True]), 0, i)

    def where(self, pair: Pair):
        return None, pair.row


def _ids(pairs: list[Pair]) -> list[int]:
    return [int(p.chosen[0]) for p in pairs]


@pytest.mark.parametrize(
    ("meta", "parts"),
    [
        ({"prompt": "Q", "chosen": "A", "rejected": "B"}, ("Q", "A", "B")),
        ({"prompt": "Q", "chosen": "A", "rejected": "B", "margin": 2, "ratings": [5, 3]}, ("Q", "A", "B")),
        ({"prompt": "Q", "chosen": "A"}, None),
        ({"prompt": "Q", "chosen": "", "rejected": "B"}, None),
        ({"prompt": "Q", "chosen": 3, "rejected": "B"}, None),
        ({"prompt": "Q", "response": "A"}, None),
    ],
)
def test_a_preference_row_has_prompt_chosen_and_rejected(meta: dict, parts) -> None:
    assert preference_parts(json.dumps(meta)) == parts
    assert preference_parts(None) is None and preference_parts("not json") is None


def test_ranks_take_disjoint_slices_that_cover_each_group_and_passes_reshuffle() -> None:
    pairs, world, mb = FakePairs(10), 2, 2  # groups of 4: two per pass, 2 pairs of each pass never drawn
    orders = [PairOrder(pairs, seed=7) for _ in range(world)]
    seen = []
    for _ in range(4):
        group = [_ids(o.next_group(Dist(r, world, None), mb)[0]) for r, o in enumerate(orders)]
        assert all(len(g) == mb for g in group)
        seen.append([i for g in group for i in g])
    for g in seen:
        assert len(set(g)) == len(g) == world * mb
    first_pass, second_pass = seen[0] + seen[1], seen[2] + seen[3]
    assert len(set(first_pass)) == 8 and len(set(second_pass)) == 8  # a pass never repeats a pair
    assert first_pass != second_pass  # a new permutation per pass
    assert orders[0].state() == {"kind": "preference", "passes": 1, "index": 8}


def test_a_resumed_order_continues_the_same_sequence() -> None:
    one = Dist(0, 1, None)
    straight = PairOrder(FakePairs(9), seed=3)
    want = [_ids(straight.next_group(one, 2)[0]) for _ in range(12)]
    first = PairOrder(FakePairs(9), seed=3)
    got = [_ids(first.next_group(one, 2)[0]) for _ in range(5)]
    resumed = PairOrder(FakePairs(9), seed=3, state=json.loads(json.dumps(first.state())))
    got += [_ids(resumed.next_group(one, 2)[0]) for _ in range(7)]
    assert got == want


def test_too_few_pairs_and_a_foreign_checkpoint_are_refused() -> None:
    with pytest.raises(
        PreferenceError, match=r"3 preference pair.* cannot fill one group of world_size x micro_batch = 4"
    ):
        PairOrder(FakePairs(3), seed=0).next_group(Dist(0, 2, None), 2)
    with pytest.raises(PreferenceError, match="written by an SFT run"):
        PairOrder(FakePairs(3), seed=0, state={"kind": "sequential", "passes": 0, "cursor": [0, 0, 0]})


def test_eval_groups_cover_every_pair_once_with_a_partial_last_group() -> None:
    pairs, world, mb = FakePairs(7), 2, 2
    slices = [eval_groups(pairs, Dist(r, world, None), mb, limit=10) for r in range(world)]
    assert [len(s) for s in slices] == [2, 2]
    assert sorted(i for s in slices for g in s for i in _ids(g)) == list(range(7))
    assert [len(g) for g in slices[1]] == [2, 1]
    assert (
        sum(len(g) for s in (eval_groups(pairs, Dist(r, world, None), mb, limit=1) for r in range(2)) for g in s) == 4
    )


def test_pairs_pad_as_chosen_rows_then_rejected_rows() -> None:
    a = Pair(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1], bool), np.array([1, 2, 9]), np.array([0, 0, 1], bool), 0, 0)
    b = Pair(
        np.array([5, 6, 7]),
        np.array([0, 1, 1], bool),
        np.array([5, 6, 7, 8, 9, 10]),
        np.array([0, 1, 1, 1, 1, 1], bool),
        0,
        1,
    )
    t = pad_pairs([a, b], seq_len=5, pad_id=0)
    assert t["input_ids"].tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 0, 0], [1, 2, 9, 0, 0], [5, 6, 7, 8, 9]]
    x = IGNORE_INDEX
    assert t["labels"].tolist() == [[x, x, 3, 4, x], [x, 6, 7, x, x], [x, x, 9, x, x], [x, 6, 7, 8, 9]]
    assert t["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
