"""Support-set fine-tuning of a pretrained embedder (Dhillon, Chaudhari, Ravichandran & Soatto, ICLR 2020,
"A Baseline for Few-Shot Image Classification"), and the frozen prototype classifier it is compared with.

A function of (embedder, support, queries) alone, with no training-run state, so that anything holding
an embedder (an evaluation loop, later the service for a gallery) can call it.

Classifier: logits = scale · cos(z, w_c), z the embedding of an image, w_c one weight vector per class,
initialised at the normalised class prototypes (the mean of the support's normalised embeddings). With
zero steps this is exactly nearest-prototype classification by cosine: the frozen baseline.
`metric="euclidean"` is the same procedure for an embedder trained with Euclidean prototypes (Snell et al.):
logits = −‖z − w_c‖², w_c initialised at the plain class means, so that zero steps is exactly
nearest-prototype classification by Euclidean distance (the card distance of such an artifact).
Fine-tuning minimises, with Adam, CE(support) + entropy_weight · H(softmax(query logits)), the mean
Shannon entropy of the query predictions (transductive: the unlabelled queries of the episode shape the
decision boundary, pushing it away from where queries lie densely).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.episodic import class_onehot, episode_targets

METRICS = ("cosine", "euclidean")


def cosine_logits(z: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """N×D embeddings, C×D class weights -> N×C scale · cosine."""
    return scale * F.normalize(z, dim=1) @ F.normalize(weight, dim=1).T


def euclidean_logits(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """N×D embeddings, C×D class weights -> N×C −‖z − w‖² (the prototypical-network logits).

    Computed from differences, not the |z|² + |w|² − 2z·w expansion, so that a near-tie is ranked as
    `model.distances` ranks it (the expansion cancels in float32).
    """
    return -(z[:, None, :] - weight[None, :, :]).pow(2).sum(-1)


def head_logits(z: torch.Tensor, weight: torch.Tensor, metric: str, scale: float) -> torch.Tensor:
    """The classifier of `metric` ("cosine": scale · cos; "euclidean": −‖z − w‖², `scale` unused): N×C."""
    return cosine_logits(z, weight, scale) if metric == "cosine" else euclidean_logits(z, weight)


def finetune(
    embed_module: nn.Module,
    support_images: torch.Tensor,
    support_labels: torch.Tensor,
    queries: torch.Tensor,
    steps: int = 25,
    lr: float = 5e-3,
    entropy_weight: float = 1.0,
    scale: float = 10.0,
    train_embedder: bool = True,
    embedder_lr: float | None = None,
    metric: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine-tune a cosine classifier (and, if `train_embedder`, a copy of the embedder) on one episode.

    embed_module: images -> N×D embeddings; never modified (a deep copy is tuned). It runs in eval mode
      throughout: batch-norm keeps its pretrained statistics, which a support set of a few images would
      only make noisy.
    support_images: S×C×H×W; support_labels: int64 S (N distinct ids); queries: Q×C×H×W; same device.
    steps: Adam steps (0 = the frozen prototype classifier). lr: the classifier's rate; embedder_lr: the
      embedder's (default lr). entropy_weight: the weight of the queries' mean prediction entropy.
    metric: "cosine" (scale · cos, weights at the normalised prototypes) or "euclidean" (−‖z − w‖², weights
      at the class means; `scale` unused).
    Returns (Q×C query logits, C class ids): column j is class `classes[j]`, `torch.unique` order.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    logits, classes = finetune_path(
        embed_module,
        support_images,
        support_labels,
        queries,
        [steps],
        lr,
        entropy_weight,
        scale,
        train_embedder,
        embedder_lr,
        metric,
    )
    return logits[0], classes


def finetune_path(
    embed_module: nn.Module,
    support_images: torch.Tensor,
    support_labels: torch.Tensor,
    queries: torch.Tensor,
    steps: Sequence[int],
    lr: float = 5e-3,
    entropy_weight: float = 1.0,
    scale: float = 10.0,
    train_embedder: bool = True,
    embedder_lr: float | None = None,
    metric: str = "cosine",
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """`finetune` read at several step counts of one run: ([Q×C query logits after each count of `steps`,
    in its order], C class ids). One run of max(steps) Adam steps; Adam is deterministic, so the logits
    after t steps are those of `finetune(..., steps=t)`. The other arguments are `finetune`'s.
    """
    if not steps or min(steps) < 0:
        raise ValueError(f"steps must be one or more counts >= 0, got {list(steps)}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    model = copy.deepcopy(embed_module).eval()
    classes, targets = episode_targets(support_labels, support_labels)
    with torch.no_grad():
        zs = model(support_images).float()
        if metric == "cosine":
            zs = F.normalize(zs, dim=1)
        onehot = class_onehot(support_labels, zs.dtype)
        protos = onehot @ zs / onehot.sum(1, keepdim=True)
        weight = nn.Parameter(F.normalize(protos, dim=1) if metric == "cosine" else protos)
    groups: list[dict] = [{"params": [weight], "lr": lr}]
    if train_embedder:
        groups.append({"params": list(model.parameters()), "lr": embedder_lr or lr})
    else:
        model.requires_grad_(False)
        with torch.no_grad():
            zq_frozen = model(queries).float()
    opt = torch.optim.Adam(groups)
    read: dict[int, torch.Tensor] = {}

    def query_logits() -> torch.Tensor:
        with torch.no_grad():
            return head_logits(model(queries).float(), weight, metric, scale)

    if 0 in steps:
        read[0] = query_logits()
    with torch.enable_grad():  # callers may evaluate under no_grad
        for t in range(1, max(steps) + 1):
            if train_embedder:
                zs, zq = model(support_images).float(), model(queries).float()
            else:
                zq = zq_frozen
            support_loss = F.cross_entropy(head_logits(zs, weight, metric, scale), targets)
            lq = head_logits(zq, weight, metric, scale)
            entropy = -(lq.softmax(1) * lq.log_softmax(1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            (support_loss + entropy_weight * entropy).backward()
            opt.step()
            if t in steps:
                read[t] = query_logits()
    return [read[t] for t in steps], classes


def prototype_logits(
    embed_module: nn.Module,
    support_images: torch.Tensor,
    support_labels: torch.Tensor,
    queries: torch.Tensor,
    scale: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen baseline: cosine nearest-prototype logits (Q×C, C class ids); `finetune` with 0 steps."""
    return finetune(embed_module, support_images, support_labels, queries, steps=0, scale=scale)


def finetune_classify(
    support: np.ndarray,
    support_labels: np.ndarray,
    queries: np.ndarray,
    steps: int,
    lr: float,
    entropy_weight: float,
    metric: str = "cosine",
    scale: float = 10.0,
) -> np.ndarray:
    """Classifier-only fine-tuning on frozen embeddings, all queries at once (transductive): Q labels.

    support: S×D embeddings, support_labels: int S, queries: Q×D embeddings (NumPy, e.g. from an ONNX
    artifact's `embed`). The same algorithm as `finetune` (it is called, with an identity embedder over
    the precomputed embeddings and `train_embedder=False`); with `steps=0` it is nearest-prototype
    classification by `metric`. An `evaluate.Classifier`.
    """
    labels = torch.from_numpy(np.asarray(support_labels, dtype=np.int64))
    logits, classes = finetune(
        nn.Identity(),
        torch.from_numpy(np.asarray(support, dtype=np.float32)),
        labels,
        torch.from_numpy(np.asarray(queries, dtype=np.float32)),
        steps=steps,
        lr=lr,
        entropy_weight=entropy_weight,
        scale=scale,
        train_embedder=False,
        metric=metric,
    )
    return classes[logits.argmax(1)].numpy()


def finetune_classify_path(
    support: np.ndarray,
    support_labels: np.ndarray,
    queries: np.ndarray,
    steps: Sequence[int],
    lr: float,
    entropy_weight: float,
    metric: str = "cosine",
    scale: float = 10.0,
) -> list[np.ndarray]:
    """`finetune_classify` read at several step counts of one run (`finetune_path`): one Q-label array per
    count of `steps`, each equal to `finetune_classify(..., steps=t)` (a hyperparameter grid's shortcut)."""
    logits, classes = finetune_path(
        nn.Identity(),
        torch.from_numpy(np.asarray(support, dtype=np.float32)),
        torch.from_numpy(np.asarray(support_labels, dtype=np.int64)),
        torch.from_numpy(np.asarray(queries, dtype=np.float32)),
        steps,
        lr,
        entropy_weight,
        scale,
        train_embedder=False,
        metric=metric,
    )
    return [classes[x.argmax(1)].numpy() for x in logits]


def embedding_classifier(
    steps: int, lr: float, entropy_weight: float, metric: str = "cosine"
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """`finetune_classify` with these settings bound: (support S×D, labels S, queries Q×D) -> Q labels."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return functools.partial(finetune_classify, steps=steps, lr=lr, entropy_weight=entropy_weight, metric=metric)
