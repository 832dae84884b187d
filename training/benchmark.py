"""The Omniglot evaluation suite, applied alike to torch checkpoints, ONNX artifacts and baselines.

- Lake's runs: the 400 trials of `all_runs.zip` (20 runs × 20-way one-shot, within an alphabet).
- Episodes on `images_evaluation` (659 characters, 20 alphabets, no rotations), classes drawn across
  alphabets: 5/20-way × 1/5-shot, 5 queries per class, `n_episodes` each, seed 0, 95% CI over episodes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from model import distances
from model.artifact import Artifact
from model.artifact import load as load_artifact
from model.distances import Distance
from model.preprocess import PreprocessSpec
from training import evaluate
from training.data.omniglot import load_lake_runs, load_omniglot

LOG = logging.getLogger(__name__)

EPISODE_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
QUERIES_PER_CLASS = 5


def evaluate_embed(
    embed: evaluate.EmbedFn,
    spec: PreprocessSpec,
    distance: Distance,
    data_root: Path,
    n_episodes: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every protocol of this module for one EmbedFn; a JSON-ready dict of accuracies in [0, 1]."""
    lake = evaluate.one_shot_runs(embed, load_lake_runs(data_root, spec), distance)
    out: dict[str, Any] = {
        "lake_runs": {
            "protocol": "Lake et al. 2015 all_runs.zip: 20 runs × 20-way 1-shot within alphabet (400 trials)",
            "accuracy": lake.mean,
            "ci95": lake.ci95,
            "trials": lake.trials,
        }
    }
    ev = load_omniglot(data_root, "evaluation", spec)
    emb = evaluate.embed_all(embed, ev.images)
    for n_way, k_shot in EPISODE_SETTINGS:
        acc = evaluate.episodes(emb, ev.labels, n_way, k_shot, QUERIES_PER_CLASS, n_episodes, distance, seed)
        out[f"{n_way}way_{k_shot}shot"] = {
            "protocol": f"images_evaluation, {n_way}-way {k_shot}-shot, {QUERIES_PER_CLASS} queries/class, "
            f"{n_episodes} episodes, seed {seed}",
            "accuracy": acc.mean,
            "ci95": acc.ci95,
            "trials": acc.trials,
        }
    return out


def evaluate_artifact(artifact: Artifact, data_root: Path, n_episodes: int = 1000) -> dict[str, Any]:
    return evaluate_embed(artifact.embed, artifact.spec, artifact.distance, data_root, n_episodes)


def evaluate_checkpoint(path: Path, data_root: Path, n_episodes: int = 1000, tta_shift: int = 0) -> dict[str, Any]:
    import torch

    from training.export import load_checkpoint_embedder
    from training.trainer import torch_embed_fn

    embedder, ckpt = load_checkpoint_embedder(path, tta_shift)
    embed = torch_embed_fn(embedder, torch.device("cpu"))
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    return evaluate_embed(embed, spec, distances.get(ckpt["distance"]), data_root, n_episodes)


def evaluate_validation(checkpoint: Path, tta_shift: int = 0, n_episodes: int = 2000) -> dict[str, Any]:
    """The run's own validation protocol (held-out groups, within-group 20-way 1-shot) on more episodes:
    the place to choose inference options such as `tta_shift`, away from the test protocols."""
    import torch

    from training.config import TrainConfig
    from training.export import load_checkpoint_embedder
    from training.trainer import load_data, torch_embed_fn, validation_accuracy

    embedder, ckpt = load_checkpoint_embedder(checkpoint, tta_shift)
    cfg = TrainConfig.from_saved(ckpt["train_config"])
    _, val = load_data(cfg)
    if val is None:
        raise ValueError(f"{checkpoint} was trained without held-out validation groups")
    embed = torch_embed_fn(embedder, torch.device("cpu"))
    acc = validation_accuracy(embed, val, cfg, ckpt["distance"], n_episodes, seed=99)
    return {"validation": {"accuracy": acc.mean, "ci95": acc.ci95, "trials": acc.trials}}


def evaluate_pixels(data_root: Path, n_episodes: int = 1000, size: int = 28) -> dict[str, Any]:
    """Raw-pixel 1-nearest-neighbour (Euclidean) at `size`×`size`: the floor every method must clear."""
    spec = PreprocessSpec(size=(size, size))
    return evaluate_embed(evaluate.pixel_embed, spec, distances.get("euclidean"), data_root, n_episodes)


def evaluate_source(
    checkpoint: Path | None, artifact: Path | None, pixels: bool, data_root: Path, n_episodes: int, tta_shift: int = 0
) -> dict[str, Any]:
    if checkpoint is not None:
        return evaluate_checkpoint(checkpoint, data_root, n_episodes, tta_shift)
    if artifact is not None:
        return evaluate_artifact(load_artifact(artifact), data_root, n_episodes)
    if pixels:
        return evaluate_pixels(data_root, n_episodes)
    raise ValueError("give a checkpoint, an artifact, or pixels=True")


def format_results(results: dict[str, Any]) -> str:
    lines = [f"{'protocol':<14} {'accuracy %':>16}  trials"]
    for key, r in results.items():
        lines.append(f"{key:<14} {100 * r['accuracy']:>8.2f} ± {100 * r['ci95']:<5.2f}  {r['trials']}")
    return "\n".join(lines)
