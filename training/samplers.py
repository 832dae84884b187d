"""Samplers own batch composition. Each is stateless per step: `batch(step)` is a pure function of
(seed, rank, step), so a resumed run draws exactly the batches the uninterrupted run would have drawn,
and DDP ranks (different `rank`) never draw the same batch. No global RNG is touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class _ClassIndex:
    """Per-class lists of dataset indices, with classes optionally grouped (Omniglot alphabets)."""

    def __init__(self, labels: np.ndarray, groups: np.ndarray | None = None) -> None:
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        self.members = {int(c): np.flatnonzero(labels == c) for c in self.classes}
        self.sizes = np.array([len(self.members[int(c)]) for c in self.classes])
        self.class_group = None
        if groups is not None:
            first = {int(c): int(np.asarray(groups)[self.members[int(c)][0]]) for c in self.classes}
            self.class_group = np.array([first[int(c)] for c in self.classes])

    @classmethod
    def for_sampling(cls, labels: np.ndarray, groups: np.ndarray | None, within_group: float) -> _ClassIndex:
        """The index a sampler with `within_group` (a probability) needs: grouped only when it is > 0."""
        if not 0.0 <= within_group <= 1.0:
            raise ValueError(f"within_group is a probability, got {within_group}")
        if within_group and groups is None:
            raise ValueError("within-group batches and episodes need groups")
        return cls(labels, groups if within_group else None)

    def draw(self, rng: np.random.Generator, cls: int, n: int) -> np.ndarray:
        """n distinct members of class `cls` (with replacement only if it has fewer than n)."""
        m = self.members[cls]
        return rng.choice(m, size=n, replace=len(m) < n)


class MPerClassSampler:
    """Batches of `classes_per_batch` distinct classes × `m` images each, grouped by class:
    [c0 × m, c1 × m, ...]. For pair and triplet mining, which need positives inside every batch.

    within_group: the probability that a batch takes its classes from one group first (an Omniglot
    alphabet: every class of a randomly drawn group, up to `classes_per_batch`, the rest of the batch from
    any other class). A pair miner that draws negatives at random then meets mostly within-alphabet
    negatives in such batches, the hard kind Lake's within-alphabet runs test; across 964 classes a random
    negative is almost never from the same alphabet. 0 = never, 1 = always.
    """

    def __init__(
        self,
        labels: np.ndarray,
        m: int,
        classes_per_batch: int,
        seed: int,
        rank: int = 0,
        groups: np.ndarray | None = None,
        within_group: float = 0.0,
    ) -> None:
        self.index = _ClassIndex.for_sampling(labels, groups, within_group)
        if classes_per_batch > len(self.index.classes):
            raise ValueError(f"{classes_per_batch} classes per batch but only {len(self.index.classes)} exist")
        if m < 2:
            raise ValueError("m must be at least 2 so that every batch holds positive pairs")
        self.m, self.classes_per_batch, self.seed, self.rank = m, classes_per_batch, seed, rank
        self.within_group = within_group

    @property
    def batch_size(self) -> int:
        return self.m * self.classes_per_batch

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.rank, step])
        # Drawn only when within_group > 0, so that batches without it are those of the plain sampler.
        if self.within_group and rng.random() < self.within_group:
            cg = self.index.class_group
            assert cg is not None
            group = self.index.classes[cg == rng.choice(np.unique(cg))]
            first = rng.choice(group, size=min(len(group), self.classes_per_batch), replace=False)
            rest = np.setdiff1d(self.index.classes, first)
            classes = np.concatenate([first, rng.choice(rest, size=self.classes_per_batch - len(first), replace=False)])
        else:
            classes = rng.choice(self.index.classes, size=self.classes_per_batch, replace=False)
        return np.concatenate([self.index.draw(rng, int(c), self.m) for c in classes])


class EpisodeSampler:
    """N-way K-shot Q-query episodes. Layout of the returned indices (length N·(K+Q)):
    first the N·K support images grouped by class (class 0's K, then class 1's K, ...), then the N·Q
    queries grouped by class in the same class order. `training.miners.EpisodeSplit` reads it back.

    within_group: the probability that an episode draws all N classes from one group (Lake's
    within-alphabet runs are of this kind: such episodes hold the hardest negatives). 0 = never, 1 = always.
    episodes: episodes per batch (a meta-batch for episodic methods), each of N·(K+Q) indices in the
    layout above, back to back.
    """

    def __init__(
        self,
        labels: np.ndarray,
        n_way: int,
        k_shot: int,
        q_query: int,
        seed: int,
        rank: int = 0,
        groups: np.ndarray | None = None,
        within_group: float = 0.0,
        episodes: int = 1,
    ) -> None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.index = _ClassIndex.for_sampling(labels, groups, within_group)
        if n_way > len(self.index.classes):
            raise ValueError(f"{n_way}-way episodes but only {len(self.index.classes)} classes exist")
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.seed, self.rank, self.within_group, self.episodes = seed, rank, within_group, episodes
        if within_group:
            cg = self.index.class_group
            assert cg is not None
            self.eligible_groups = [g for g in np.unique(cg) if (cg == g).sum() >= n_way]
            if not self.eligible_groups:
                raise ValueError(f"no group has {n_way} classes for within-group episodes")

    @property
    def batch_size(self) -> int:
        return self.episodes * self.n_way * (self.k_shot + self.q_query)

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.rank, step])
        # One generator for the whole batch: with episodes = 1 the draws are those of a single episode.
        return np.concatenate([self._episode(rng) for _ in range(self.episodes)])

    def _episode(self, rng: np.random.Generator) -> np.ndarray:
        pool = self.index.classes
        if self.within_group and rng.random() < self.within_group:
            g = rng.choice(self.eligible_groups)
            pool = pool[self.index.class_group == g]
        classes = rng.choice(pool, size=self.n_way, replace=False)
        draws = [self.index.draw(rng, int(c), self.k_shot + self.q_query) for c in classes]
        support = [d[: self.k_shot] for d in draws]
        queries = [d[self.k_shot :] for d in draws]
        return np.concatenate(support + queries)


class PairSampler:
    """Koch's balanced pairs: `pairs` pairs laid out as [a0, b0, a1, b1, ...]; pair i is same-class
    when i is even and different-class when odd (so exactly half are positive).
    `training.miners.AdjacentPairs` turns the layout into index tuples.
    """

    def __init__(self, labels: np.ndarray, pairs: int, seed: int, rank: int = 0) -> None:
        self.index = _ClassIndex(labels)
        if pairs < 2 or pairs % 2:
            raise ValueError("pairs must be even and at least 2 (half same, half different)")
        if len(self.index.classes) < 2:
            raise ValueError("different-class pairs need at least two classes")
        self.pairs, self.seed, self.rank = pairs, seed, rank

    @property
    def batch_size(self) -> int:
        return 2 * self.pairs

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.rank, step])
        out: list[int] = []
        for i in range(self.pairs):
            if i % 2 == 0:
                c = int(rng.choice(self.index.classes))
                out += list(self.index.draw(rng, c, 2))
            else:
                c1, c2 = rng.choice(self.index.classes, size=2, replace=False)
                out += [int(self.index.draw(rng, int(c1), 1)[0]), int(self.index.draw(rng, int(c2), 1)[0])]
        return np.array(out, dtype=np.int64)


Sampler = MPerClassSampler | EpisodeSampler | PairSampler


def describe(sampler: Sampler) -> Sequence[str]:
    """Human-readable summary for logs."""
    return [type(sampler).__name__, f"batch={sampler.batch_size}"]
