"""Few-shot evaluation, written once and used for torch checkpoints, ONNX artifacts and baselines alike.

Embedding models are measured through an `EmbedFn`: float32 N×C×H×W in [0, 1] -> N×D embeddings (NumPy).
A torch net, an ONNX Runtime session (`model.artifact.Artifact.embed`) and the raw-pixel baseline are all
EmbedFns, so the same protocol code measures each of them. Methods that read a whole episode (matching
nets with context embeddings, relation nets, MAML; `training.episodic`) are measured through a `PredictFn`
on the same episodes (the same seed draws the same episodes in `episodes` and `episodes_predict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from model.distances import Distance

EmbedFn = Callable[[np.ndarray], np.ndarray]
# (support float32 S×C×H×W, support labels int S, queries float32 Q×C×H×W) -> Q predicted labels.
PredictFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# (support embeddings S×D, support labels int S, query embeddings Q×D) -> Q predicted labels: a classifier
# over frozen embeddings that sees all of an episode's queries at once (`training.finetune.finetune_classify`).
Classifier = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


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


def one_shot_runs(embed: EmbedFn, runs: Sequence, distance: Distance, classifier: Classifier | None = None) -> Accuracy:
    """Accuracy over every trial of Lake-style runs (objects with .support, .queries, .answers).

    classifier: replaces nearest-prototype `classify` by `distance`; it gets a run's support embeddings and
    all of its query embeddings at once. The CI is over runs (each run's accuracy is one sample), as Lake
    et al. report 20 runs.
    """

    def predict(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if classifier is not None:
            return classifier(embed(support), support_labels, embed(queries))
        return classify(embed(support), support_labels, embed(queries), distance)

    return one_shot_runs_predict(predict, runs)


def one_shot_runs_predict(predict: PredictFn, runs: Sequence) -> Accuracy:
    """`one_shot_runs` for an episodic predictor: each run's queries are classified together against its
    support (support labels are the indices 0..N-1, as `answers` are)."""
    per_run, correct, total = [], 0, 0
    for run in runs:
        pred = predict(run.support, np.arange(len(run.support)), run.queries)
        hits = int((pred == run.answers).sum())
        per_run.append(hits / len(run.answers))
        correct, total = correct + hits, total + len(run.answers)
    _, ci = mean_ci95(per_run)
    return Accuracy(mean=correct / total, ci95=ci, trials=total)


def draw_episodes(
    labels: np.ndarray,
    n_way: int,
    k_shot: int,
    n_query: int,
    n_episodes: int,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """`n_episodes` N-way K-shot episodes drawn with `seed`: (support indices, support labels, query
    indices, query labels), each class's items consecutive. groups: if given, each episode's classes come
    from one group (within-alphabet, as Lake's runs)."""
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
    for _ in range(n_episodes):
        pool = pools[rng.integers(len(pools))]
        chosen = rng.choice(pool, size=n_way, replace=False)
        s_idx, s_lab, q_idx, q_lab = [], [], [], []
        for c in chosen:
            pick = rng.choice(members[int(c)], size=k_shot + n_query, replace=False)
            s_idx += list(pick[:k_shot])
            s_lab += [c] * k_shot
            q_idx += list(pick[k_shot:])
            q_lab += [c] * n_query
        yield np.array(s_idx), np.array(s_lab), np.array(q_idx), np.array(q_lab)


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
    classifier: Classifier | None = None,
) -> Accuracy:
    """N-way K-shot accuracy over `n_episodes` episodes drawn with `seed` from precomputed embeddings.

    embeddings: N×D, labels: N. groups: if given, each episode's classes come from one group
    (within-alphabet, as Lake's runs). classifier: replaces nearest-prototype `classify` by `distance`
    (it gets each episode's support and all of its queries; the same episodes for the same seed).
    The CI is over episodes.
    """

    def predict(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if classifier is not None:
            return classifier(support, support_labels, queries)
        return classify(support, support_labels, queries, distance)

    accs = [
        (predict(embeddings[s_idx], s_lab, embeddings[q_idx]) == q_lab).mean()
        for s_idx, s_lab, q_idx, q_lab in draw_episodes(labels, n_way, k_shot, n_query, n_episodes, seed, groups)
    ]
    mean, ci = mean_ci95(accs)
    return Accuracy(mean=mean, ci95=ci, trials=n_episodes)


def episodes_predict(
    predict: PredictFn,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    n_way: int,
    k_shot: int,
    n_query: int,
    n_episodes: int,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Accuracy:
    """`episodes` for an episodic predictor, on uint8 N×C×H×W images (an ImageSet's): the same episodes
    for the same seed. Each episode's queries are predicted together (transductive methods see them all)."""
    accs = []
    for s_idx, s_lab, q_idx, q_lab in draw_episodes(labels, n_way, k_shot, n_query, n_episodes, seed, groups):
        support = images_uint8[s_idx].astype(np.float32) / 255.0
        queries = images_uint8[q_idx].astype(np.float32) / 255.0
        accs.append((predict(support, s_lab, queries) == q_lab).mean())
    mean, ci = mean_ci95(accs)
    return Accuracy(mean=mean, ci95=ci, trials=n_episodes)


def embed_all(embed: EmbedFn, images_uint8: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Embed a uint8 N×C×H×W set (an ImageSet's images) in batches."""
    out = [embed(images_uint8[i : i + batch].astype(np.float32) / 255.0) for i in range(0, len(images_uint8), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
