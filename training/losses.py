"""Objectives as small modules with one signature: `loss(embeddings, labels, indices_tuple) -> scalar`.

embeddings: float N×D; labels: int64 N; indices_tuple: what the objective's miner returned (see
`training.miners`), or None where the loss can form its own tuples. pytorch-metric-learning provides
contrastive, triplet and the softmax-margin losses; the two it does not have live here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import nn


def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2 or labels.ndim != 1 or len(embeddings) != len(labels):
        raise ValueError(f"expected N×D embeddings and N labels, got {tuple(embeddings.shape)}, {tuple(labels.shape)}")
    if embeddings.device != labels.device:
        raise ValueError(f"embeddings on {embeddings.device} but labels on {labels.device}")


class KochLoss(nn.Module):
    """Koch et al. 2015: p(same) = σ(b − Σ_j α_j |x_j − y_j|), binary cross-entropy over pairs.

    α = softplus(w) ≥ 0, so the weighted L1 is a true distance and folds into the embedding
    (`fold_scale()` gives α): serving then uses plain L1 on α ⊙ embedding, and σ(b − d) maps that
    distance back to the head's probability. (The paper leaves α unconstrained; a negative α would make
    "distance" reward disagreement and could not be folded.)

    indices_tuple: (a1, p, a2, n) pairs; None means every pair of the batch.

    `lr_multiplier`: the trainer gives this module's parameters that many times the base learning rate.
    α and b set the logit's scale, which must travel orders of magnitude; at softplus(w) = 1/D the
    gradient through softplus is ~α itself, so at the net's rate they barely move (the paper, too, used
    per-layer learning rates).
    """

    lr_multiplier = 100.0

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        # softplus(w0) = 10/D: the initial distance is ten times the mean per-feature difference.
        w0 = torch.log(torch.expm1(torch.tensor(10.0 / embedding_dim)))
        self.w = nn.Parameter(torch.full((embedding_dim,), float(w0)))
        self.bias = nn.Parameter(torch.tensor(0.5))

    def fold_scale(self) -> torch.Tensor:
        return F.softplus(self.w).detach()

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (F.softplus(self.w) * (x - y).abs()).sum(-1)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        _check(embeddings, labels)
        a1, p, a2, n = indices_tuple if indices_tuple is not None else lmu.get_all_pairs_indices(labels)
        d = torch.cat([self.distance(embeddings[a1], embeddings[p]), self.distance(embeddings[a2], embeddings[n])])
        target = torch.cat([torch.ones(len(a1)), torch.zeros(len(a2))]).to(d)
        if len(d) == 0:
            return embeddings.sum() * 0.0
        return F.binary_cross_entropy_with_logits(self.bias - d, target)


class PrototypicalLoss(nn.Module):
    """Snell et al. 2017: queries are classified by softmax over negative squared Euclidean distance
    to class prototypes (means of the support embeddings); cross-entropy on the queries.

    indices_tuple: (support, query) index tensors (`EpisodeSplit`). Required: an episode has no
    meaning without its support set.
    metric: "euclidean" (squared, as the paper) or "cosine" (logits = scale · cos, Gidaris & Komodakis).
    """

    def __init__(self, metric: str = "euclidean", scale: float = 10.0) -> None:
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be euclidean or cosine, got {metric!r}")
        self.metric, self.scale = metric, scale

    def logits(
        self, support: torch.Tensor, support_labels: torch.Tensor, queries: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q×C logits, C class ids in column order) for queries Q×D against prototypes of support S×D."""
        classes = torch.unique(support_labels)
        onehot = (support_labels[None, :] == classes[:, None]).to(support.dtype)  # C×S
        protos = onehot @ support / onehot.sum(1, keepdim=True)  # C×D
        if self.metric == "euclidean":
            return -torch.cdist(queries, protos).pow(2), classes
        return self.scale * F.normalize(queries, dim=1) @ F.normalize(protos, dim=1).T, classes

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        _check(embeddings, labels)
        if indices_tuple is None:
            raise ValueError("PrototypicalLoss needs (support, query) indices; use training.miners.EpisodeSplit")
        support, query = indices_tuple
        logits, classes = self.logits(embeddings[support], labels[support], embeddings[query])
        target = (labels[query][:, None] == classes[None, :]).float().argmax(1)
        return F.cross_entropy(logits, target)


class DistillLoss(nn.Module):
    """Distillation from a teacher's per-image embeddings: `loss(embeddings, targets) -> scalar`.

    Unlike the labelled losses it reads targets, not labels: embeddings N×D (the student's, L2-normalised),
    targets N×D' (the teacher's normalised embeddings of the same images; NaN rows where the teacher has none,
    which are left out). Two terms, each weighted (0 turns it off):
      - regression: mean (1 - cos(s_i, t_i)); where D ≠ D' through a learned linear projection D→D' (used in
        training only: the student's own embedding is what serving uses);
      - relational (Park et al. 2019's idea on cosine similarities): mean over pairs i ≠ j of
        (cos(s_i, s_j) - cos(t_i, t_j))², i.e. a Siamese loss on pairs the teacher labels with its similarity.
    """

    def __init__(self, embedding_dim: int, target_dim: int, regression: float, relational: float) -> None:
        super().__init__()
        if regression < 0 or relational < 0 or regression + relational == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got {regression}, {relational}")
        self.regression, self.relational = regression, relational
        self.project = nn.Linear(embedding_dim, target_dim, bias=False) if embedding_dim != target_dim else None

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or targets.ndim != 2 or len(embeddings) != len(targets):
            shapes = f"{tuple(embeddings.shape)}, {tuple(targets.shape)}"
            raise ValueError(f"expected N×D embeddings and N×D' targets, got {shapes}")
        keep = ~torch.isnan(targets).any(1)
        s, t = F.normalize(embeddings[keep], dim=1), targets[keep]
        if len(s) < 2:
            return embeddings.sum() * 0.0
        loss = embeddings.new_zeros(())
        if self.regression:
            p = F.normalize(self.project(s), dim=1) if self.project is not None else s
            loss = loss + self.regression * (1.0 - (p * t).sum(1)).mean()
        if self.relational:
            off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
            loss = loss + self.relational * ((s @ s.T - t @ t.T)[off] ** 2).mean()
        return loss
