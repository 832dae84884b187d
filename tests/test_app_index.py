"""The gallery's FAISS index against brute force: exact search equals NumPy, HNSW and IVF reach a recall bound,
removal and re-adding keep the id map right, and a rebuild gives back the same answers."""

from __future__ import annotations

import numpy as np
import pytest

from app.index import IndexParams, VectorIndex
from model import distances


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Seeded synthetic embeddings: `clusters` identities, each a centre plus noise (the shape of a gallery)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def brute_force(x: np.ndarray, q: np.ndarray, distance: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = distances.get(distance)
    values = d.pairwise(q, x).astype(np.float64)
    order = np.argsort(d.to_dissimilarity(values), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(values, order, 1), order


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "l1"])
def test_flat_index_is_brute_force(distance: str) -> None:
    x = clustered(600, 24, 40, seed=1)
    q = clustered(25, 24, 40, seed=2)
    ids = np.arange(600, dtype=np.int64) * 7 + 3  # explicit ids, not positions
    ix = VectorIndex(24, distance)
    ix.build(ids, x)
    values, found = ix.search(q, 10)
    want_values, want_pos = brute_force(x, q, distance, 10)
    np.testing.assert_allclose(values, want_values, rtol=1e-4, atol=1e-4)
    for row in range(len(q)):
        for col in range(10):
            if found[row, col] != ids[want_pos[row, col]]:  # a tie: both must be equally close
                other = list(ids).index(found[row, col])
                got = distances.get(distance).pairwise(q[row : row + 1], x[other : other + 1])[0, 0]
                assert got == pytest.approx(want_values[row, col], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("kind", "distance"), [("hnsw", "cosine"), ("ivf", "cosine"), ("hnsw", "euclidean"),
                                                ("ivf", "euclidean")])  # fmt: skip
def test_approximate_index_recall_against_exact(kind: str, distance: str) -> None:
    x = clustered(5000, 32, 300, seed=3)
    q = clustered(200, 32, 300, seed=4)
    ids = np.arange(len(x), dtype=np.int64) + 1000
    exact = VectorIndex(32, distance)
    exact.build(ids, x)
    approx = VectorIndex(32, distance, IndexParams(kind=kind))  # the service's defaults
    approx.build(ids, x)
    assert approx.kind == kind
    _, want = exact.search(q, 10)
    values, got = approx.search(q, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"
    # Whatever it found, its values are the true ones (the vectors are stored flat).
    d = distances.get(distance)
    for row in range(5):
        true = d.pairwise(q[row : row + 1], x[got[row] - 1000])[0]
        np.testing.assert_allclose(values[row], true, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_remove_and_add_again_keep_the_id_map(kind: str) -> None:
    x = clustered(400, 16, 20, seed=5)
    ids = np.arange(400, dtype=np.int64)
    ix = VectorIndex(16, "cosine", IndexParams(kind=kind))
    ix.build(ids, x)
    _, found = ix.search(x[:1], 1)
    assert found[0, 0] == 0
    ix.remove([0, 1, 2])
    assert ix.size == 397
    _, found = ix.search(x[:3], 5)
    assert not set(found.ravel()) & {0, 1, 2}
    # id 0 comes back with another vector (a subject's updated mean): only the new one may be found.
    ix.add(np.array([0]), x[10:11])
    _, found = ix.search(x[10:11], 3)
    assert set(found[0][:2]) == {0, 10}  # the same vector twice, under ids 0 and 10
    assert list(found[0]).count(0) == 1  # the old vector of id 0 is gone
    assert ix.size == 398


def test_small_search_pads_and_empty_index_answers() -> None:
    ix = VectorIndex(8, "euclidean")
    values, found = ix.search(np.ones((1, 8), np.float32), 3)
    assert (found == -1).all()
    assert np.isnan(values).all()
    ix.add(np.array([5, 6]), np.eye(8, dtype=np.float32)[:2])
    values, found = ix.search(np.eye(8, dtype=np.float32)[:1], 3)
    assert found[0].tolist() == [5, 6, -1]
    assert values[0, 0] == pytest.approx(0.0)
    assert values[0, 1] == pytest.approx(np.sqrt(2), rel=1e-6)


def test_ivf_stays_exact_on_a_tiny_gallery_then_asks_to_retrain() -> None:
    ix = VectorIndex(16, "cosine", IndexParams(kind="ivf"))
    x = clustered(3000, 16, 50, seed=6)
    ix.build(np.arange(50), x[:50])
    assert ix.kind == "flat"  # 50 vectors cannot train 2 lists of 39
    assert not ix.needs_rebuild
    ix.add(np.arange(50, 3000), x[50:])
    assert ix.needs_rebuild
    ix.build(np.arange(3000), x)
    assert ix.kind == "ivf"
    assert not ix.needs_rebuild


def test_hnsw_asks_for_a_rebuild_when_tombstones_pile_up_and_rebuild_answers_the_same() -> None:
    x = clustered(1000, 16, 50, seed=7)
    ix = VectorIndex(16, "cosine", IndexParams(kind="hnsw"))
    ix.build(np.arange(1000), x)
    ix.remove(np.arange(300))
    assert ix.needs_rebuild
    before = ix.search(x[300:320], 5)
    ix.build(np.arange(300, 1000), x[300:])
    assert not ix.needs_rebuild
    assert ix.size == 700
    after = ix.search(x[300:320], 5)
    assert (before[1][:, 0] == after[1][:, 0]).all()  # each query finds itself first, before and after


def test_ivf_refuses_l1() -> None:
    with pytest.raises(ValueError, match="L1"):
        VectorIndex(8, "l1", IndexParams(kind="ivf"))
