"""Miners: `miner(embeddings, labels) -> index tuple`, computed under no_grad.

Pair tuples follow pytorch-metric-learning: (a1, p, a2, n) with (a1[i], p[i]) positive pairs and
(a2[j], n[j]) negative pairs. Triplet tuples: (anchor, positive, negative). Episode tuples:
(support, query). pml's own miners (`TripletMarginMiner`, ...) are used as they are.
"""

from __future__ import annotations

import torch
from torch import nn


class BalancedPairMiner(nn.Module):
    """Every positive pair of the batch, plus `neg_per_pos` times as many negatives drawn uniformly.

    Koch's objective trains on balanced same/different pairs; drawing them from an M-per-class batch
    reuses each embedded image in many pairs instead of one.
    """

    def __init__(self, neg_per_pos: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.neg_per_pos = neg_per_pos
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        same = labels[:, None] == labels[None, :]
        upper = torch.triu(torch.ones_like(same), diagonal=1)
        a1, p = torch.nonzero(same & upper, as_tuple=True)
        a2, n = torch.nonzero(~same & upper, as_tuple=True)
        k = min(len(a2), max(1, round(self.neg_per_pos * len(a1))))
        pick = torch.randperm(len(a2), generator=self.generator)[:k].to(a2.device)
        return a1, p, a2[pick], n[pick]


class AdjacentPairs(nn.Module):
    """Reads `PairSampler`'s layout [a0, b0, a1, b1, ...] as pairs (2i, 2i+1), split by label equality."""

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        first = torch.arange(0, len(labels) - 1, 2, device=labels.device)
        second = first + 1
        same = labels[first] == labels[second]
        return first[same], second[same], first[~same], second[~same]


class EpisodeSplit(nn.Module):
    """Reads `EpisodeSampler`'s layout: for each class, its first `k_shot` occurrences in the batch are
    support, the rest are queries. Returns (support_indices, query_indices)."""

    def __init__(self, k_shot: int) -> None:
        super().__init__()
        self.k_shot = k_shot

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # rank of each element among earlier elements of its class
        same_before = (labels[:, None] == labels[None, :]).tril(-1).sum(1)
        is_support = same_before < self.k_shot
        return torch.nonzero(is_support).flatten(), torch.nonzero(~is_support).flatten()
