"""Episodic few-shot methods: models that read a whole episode (support and queries) rather than
embeddings alone. Matching Networks, the Relation Network and MAML live here behind one interface.

An `EpisodicMethod` is an nn.Module with
- `predict(support, support_labels, query) -> scores` (Q×C, larger = more likely; column j is class
  `torch.unique(support_labels)[j]`), and
- `loss(support, support_labels, query, query_labels) -> (scalar loss, accuracy)`.

support: float S×C×H×W in [0, 1]; support_labels: int64 S (any ids, N distinct); query: float Q×C×H×W;
query_labels: int64 Q, each one of the support ids.

`build_episodic_method(cfg)` is the one string switch (the episodic twin of `training.objectives`);
`EpisodicTrainModule` adapts a method to the trainer's `forward(x, y) -> (loss, accuracy)` over
`EpisodeSampler`'s layout; `load_episodic(path)` rebuilds a method from its `best.pt` alone.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.config import EMBEDDING_EXPORTABLE_EPISODIC, EPISODIC_OBJECTIVES, TrainConfig


def episode_targets(support_labels: torch.Tensor, query_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C class ids in column order, Q targets in [0, C)): the column convention of every `predict`.

    Raises ValueError if a query's label is not among the support labels.
    """
    classes = torch.unique(support_labels)
    hit = query_labels[:, None] == classes[None, :]
    if not bool(hit.any(1).all()):
        raise ValueError("every query label must be one of the support labels")
    return classes, hit.float().argmax(1)


def class_onehot(support_labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """C×S indicator: row j marks the support items of class `torch.unique(support_labels)[j]`."""
    classes = torch.unique(support_labels)
    return (support_labels[None, :] == classes[:, None]).to(dtype)


class EpisodicMethod(nn.Module, abc.ABC):
    """A few-shot classifier that sees the whole episode. See the module docstring for shapes.

    n_way: the only episode width the method can answer (MAML's head has n_way outputs), or None for any.
    """

    n_way: int | None = None

    @abc.abstractmethod
    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Q×C scores for the queries; column j is class `torch.unique(support_labels)[j]`."""

    def loss(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy on the queries (scores read as logits) and the queries' accuracy (no grad).

        Scores are computed in float32 even under autocast: softmax over a few classes needs it."""
        _, target = episode_targets(support_labels, query_labels)
        scores = self.predict(support, support_labels, query).float()
        return F.cross_entropy(scores, target), (scores.detach().argmax(1) == target).float().mean()


class EpisodicTrainModule(nn.Module):
    """The trainer's view of an `EpisodicMethod`: forward(x, y) -> (loss, accuracy), both scalars.

    x, y hold `episodes` episodes back to back, each in `EpisodeSampler`'s layout (N·K support grouped
    by class, then N·Q queries). The loss is the mean over episodes (MAML's meta-batch).
    """

    def __init__(self, method: EpisodicMethod, n_way: int, k_shot: int, q_query: int, episodes: int = 1) -> None:
        super().__init__()
        self.method = method
        self.n_support, self.size, self.episodes = n_way * k_shot, n_way * (k_shot + q_query), episodes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) != self.size * self.episodes or len(y) != len(x):
            raise ValueError(f"expected {self.episodes} episodes of {self.size} images, got {len(x)}")
        losses, accs = [], []
        for e in range(self.episodes):
            xe, ye = x[e * self.size : (e + 1) * self.size], y[e * self.size : (e + 1) * self.size]
            s = self.n_support
            loss, acc = self.method.loss(xe[:s], ye[:s], xe[s:], ye[s:])
            losses.append(loss)
            accs.append(acc)
        return torch.stack(losses).mean(), torch.stack(accs).mean()


def build_episodic_method(cfg: TrainConfig) -> EpisodicMethod:
    """The episodic method named by `cfg.objective` (one of `EPISODIC_OBJECTIVES`), freshly initialised."""
    o = cfg.objective
    if o in ("matching", "matching_fce"):
        from model.nets import Embedder
        from training.matching import MatchingNetwork
        from training.trainer import embedder_config  # the same backbones as the embedding objectives

        # Plain matching nets compare by cosine: normalising inside the embedder makes the exported
        # embedding (and its card's cosine distance) exactly what attention compared.
        embedder = Embedder(embedder_config(cfg, (o == "matching", False)))
        return MatchingNetwork(embedder, embedder.embedding_dim, fce=o == "matching_fce", fce_steps=cfg.fce_steps)
    if o == "relation":
        from training.relation import RelationNetwork

        return RelationNetwork(cfg.channels, cfg.image_size, cfg.widths, cfg.relation_hidden)
    if o in ("maml", "fomaml"):
        from training.maml import MAML, MamlConvNet

        net = MamlConvNet(cfg.channels, cfg.widths, cfg.n_way)
        return MAML(net, cfg.n_way, cfg.inner_steps, cfg.inner_lr, cfg.inner_steps_eval, first_order=o == "fomaml")
    raise ValueError(f"{o!r} is not an episodic objective; expected one of {EPISODIC_OBJECTIVES}")


def exported_embedder_state(cfg: TrainConfig, method: EpisodicMethod) -> dict[str, Any]:
    """For a method whose prediction is a distance between embeddings (plain matching nets), the
    `best.pt` keys that make it exportable like an embedding objective; {} for the others."""
    if cfg.objective not in EMBEDDING_EXPORTABLE_EPISODIC:
        return {}
    embedder = method.embedder  # type: ignore[attr-defined]
    return {
        "model_config": embedder.config.to_dict(),
        "model": {k: v.detach().clone() for k, v in embedder.state_dict().items()},
        "distance": "cosine",
    }


class ExportRefused(ValueError):
    """A run that cannot become an embedding artifact (the message says why)."""


def export_refusal(ckpt: dict[str, Any]) -> str | None:
    """Why a `best.pt` cannot become an embedding artifact, or None if it can."""
    objective = ckpt["train_config"].get("objective")
    if "model_config" not in ckpt:
        return (
            f"objective {objective!r} is an episodic method: its prediction compares the support set and the "
            "query inside the model (a learned comparator, context embeddings or per-episode adaptation), so "
            "it has no embedding + distance to export. Evaluate it with `python -m training evaluate "
            "--checkpoint`; only embedding-based runs (including plain `matching`) export to ONNX."
        )
    if ckpt["train_config"].get("split", "lake") == "vinyals":
        return (
            "this run trained on the Vinyals split, which mixes background and evaluation alphabets: the "
            "artifact's measurements (Lake's runs, images_evaluation) would test on training classes"
        )
    return None


def load_episodic(path: Path, device: torch.device | None = None) -> tuple[EpisodicMethod, dict[str, Any]]:
    """Rebuild the episodic method of a `best.pt` from its saved config alone: (method in eval mode, ckpt)."""
    ckpt = torch.load(path, map_location=device or "cpu", weights_only=False)
    if "episodic" not in ckpt:
        raise ValueError(f"{path} holds an embedder, not an episodic method")
    method = build_episodic_method(TrainConfig.from_saved(ckpt["train_config"]))
    method.load_state_dict(ckpt["episodic"])
    return method.to(device or "cpu").eval(), ckpt


def predict_fn(method: EpisodicMethod, device: torch.device) -> Any:
    """An `evaluate.PredictFn` over `method`: NumPy (support S×C×H×W float, labels S, queries Q×C×H×W)
    -> Q predicted labels, in eval mode. Gradients stay enabled only where the method needs them (MAML's
    inner loop enables its own)."""

    def predict(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        was_training = method.training
        method.eval()
        sl = torch.from_numpy(np.asarray(support_labels)).to(device)
        with torch.no_grad():
            scores = method.predict(torch.from_numpy(support).to(device), sl, torch.from_numpy(queries).to(device))
        method.train(was_training)
        return torch.unique(sl)[scores.argmax(1)].cpu().numpy()

    return predict
