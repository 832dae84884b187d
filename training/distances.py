"""The training-side twin of `model.distances`: the same names as pytorch-metric-learning objects."""

from __future__ import annotations

from pytorch_metric_learning.distances import BaseDistance, CosineSimilarity, LpDistance

from model import distances


def to_pml(name: str) -> BaseDistance:
    """The pml distance whose `pairwise` matches `model.distances.get(name).pairwise` (tested)."""
    distances.get(name)  # validates the name in the one place that lists them
    if name == "cosine":
        return CosineSimilarity()
    return LpDistance(p=2 if name == "euclidean" else 1, normalize_embeddings=False)
