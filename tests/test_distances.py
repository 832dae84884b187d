"""model.distances (NumPy, serving) agrees with training.distances (pml, training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import distances
from training.distances import to_pml


@pytest.mark.parametrize("name", distances.NAMES)
def test_pairwise_matches_pml(name: str) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 16)).astype(np.float32)
    b = rng.normal(size=(7, 16)).astype(np.float32)
    got = distances.get(name).pairwise(a, b)
    want = to_pml(name)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert got.shape == (5, 7)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", distances.NAMES)
def test_pairwise_hand_values(name: str) -> None:
    a = np.array([[3.0, 4.0]])
    b = np.array([[0.0, 0.0], [6.0, 8.0], [3.0, 0.0]])
    want = {
        "cosine": [[0.0, 1.0, 0.6]],  # zero vector: normalize() guards the division
        "euclidean": [[5.0, 5.0, 4.0]],
        "l1": [[7.0, 7.0, 4.0]],
    }[name]
    np.testing.assert_allclose(distances.get(name).pairwise(a, b), want, atol=1e-6)


def test_higher_is_closer_only_for_cosine() -> None:
    assert {n: distances.get(n).higher_is_closer for n in distances.NAMES} == {
        "cosine": True,
        "euclidean": False,
        "l1": False,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cosine", 2), ("euclidean", 0), ("l1", 1)],
)
def test_nearest(name: str, expected: int) -> None:
    query = np.array([[1.0, 0.0]])
    # L2 distances 0.81, 0.90, 4; L1 distances 1.1, 0.95, 4; only ref 2 points the query's way
    refs = np.array([[1.4, 0.7], [1.9, 0.05], [5.0, 0.0]])
    d = distances.get(name)
    assert d.nearest(d.pairwise(query, refs)).tolist() == [expected]
    assert d.nearest(d.pairwise(refs, query), axis=0).tolist() == [expected]


def test_to_dissimilarity() -> None:
    v = np.array([0.2, -0.5])
    np.testing.assert_array_equal(distances.get("cosine").to_dissimilarity(v), -v)
    np.testing.assert_array_equal(distances.get("l1").to_dissimilarity(v), v)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="manhattan"):
        distances.get("manhattan")
    with pytest.raises(ValueError, match="manhattan"):
        to_pml("manhattan")


@pytest.mark.parametrize("name", distances.NAMES)
@pytest.mark.parametrize(
    ("sa", "sb"),
    [((4,), (3, 4)), ((2, 4), (3, 5)), ((2, 4, 1), (3, 4))],
)
def test_bad_shapes(name: str, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="same D"):
        distances.get(name).pairwise(np.zeros(sa), np.zeros(sb))
