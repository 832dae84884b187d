"""The Omniglot evaluation suite, applied alike to torch checkpoints, ONNX artifacts and baselines.

- Lake's runs: the 400 trials of `all_runs.zip` (20 runs × 20-way one-shot, within an alphabet).
- Episodes on `images_evaluation` (659 characters, 20 alphabets, no rotations), classes drawn across
  alphabets: 5/20-way × 1/5-shot, 5 queries per class, `n_episodes` each, seed 0, 95% CI over episodes.
- A run trained on the Vinyals split (`split = "vinyals"`) is measured on that split's test classes
  instead (the same episode settings; rotations are classes there). Lake's runs and `images_evaluation`
  share characters with its training classes, so they are left out for it.

Embedders are measured through an EmbedFn, episodic methods (`training.episodic`) through a PredictFn on
the same episodes. A method bound to one episode width (MAML's head) is measured at that width only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model import distances
from model.artifact import Artifact
from model.artifact import load as load_artifact
from model.distances import Distance
from model.preprocess import PreprocessSpec
from training import evaluate
from training.data.omniglot import load_lake_runs, load_omniglot, load_vinyals

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
    split: str = "lake",
    classifier: evaluate.Classifier | None = None,
    settings: Sequence[tuple[int, int]] = EPISODE_SETTINGS,
) -> dict[str, Any]:
    """Every protocol of this module for one EmbedFn; a JSON-ready dict of accuracies in [0, 1].
    classifier: an episode-level classifier over the embeddings instead of nearest prototype by
    `distance` (support-set fine-tuning); its protocols are labelled transductive. settings: as in
    `evaluate_protocols`."""
    return evaluate_protocols(
        spec,
        data_root,
        n_episodes,
        seed,
        split,
        embed=embed,
        distance=distance,
        classifier=classifier,
        settings=settings,
    )


def evaluate_protocols(
    spec: PreprocessSpec,
    data_root: Path,
    n_episodes: int = 1000,
    seed: int = 0,
    split: str = "lake",
    embed: evaluate.EmbedFn | None = None,
    distance: Distance | None = None,
    predict: evaluate.PredictFn | None = None,
    n_way: int | None = None,
    classifier: evaluate.Classifier | None = None,
    settings: Sequence[tuple[int, int]] = EPISODE_SETTINGS,
) -> dict[str, Any]:
    """Every protocol for an EmbedFn (with its distance) or an episodic PredictFn, on the protocols of
    `split` ("lake": Lake's runs + images_evaluation episodes; "vinyals": the Vinyals test classes).
    n_way: measure only episodes of this width (a method bound to it); None = every setting.
    classifier: with an EmbedFn, classifies each episode's query embeddings together (transductive: it
    sees the unlabelled queries), instead of nearest prototype; each protocol says so.
    settings: the (way, shot) episode settings to measure, a subset of EPISODE_SETTINGS; () = Lake's runs
    alone (split "lake"), the cheap measurement of an episodic method trained on the background set."""
    unknown = set(settings) - set(EPISODE_SETTINGS)
    if unknown:
        raise ValueError(f"episode settings {sorted(unknown)} are not among {EPISODE_SETTINGS}")
    if (embed is None or distance is None) == (predict is None):
        raise ValueError("give an embed function and its distance, or a predict function")
    if classifier is not None and predict is not None:
        raise ValueError("a classifier applies to an embed function, not to a predict function")
    lake_note = " — transductive (uses the run's 20 unlabelled queries)" if classifier is not None else ""
    if n_way is not None and n_way not in {way for way, _ in EPISODE_SETTINGS}:
        raise ValueError(f"a {n_way}-way model has no protocol here (episodes are {EPISODE_SETTINGS} way/shot)")
    out: dict[str, Any] = {}
    if split == "lake" and n_way in (None, 20):
        runs = load_lake_runs(data_root, spec)
        lake = (
            evaluate.one_shot_runs_predict(predict, runs)
            if predict is not None
            else evaluate.one_shot_runs(embed, runs, distance, classifier)  # type: ignore[arg-type]
        )
        out["lake_runs"] = {
            "protocol": "Lake et al. 2015 all_runs.zip: 20 runs × 20-way 1-shot within alphabet (400 trials)"
            + lake_note,
            "accuracy": lake.mean,
            "ci95": lake.ci95,
            "trials": lake.trials,
        }
    settings = [s for s in EPISODE_SETTINGS if s in settings and (n_way is None or s[0] == n_way)]
    if not settings:
        return out
    ev = load_omniglot(data_root, "evaluation", spec) if split == "lake" else load_vinyals(data_root, "test", spec)
    where = "images_evaluation" if split == "lake" else "Vinyals test split (rotations as classes)"
    emb = evaluate.embed_all(embed, ev.images) if predict is None else None
    for way, k_shot in settings:
        if predict is not None:
            acc = evaluate.episodes_predict(
                predict, ev.images, ev.labels, way, k_shot, QUERIES_PER_CLASS, n_episodes, seed
            )
        else:
            acc = evaluate.episodes(
                emb,  # type: ignore[arg-type]
                ev.labels,
                way,
                k_shot,
                QUERIES_PER_CLASS,
                n_episodes,
                distance,  # type: ignore[arg-type]
                seed,
                classifier=classifier,
            )
        note = (
            f" — transductive (uses the episode's {way * QUERIES_PER_CLASS} unlabelled queries)"
            if classifier is not None
            else ""
        )
        out[f"{way}way_{k_shot}shot"] = {
            "protocol": f"{where}, {way}-way {k_shot}-shot, {QUERIES_PER_CLASS} queries/class, "
            f"{n_episodes} episodes, seed {seed}{note}",
            "accuracy": acc.mean,
            "ci95": acc.ci95,
            "trials": acc.trials,
        }
    return out


def evaluate_artifact(
    artifact: Artifact, data_root: Path, n_episodes: int = 1000, classifier: evaluate.Classifier | None = None
) -> dict[str, Any]:
    """Every protocol for an artifact, by its card's distance or (transductive) by `classifier`."""
    return evaluate_embed(
        artifact.embed, artifact.spec, artifact.distance, data_root, n_episodes, classifier=classifier
    )


def evaluate_checkpoint(
    path: Path,
    data_root: Path,
    n_episodes: int = 1000,
    tta_shift: int = 0,
    settings: Sequence[tuple[int, int]] = EPISODE_SETTINGS,
    classifier: evaluate.Classifier | None = None,
) -> dict[str, Any]:
    """Every protocol of the run's split for a `best.pt`: the episodic method's own predictions, or its
    embedder's by the run's distance (or by `classifier`, support-set fine-tuning over its embeddings).
    settings: as in `evaluate_protocols`."""
    import torch

    from training.episodic import load_episodic, predict_fn
    from training.export import load_checkpoint_embedder
    from training.trainer import torch_embed_fn

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    split = ckpt["train_config"].get("split", "lake")
    if "episodic" in ckpt:  # the method's own predictions, even where it also exports an embedder
        if tta_shift:
            raise ValueError("test-time shifts apply to embedders, not to episodic methods")
        method, _ = load_episodic(path)
        predict = predict_fn(method, torch.device("cpu"))
        if classifier is not None:
            raise ValueError("a classifier applies to an embedder, not to an episodic method")
        return evaluate_protocols(
            spec, data_root, n_episodes, 0, split, predict=predict, n_way=method.n_way, settings=settings
        )
    embedder, ckpt = load_checkpoint_embedder(path, tta_shift)
    embed = torch_embed_fn(embedder, torch.device("cpu"))
    distance = distances.get(ckpt["distance"])
    return evaluate_embed(embed, spec, distance, data_root, n_episodes, 0, split, classifier, settings)


def evaluate_validation(checkpoint: Path, tta_shift: int = 0, n_episodes: int = 2000) -> dict[str, Any]:
    """The run's own validation protocol (held-out groups, within-group 20-way 1-shot) on more episodes:
    the place to choose inference options such as `tta_shift`, away from the test protocols."""
    import torch

    from training.config import TrainConfig
    from training.episodic import load_episodic, predict_fn
    from training.export import load_checkpoint_embedder
    from training.trainer import load_data, torch_embed_fn, validation_accuracy

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_saved(ckpt["train_config"])
    _, val = load_data(cfg)
    if val is None:
        raise ValueError(f"{checkpoint} was trained without held-out validation groups")
    if "episodic" in ckpt:
        if tta_shift:
            raise ValueError("test-time shifts apply to embedders, not to episodic methods")
        predict = predict_fn(load_episodic(checkpoint)[0], torch.device("cpu"))
        acc = validation_accuracy(None, val, cfg, None, n_episodes, seed=99, predict=predict)
    else:
        embedder, ckpt = load_checkpoint_embedder(checkpoint, tta_shift)
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
