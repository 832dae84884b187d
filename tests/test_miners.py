"""Miners: which index tuples they return for known label layouts."""

from __future__ import annotations

import numpy as np
import torch

from training.miners import AdjacentPairs, BalancedPairMiner, EpisodeSplit
from training.samplers import EpisodeSampler, PairSampler

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
EMB = torch.zeros(len(LABELS), 3)


def _pairs(a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    return list(zip(a.tolist(), b.tolist(), strict=True))


def test_balanced_pair_miner_every_positive_once() -> None:
    a1, p, _, _ = BalancedPairMiner(seed=0)(EMB, LABELS)
    lab = LABELS.tolist()
    expected = {(i, j) for i in range(8) for j in range(i + 1, 8) if lab[i] == lab[j]}
    got = _pairs(a1, p)
    assert len(got) == len(set(got)) == 7
    assert set(got) == expected


def test_balanced_pair_miner_negatives() -> None:
    lab = LABELS.tolist()
    for ratio, want in ((1.0, 7), (2.0, 14), (100.0, 21)):  # 21 = all negative pairs i<j: capped there
        _, _, a2, n = BalancedPairMiner(neg_per_pos=ratio, seed=1)(EMB, LABELS)
        got = _pairs(a2, n)
        assert len(got) == len(set(got)) == want
        assert all(i < j and lab[i] != lab[j] for i, j in got)


def test_balanced_pair_miner_seeded() -> None:
    runs = [BalancedPairMiner(seed=s)(EMB, LABELS) for s in (3, 3, 4)]
    assert all(torch.equal(x, y) for x, y in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(runs[0], runs[2], strict=True))


def test_adjacent_pairs_hand_layout() -> None:
    labels = torch.tensor([0, 0, 1, 2, 3, 3, 4, 1])
    a1, p, a2, n = AdjacentPairs()(torch.zeros(8, 2), labels)
    assert _pairs(a1, p) == [(0, 1), (4, 5)]
    assert _pairs(a2, n) == [(2, 3), (6, 7)]


def test_adjacent_pairs_on_pair_sampler() -> None:
    labels = np.repeat(np.arange(6), 4)
    batch = PairSampler(labels, pairs=8, seed=0).batch(0)
    a1, p, a2, n = AdjacentPairs()(torch.zeros(len(batch), 2), torch.from_numpy(labels[batch]))
    assert a1.tolist() == [0, 4, 8, 12]
    assert p.tolist() == [1, 5, 9, 13]
    assert a2.tolist() == [2, 6, 10, 14]
    assert n.tolist() == [3, 7, 11, 15]


def test_episode_split_hand_layout() -> None:
    labels = torch.tensor([5, 5, 1, 1, 9, 9, 5, 5, 1, 1, 9, 9])
    support, query = EpisodeSplit(k_shot=2)(torch.zeros(12, 2), labels)
    assert support.tolist() == list(range(6))
    assert query.tolist() == list(range(6, 12))
    support, query = EpisodeSplit(k_shot=1)(torch.zeros(12, 2), labels)
    assert support.tolist() == [0, 2, 4]


def test_episode_split_on_episode_sampler() -> None:
    labels = np.repeat(np.arange(10), 8)
    n_way, k_shot, q_query = 4, 3, 2
    for step in range(5):
        batch = EpisodeSampler(labels, n_way, k_shot, q_query, seed=0).batch(step)
        lab = torch.from_numpy(labels[batch])
        support, query = EpisodeSplit(k_shot)(torch.zeros(len(batch), 2), lab)
        assert support.tolist() == list(range(n_way * k_shot))
        assert query.tolist() == list(range(n_way * k_shot, len(batch)))
        for c in lab.unique():  # support = the first k occurrences of each class
            assert torch.nonzero(lab == c).flatten()[:k_shot].tolist() == [i for i in support.tolist() if lab[i] == c]
