"""Which loss, miner, sampler and distance each objective uses: the one table of string switches.

An `Objective` is plain data; `TrainModule` (training/trainer.py) runs `loss(emb, y, miner(emb, y))`, plus
`distill(emb, teacher_targets)` where a teacher is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import nn

from training.config import TrainConfig
from training.distances import to_pml
from training.losses import DistillLoss, KochLoss, PrototypicalLoss
from training.miners import AdjacentPairs, BalancedPairMiner, EpisodeSplit


@dataclass
class Objective:
    loss: nn.Module | None  # None: the teacher's loss alone (objective "distill")
    miner: nn.Module | None
    distance: str  # a model.distances name: what serving compares embeddings with
    l2_normalize: bool  # the embedder ends with L2 normalisation
    scaled: bool  # the loss learns a per-dimension scale that export folds into the embedder
    distill: DistillLoss | None = None  # added to `loss` where a teacher is set


def build_objective(cfg: TrainConfig, embedding_dim: int, num_classes: int, target_dim: int = 0) -> Objective:
    """The objective named by `cfg.objective`, with its miner matched to `cfg.sampler`, and the teacher's
    distillation loss (`target_dim`: the teacher's embedding size) where `cfg.teacher` is set."""
    objective = _labelled_objective(cfg, embedding_dim, num_classes)
    if cfg.teacher:
        if objective.distance != "cosine":
            raise ValueError(f"distillation matches cosine similarities: {cfg.objective} trains another distance")
        objective.distill = DistillLoss(embedding_dim, target_dim, cfg.distill_regression, cfg.distill_relational)
    return objective


def _labelled_objective(cfg: TrainConfig, embedding_dim: int, num_classes: int) -> Objective:
    o = cfg.objective
    if o == "distill":
        return Objective(None, None, "cosine", l2_normalize=True, scaled=False)
    if o == "koch":
        miner = AdjacentPairs() if cfg.sampler == "pairs" else BalancedPairMiner(1.0, seed=cfg.seed)
        return Objective(KochLoss(embedding_dim), miner, "l1", l2_normalize=False, scaled=True)
    if o == "contrastive":
        # Hadsell et al.'s margin loss on unit vectors: positives pulled to 0, negatives pushed past margin.
        loss = pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=cfg.margin, distance=to_pml("euclidean"))
        miner = AdjacentPairs() if cfg.sampler == "pairs" else None
        return Objective(loss, miner, "euclidean", l2_normalize=True, scaled=False)
    if o == "triplet":
        dist = to_pml("euclidean")
        loss = pml_losses.TripletMarginLoss(margin=cfg.margin, distance=dist)
        miner = pml_miners.TripletMarginMiner(margin=cfg.margin, type_of_triplets=cfg.mining, distance=dist)
        return Objective(loss, miner, "euclidean", l2_normalize=True, scaled=False)
    if o == "proto":
        if cfg.sampler != "episodes":
            raise ValueError("the proto objective needs sampler = episodes")
        return Objective(PrototypicalLoss("euclidean"), EpisodeSplit(cfg.k_shot), "euclidean", False, False)
    if o == "normsoftmax":
        loss = pml_losses.NormalizedSoftmaxLoss(num_classes, embedding_dim, temperature=cfg.temperature)
        return Objective(loss, None, "cosine", l2_normalize=True, scaled=False)
    if o == "arcface":
        loss = pml_losses.ArcFaceLoss(num_classes, embedding_dim, margin=28.6, scale=cfg.softmax_scale)
        return Objective(loss, None, "cosine", l2_normalize=True, scaled=False)
    if o == "cosface":
        # Wang et al. 2018's additive cosine margin: steadier than ArcFace's angular one from scratch on
        # a few thousand identities (ArcFace's margin can stall training while classes are still random).
        loss = pml_losses.CosFaceLoss(num_classes, embedding_dim, margin=cfg.margin, scale=cfg.softmax_scale)
        return Objective(loss, None, "cosine", l2_normalize=True, scaled=False)
    raise ValueError(f"unknown objective {o!r}")
