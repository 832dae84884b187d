"""Few-shot evaluation on synthetic data whose right answer is known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model import distances
from training.data.omniglot import OneShotRun
from training.evaluate import classify, episodes, mean_ci95, one_shot_runs, pixel_embed

EUCLID = distances.get("euclidean")


def test_mean_ci95_by_hand() -> None:
    mean, ci = mean_ci95([0.2, 0.5, 0.9, 1.0])
    # deviations -.45 -.15 .25 .35: s² = 0.41 / 3
    assert mean == pytest.approx(0.65)
    assert ci == pytest.approx(1.96 * math.sqrt(0.41 / 3) / 2)
    assert mean_ci95([0.7])[0] == 0.7
    assert math.isnan(mean_ci95([0.7])[1])
    assert all(math.isnan(v) for v in mean_ci95([]))


@pytest.mark.parametrize("name", distances.NAMES)
def test_separable_classes_score_one(name: str) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 6)
    emb = np.eye(8)[labels] + 0.01 * rng.normal(size=(len(labels), 8))
    acc = episodes(emb, labels, n_way=5, k_shot=2, n_query=3, n_episodes=200, distance=distances.get(name))
    assert acc.mean == 1.0
    assert acc.ci95 == 0.0
    assert acc.trials == 200


def test_label_free_embeddings_score_chance() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(30), 10)
    emb = rng.normal(size=(len(labels), 16))
    acc = episodes(emb, labels, n_way=5, k_shot=1, n_query=2, n_episodes=2000, distance=EUCLID, seed=0)
    # across data seeds the mean spreads with std ≈ 0.007; 0.04 is > 5 of those
    assert abs(acc.mean - 0.2) < 0.04
    assert 0 < acc.ci95 < 0.02


def test_episodes_seeded() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 5)
    emb = rng.normal(size=(50, 4))
    a, b, c = (episodes(emb, labels, 3, 1, 1, 50, EUCLID, seed=s) for s in (0, 0, 1))
    assert a == b
    assert a != c


def test_within_group_episodes() -> None:
    # 10 groups × 2 classes; both classes of a group embed to the same point: across groups an episode is
    # trivially solved, within a group the tie goes to the first prototype, so exactly half the queries are right.
    labels = np.repeat(np.arange(20), 3)
    groups = labels // 2
    emb = np.eye(10)[groups]
    within = episodes(emb, labels, n_way=2, k_shot=1, n_query=1, n_episodes=300, distance=EUCLID, groups=groups)
    assert within.mean == 0.5
    assert within.ci95 == 0.0
    anywhere = episodes(emb, labels, n_way=2, k_shot=1, n_query=1, n_episodes=300, distance=EUCLID)
    assert anywhere.mean > 0.9  # only ≈ 1/19 of random class pairs share a group


def test_episodes_not_enough_classes() -> None:
    labels = np.repeat(np.arange(4), 3)
    with pytest.raises(ValueError, match="5-way"):
        episodes(np.zeros((12, 2)), labels, 5, 1, 1, 10, EUCLID)
    with pytest.raises(ValueError, match="4 images"):  # 3 images per class < k_shot + n_query
        episodes(np.zeros((12, 2)), labels, 2, 2, 2, 10, EUCLID)


def test_classify_hand_prototypes() -> None:
    support = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])  # prototypes (1, 0) and (0, 5)
    labels = np.array([7, 7, 3, 3])
    queries = np.array([[1.0, 1.0], [0.0, 4.0], [2.0, 2.0], [0.5, 3.0]])
    # (2, 2): 2.24 from (1, 0) vs 3.6 from (0, 5); (0.5, 3): 3.04 vs 2.06
    np.testing.assert_array_equal(classify(support, labels, queries, EUCLID), [7, 3, 7, 3])
    np.testing.assert_array_equal(classify(support, labels, queries, distances.get("l1")), [7, 3, 7, 3])


def test_classify_cosine_averages_unit_vectors() -> None:
    # class 0 = directions 0° and 90° (one vector long) -> prototype at 45° only if normalised first
    support = np.array([[100.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    labels = np.array([0, 0, 1])  # class 1 at 135°
    query = np.array([[math.cos(math.radians(80)), math.sin(math.radians(80))]])
    # 80° is 35° from 45° but 55° from 135°; the raw mean (≈0.6°) would lose to class 1
    assert classify(support, labels, query, distances.get("cosine")).tolist() == [0]


def _run(answers: list[int], swap_last: bool) -> OneShotRun:
    """4-way run on 1×2×2 images: support i lights pixel i; each query lights its answer's pixel."""
    support = np.eye(4, dtype=np.float32).reshape(4, 1, 2, 2)
    lit = list(answers)
    if swap_last:  # the last query looks like another class than its answer says
        lit[-1] = (lit[-1] + 1) % 4
    queries = 0.9 * np.eye(4, dtype=np.float32)[lit].reshape(-1, 1, 2, 2)
    return OneShotRun(support=support, queries=queries, answers=np.array(answers, dtype=np.int64))


def test_one_shot_runs_exact() -> None:
    acc = one_shot_runs(pixel_embed, [_run([2, 0, 3, 1], swap_last=True)], EUCLID)
    assert acc.mean == 0.75
    assert acc.trials == 4
    assert math.isnan(acc.ci95)


def test_one_shot_runs_pools_trials_and_cis_over_runs() -> None:
    runs = [_run([0, 1, 2, 3], swap_last=False), _run([3, 2], swap_last=True)]  # 4/4 and 1/2
    acc = one_shot_runs(pixel_embed, runs, distances.get("cosine"))
    assert acc.mean == pytest.approx(5 / 6)
    assert acc.trials == 6
    assert acc.ci95 == pytest.approx(1.96 * np.std([1.0, 0.5], ddof=1) / math.sqrt(2))
