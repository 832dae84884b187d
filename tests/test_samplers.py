"""Samplers: batch layouts, determinism in (seed, rank, step), and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from training.samplers import EpisodeSampler, MPerClassSampler, PairSampler

# 12 classes × 6 images, shuffled so that dataset index and label are unrelated
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(12), 6))


def test_m_per_class_layout() -> None:
    s = MPerClassSampler(LABELS, m=3, classes_per_batch=5, seed=0)
    assert s.batch_size == 15
    for step in range(10):
        b = s.batch(step)
        assert len(b) == 15
        assert len(set(b.tolist())) == 15
        blocks = LABELS[b].reshape(5, 3)
        assert (blocks == blocks[:, :1]).all()  # grouped: [c0 × m, c1 × m, ...]
        assert len(set(blocks[:, 0].tolist())) == 5  # distinct classes


def test_m_per_class_deterministic_per_seed_rank_step() -> None:
    def batch(seed: int, rank: int, step: int) -> np.ndarray:
        return MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=seed, rank=rank).batch(step)

    np.testing.assert_array_equal(batch(1, 0, 7), batch(1, 0, 7))
    assert not np.array_equal(batch(1, 0, 7), batch(1, 1, 7))
    assert not np.array_equal(batch(1, 0, 7), batch(1, 0, 8))
    assert not np.array_equal(batch(1, 0, 7), batch(2, 0, 7))


def test_m_per_class_errors() -> None:
    with pytest.raises(ValueError, match="classes per batch"):
        MPerClassSampler(LABELS, m=2, classes_per_batch=13, seed=0)
    with pytest.raises(ValueError, match="m must be"):
        MPerClassSampler(LABELS, m=1, classes_per_batch=4, seed=0)


def test_episode_layout() -> None:
    n_way, k, q = 4, 2, 3
    s = EpisodeSampler(LABELS, n_way, k, q, seed=0)
    assert s.batch_size == n_way * (k + q)
    for step in range(10):
        b = s.batch(step)
        assert len(b) == s.batch_size
        assert len(set(b.tolist())) == len(b)
        support = LABELS[b[: n_way * k]].reshape(n_way, k)
        queries = LABELS[b[n_way * k :]].reshape(n_way, q)
        assert (support == support[:, :1]).all()
        assert (queries == queries[:, :1]).all()
        assert len(set(support[:, 0].tolist())) == n_way
        np.testing.assert_array_equal(support[:, 0], queries[:, 0])  # same class order


def test_episode_deterministic() -> None:
    a, b = (EpisodeSampler(LABELS, 5, 1, 2, seed=3, rank=r) for r in (0, 1))
    np.testing.assert_array_equal(a.batch(4), EpisodeSampler(LABELS, 5, 1, 2, seed=3).batch(4))
    assert not np.array_equal(a.batch(4), b.batch(4))


def test_episode_within_group() -> None:
    group_of_class = np.array([0] * 5 + [1] * 5 + [2] * 2)  # group 2 is too small for 4-way
    groups = group_of_class[LABELS]
    within = EpisodeSampler(LABELS, 4, 1, 1, seed=0, groups=groups, within_group=True)
    seen = set()
    for step in range(50):
        g = set(groups[within.batch(step)].tolist())
        assert len(g) == 1
        seen |= g
    assert seen == {0, 1}
    mixed = EpisodeSampler(LABELS, 4, 1, 1, seed=0, groups=groups, within_group=False)
    assert any(len(set(groups[mixed.batch(step)].tolist())) > 1 for step in range(50))


def test_m_per_class_within_group() -> None:
    group_of_class = np.array([0] * 5 + [1] * 5 + [2] * 2)
    groups = group_of_class[LABELS]
    within = MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=0, groups=groups, within_group=1.0)
    seen = set()
    for step in range(60):
        batch = within.batch(step)
        classes = LABELS[batch][::2]
        assert len(set(classes.tolist())) == 4
        assert np.all(LABELS[batch][1::2] == classes)
        g = groups[batch][::2]
        if g[0] == 2:  # a group smaller than the batch: all of it first, the rest from other groups
            assert g[:2].tolist() == [2, 2]
            assert 2 not in g[2:].tolist()
        else:
            assert len(set(g.tolist())) == 1
        seen.add(int(g[0]))
    assert seen == {0, 1, 2}
    # within_group = 0 draws the plain sampler's batches, so earlier runs stay reproducible
    plain = MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=0)
    off = MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=0, groups=groups, within_group=0.0)
    np.testing.assert_array_equal(plain.batch(3), off.batch(3))
    mixed = MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=0, groups=groups, within_group=0.5)
    assert any(len(set(groups[mixed.batch(step)].tolist())) > 1 for step in range(20))
    with pytest.raises(ValueError, match="need groups"):
        MPerClassSampler(LABELS, m=2, classes_per_batch=4, seed=0, within_group=0.5)


def test_episode_errors() -> None:
    with pytest.raises(ValueError, match="13-way"):
        EpisodeSampler(LABELS, 13, 1, 1, seed=0)
    groups = (LABELS % 4).astype(np.int64)  # 3 classes per group
    with pytest.raises(ValueError, match="no group"):
        EpisodeSampler(LABELS, 4, 1, 1, seed=0, groups=groups, within_group=True)


def test_pair_sampler_layout() -> None:
    s = PairSampler(LABELS, pairs=10, seed=0)
    assert s.batch_size == 20
    for step in range(10):
        b = s.batch(step)
        assert b.dtype == np.int64
        assert len(b) == 20
        pairs = LABELS[b].reshape(10, 2)
        assert (pairs[0::2, 0] == pairs[0::2, 1]).all()
        assert (pairs[1::2, 0] != pairs[1::2, 1]).all()
        assert (b[0::4] != b[1::4]).all()  # a positive pair is two different images
    np.testing.assert_array_equal(s.batch(3), PairSampler(LABELS, pairs=10, seed=0).batch(3))


def test_pair_sampler_errors() -> None:
    for pairs in (0, 3):
        with pytest.raises(ValueError, match="even"):
            PairSampler(LABELS, pairs=pairs, seed=0)
    with pytest.raises(ValueError, match="two classes"):
        PairSampler(np.zeros(5, dtype=np.int64), pairs=2, seed=0)


def test_episode_within_group_probability() -> None:
    """within_group=p: about a fraction p of episodes keep to one group (the rest mix groups)."""
    labels = np.repeat(np.arange(40), 3)
    groups = labels // 10  # 4 groups of 10 classes
    sampler = EpisodeSampler(labels, 5, 1, 1, seed=0, groups=groups, within_group=0.5)
    single = [len(np.unique(groups[sampler.batch(step)])) == 1 for step in range(400)]
    # A mixed 5-way episode over 4 groups lands in one group with probability < 0.2% by chance.
    assert 0.4 < np.mean(single) < 0.6
    with pytest.raises(ValueError, match="probability"):
        EpisodeSampler(labels, 5, 1, 1, seed=0, groups=groups, within_group=1.5)
