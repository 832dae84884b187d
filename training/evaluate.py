"""Few-shot evaluation, written once and used for torch checkpoints, ONNX artifacts and baselines alike.

Everything takes an `EmbedFn`: float32 N×C×H×W in [0, 1] -> N×D embeddings (NumPy). A torch net, an
ONNX Runtime session (`model.artifact.Artifact.embed`) and the raw-pixel baseline are all EmbedFns, so
the same protocol code measures each of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model.distances import Distance

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Accuracy:
    """mean accuracy in [0, 1], the half-width of its 95% confidence interval, and the trial count."""

    mean: float
    ci95: float
    trials: int

    def percent(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f}"


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 1.96·s/√n (normal approximation), as few-shot papers report episode accuracies."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(len(v)))


def pixel_embed(images: np.ndarray) -> np.ndarray:
    """The raw-pixel baseline: each image flattened (N×C·H·W)."""
    return images.reshape(len(images), -1).astype(np.float32)


def classify(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray, distance: Distance) -> np.ndarray:
    """Nearest-prototype labels for queries (Q×D); prototypes are per-label means of support (S×D).

    With one support image per class this is 1-nearest-neighbour. Cosine prototypes average unit vectors.
    """
    if distance.name == "cosine":
        support = support / np.maximum(np.linalg.norm(support, axis=1, keepdims=True), 1e-12)
    classes = np.unique(support_labels)
    protos = np.stack([support[support_labels == c].mean(0) for c in classes])
    return classes[distance.nearest(distance.pairwise(queries, protos), axis=1)]


def one_shot_runs(embed: EmbedFn, runs: Sequence, distance: Distance) -> Accuracy:
    """Accuracy over every trial of Lake-style runs (objects with .support, .queries, .answers).

    The CI is over runs (each run's accuracy is one sample), as Lake et al. report 20 runs.
    """
    per_run, correct, total = [], 0, 0
    for run in runs:
        s, q = embed(run.support), embed(run.queries)
        pred = classify(s, np.arange(len(s)), q, distance)
        hits = int((pred == run.answers).sum())
        per_run.append(hits / len(run.answers))
        correct, total = correct + hits, total + len(run.answers)
    _, ci = mean_ci95(per_run)
    return Accuracy(mean=correct / total, ci95=ci, trials=total)


def episodes(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_way: int,
    k_shot: int,
    n_query: int,
    n_episodes: int,
    distance: Distance,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Accuracy:
    """N-way K-shot accuracy over `n_episodes` episodes drawn with `seed` from precomputed embeddings.

    embeddings: N×D, labels: N. groups: if given, each episode's classes come from one group
    (within-alphabet, as Lake's runs). The CI is over episodes.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    usable = np.array([c for c in classes if len(members[int(c)]) >= k_shot + n_query])
    pools = [usable]
    if groups is not None:
        cg = {int(c): int(groups[members[int(c)][0]]) for c in usable}
        by_group = [usable[np.array([cg[int(c)] == g for c in usable], dtype=bool)] for g in np.unique(groups)]
        pools = [p for p in by_group if len(p) >= n_way]
    if not pools or all(len(p) < n_way for p in pools):
        raise ValueError(f"not enough classes with {k_shot + n_query} images for {n_way}-way episodes")
    accs = np.empty(n_episodes)
    for e in range(n_episodes):
        pool = pools[rng.integers(len(pools))]
        chosen = rng.choice(pool, size=n_way, replace=False)
        s_idx, s_lab, q_idx, q_lab = [], [], [], []
        for c in chosen:
            pick = rng.choice(members[int(c)], size=k_shot + n_query, replace=False)
            s_idx += list(pick[:k_shot])
            s_lab += [c] * k_shot
            q_idx += list(pick[k_shot:])
            q_lab += [c] * n_query
        pred = classify(embeddings[s_idx], np.array(s_lab), embeddings[q_idx], distance)
        accs[e] = (pred == np.array(q_lab)).mean()
    mean, ci = mean_ci95(accs)
    return Accuracy(mean=mean, ci95=ci, trials=n_episodes)


def embed_all(embed: EmbedFn, images_uint8: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Embed a uint8 N×C×H×W set (an ImageSet's images) in batches."""
    out = [embed(images_uint8[i : i + batch].astype(np.float32) / 255.0) for i in range(0, len(images_uint8), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
