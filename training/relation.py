"""Relation Network (Sung, Yang, Zhang, Xiang, Torr & Hospedales, CVPR 2018): a learned comparator.

An embedding module f turns images into feature maps; for K-shot the maps of a class's support images
are summed (the paper's element-wise sum). A relation module g scores each (class, query) pair from the
two maps concatenated along channels: r = g([f(S_c), f(x̂)]) ∈ (0, 1). Trained by mean squared error
to the one-hot match (1 for the query's class, 0 otherwise), as the paper does.

Architecture (the paper's Omniglot network, widths configurable): four [conv3×3 → BN → ReLU] blocks, the
first two unpadded and max-pooled, the last two padded (28×28 -> 64×5×5); then two [conv3×3 (padded)
→ BN → ReLU → max-pool] blocks, a ReLU layer of `hidden` units and a sigmoid unit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.episodic import EpisodicMethod, class_onehot, episode_targets


def _block(c_in: int, c_out: int, padding: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()]
    return [*layers, nn.MaxPool2d(2)] if pool else layers


class RelationNetwork(EpisodicMethod):
    """in_channels, image_size: the input. widths: the embedding's conv widths (the first two blocks pool;
    four blocks in the paper); the relation module's convs use widths[-1]. hidden: its hidden units.

    predict returns relation scores in (0, 1) (Q×C).
    """

    def __init__(self, in_channels: int, image_size: int, widths: tuple[int, ...], hidden: int = 8) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"the relation embedding needs at least two blocks, got widths {widths}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += _block(c, w, padding=0 if i < 2 else 1, pool=i < 2)
            c = w
        self.embed = nn.Sequential(*layers)
        self.relate = nn.Sequential(*_block(2 * c, c, 1, True), *_block(c, c, 1, True), nn.Flatten())
        with torch.no_grad():  # the flattened size depends on image_size: measure it once
            probe = self.embed(torch.zeros(2, in_channels, image_size, image_size))
            if min(probe.shape[2:]) < 4:
                raise ValueError(f"{image_size}px leaves {tuple(probe.shape[2:])} maps: too small to relate")
            flat = self.relate(torch.cat([probe, probe], 1)).shape[1]
        self.score = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        fs, fq = self.embed(support), self.embed(query)  # S×c×h×w, Q×c×h×w
        onehot = class_onehot(support_labels, fs.dtype)  # C×S
        classes = torch.einsum("ns,schw->nchw", onehot, fs)  # C×c×h×w: per-class sums (K-shot)
        n_class, n_query = len(classes), len(fq)
        pairs = torch.cat(
            [classes[None].expand(n_query, -1, -1, -1, -1), fq[:, None].expand(-1, n_class, -1, -1, -1)], dim=2
        )  # Q×C×2c×h×w
        logits = self.score(self.relate(pairs.flatten(0, 1))).view(n_query, n_class)
        return torch.sigmoid(logits.float())

    def loss(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE between relation scores and the one-hot match, as the paper (not cross-entropy)."""
        _, target = episode_targets(support_labels, query_labels)
        scores = self.predict(support, support_labels, query)
        onehot = F.one_hot(target, scores.shape[1]).to(scores.dtype)
        return F.mse_loss(scores, onehot), (scores.detach().argmax(1) == target).float().mean()
