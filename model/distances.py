"""Distances between embeddings, stated once for training and serving.

Every distance answers two questions the rest of the code must never guess:
- `pairwise(a, b)`: the matrix of values between rows of `a` (N×D) and `b` (M×D), shape N×M;
- `higher_is_closer`: whether a larger value means "more alike" (cosine similarity) or "less alike"
  (Euclidean, L1).

These are NumPy implementations (serving never imports torch). Training uses the matching
pytorch-metric-learning distance objects (`training.distances.to_pml`); a test checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ("cosine", "euclidean", "l1")


@dataclass(frozen=True)
class Distance:
    """A named distance. Use `get(name)`, not the constructor."""

    name: str
    higher_is_closer: bool

    def pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Values between every row of `a` (N×D) and every row of `b` (M×D): N×M float32."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f"expected N×D and M×D arrays with the same D, got {a.shape} and {b.shape}")
        if self.name == "cosine":
            return normalize(a) @ normalize(b).T
        if self.name == "euclidean":
            # The |a|² + |b|² − 2a·b expansion cancels catastrophically in float32 for near-equal rows
            # (a vector's distance to itself comes out ~1e-3); float64 keeps it at ~1e-7.
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
            return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)
        # L1 has no matrix-product form; chunk rows so memory stays bounded (chunk×M×D floats).
        out = np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
        chunk = max(1, 2**24 // max(1, b.shape[0] * b.shape[1]))
        for s in range(0, a.shape[0], chunk):
            out[s : s + chunk] = np.abs(a[s : s + chunk, None, :] - b[None, :, :]).sum(-1)
        return out

    def to_dissimilarity(self, values: np.ndarray) -> np.ndarray:
        """Map values to "smaller is closer" (negates similarities), for code that ranks by distance."""
        return -values if self.higher_is_closer else values

    def nearest(self, values: np.ndarray, axis: int = -1) -> np.ndarray:
        """Index of the closest entry along `axis` of a `pairwise` matrix."""
        return values.argmax(axis) if self.higher_is_closer else values.argmin(axis)


def get(name: str) -> Distance:
    """The distance called `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown distance {name!r}; expected one of {NAMES}")
    return Distance(name=name, higher_is_closer=name == "cosine")


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x` (N×D) scaled to unit L2 norm."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
