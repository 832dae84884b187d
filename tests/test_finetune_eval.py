"""Support-set fine-tuning as an evaluation path (`evaluate --artifact --finetune`), on synthetic embeddings:
0 steps is the plain nearest-prototype evaluation, and the fine-tuned path runs on the same episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import distances
from training.cli import main
from training.data.omniglot import OneShotRun
from training.evaluate import classify, episodes, one_shot_runs
from training.finetune import embedding_classifier, finetune, finetune_classify, finetune_classify_path


def noisy_embeddings(n_classes: int = 12, per_class: int = 6, dim: int = 16, noise: float = 1.5, seed: int = 0):
    """(N×dim embeddings, N labels, N groups): Gaussian clusters noisy enough that nearest prototype errs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2.0
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32)
    return emb, labels, labels % 2  # two "alphabets"


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_zero_steps_predicts_exactly_the_nearest_prototype(metric: str) -> None:
    emb, labels, _ = noisy_embeddings()
    rng = np.random.default_rng(1)
    for _ in range(20):
        support = rng.choice(len(emb), size=12, replace=False)
        queries = np.setdiff1d(np.arange(len(emb)), support)
        expected = classify(emb[support], labels[support], emb[queries], distances.get(metric))
        got = finetune_classify(emb[support], labels[support], emb[queries], 0, 0.0, 0.0, metric)
        np.testing.assert_array_equal(got, expected)


def test_euclidean_head_at_zero_steps_gives_negative_squared_distances_to_class_means() -> None:
    emb, labels, _ = noisy_embeddings()
    s, q = torch.from_numpy(emb[:30]), torch.from_numpy(emb[30:])
    sl = torch.from_numpy(labels[:30])
    logits, classes = finetune(torch.nn.Identity(), s, sl, q, steps=0, metric="euclidean")
    means = torch.stack([s[sl == c].mean(0) for c in classes])
    torch.testing.assert_close(logits, -torch.cdist(q, means).pow(2), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="metric"):
        finetune(torch.nn.Identity(), s, sl, q, steps=0, metric="l1")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_episodes_with_a_zero_step_classifier_equal_the_plain_protocol(metric: str) -> None:
    emb, labels, groups = noisy_embeddings()
    dist = distances.get(metric)
    plain = episodes(emb, labels, 5, 1, 1, 60, dist, seed=3, groups=groups)
    zero = episodes(
        emb, labels, 5, 1, 1, 60, dist, seed=3, groups=groups, classifier=embedding_classifier(0, 0, 0, metric)
    )
    assert zero == plain
    assert plain.mean < 1.0  # the noise makes it a real test


def test_lake_style_runs_with_fine_tuning() -> None:
    """20-way runs, one query per class (Lake's layout): 0 steps equals plain; fine-tuning predicts every query
    of a run at once and yields a valid accuracy over all trials."""
    emb, _, _ = noisy_embeddings(n_classes=20, per_class=2)
    runs = []
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(20)
        runs.append(OneShotRun(support=emb[0::2], queries=emb[1::2][perm], answers=perm))
    identity = lambda x: x  # noqa: E731 — the "images" are embeddings already
    euclid = distances.get("euclidean")
    plain = one_shot_runs(identity, runs, euclid)
    assert one_shot_runs(identity, runs, euclid, embedding_classifier(0, 0, 0, "euclidean")) == plain
    seen: list[int] = []

    def spy(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        seen.append(len(queries))
        return embedding_classifier(10, 1e-2, 0.1, "euclidean")(support, support_labels, queries)

    tuned = one_shot_runs(identity, runs, euclid, spy)
    assert seen == [20, 20, 20]  # transductive: a run's 20 queries together
    assert tuned.trials == 60
    assert 0.0 <= tuned.mean <= 1.0


def test_cli_refuses_finetune_without_an_artifact() -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--pixels", "--finetune"])
    with pytest.raises(SystemExit):
        main(["evaluate", "--artifact", "x", "--finetune", "--finetune-steps", "-1"])


def test_reading_one_run_at_several_step_counts_equals_separate_runs() -> None:
    """The validation grid's shortcut: labels after t steps of a longer run are those of a t-step run."""
    emb, labels, _ = noisy_embeddings()
    s, q = emb[:24], emb[24:]
    path = finetune_classify_path(s, labels[:24], q, [7, 0, 3], 5e-2, 1.0, "euclidean")
    for t, got in zip([7, 0, 3], path, strict=True):
        np.testing.assert_array_equal(got, finetune_classify(s, labels[:24], q, t, 5e-2, 1.0, "euclidean"))
    with pytest.raises(ValueError, match="steps"):
        finetune_classify_path(s, labels[:24], q, [], 5e-2, 1.0, "euclidean")
