"""The episodic few-shot methods (matching nets with and without FCE, relation net, MAML and first-order
MAML) and support-set fine-tuning, on tiny synthetic tasks whose answer is known by construction, plus
their path through config, sampler, trainer, evaluation and export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model import distances
from training.config import EPISODIC_OBJECTIVES, resolve
from training.episodic import (
    EpisodicTrainModule,
    ExportRefused,
    build_episodic_method,
    episode_targets,
    load_episodic,
    predict_fn,
)
from training.evaluate import episodes, episodes_predict, one_shot_runs, one_shot_runs_predict, pixel_embed
from training.export import export_run
from training.finetune import finetune, prototype_logits
from training.samplers import EpisodeSampler
from training.trainer import train

SIZE = 28


def image_episode(
    g: torch.Generator, n_way: int = 5, k_shot: int = 1, q_query: int = 5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fresh N-way episode in the sampler's layout: each class a random ±1 pattern on a coarse 7×7 grid
    (4×4-pixel cells) at amplitude 0.2, each image that pattern plus pixel noise of std 0.3. New classes in
    every episode, so a method can only succeed by learning to compare (to look at the coarse structure
    through the noise), not by memorising classes. Returns (support, support labels, query, query labels).
    """
    cells = (torch.rand(n_way, 1, 7, 7, generator=g) > 0.5).float() * 2 - 1
    patterns = cells.repeat_interleave(SIZE // 7, 2).repeat_interleave(SIZE // 7, 3)
    labels = torch.arange(n_way).repeat_interleave(k_shot + q_query).view(n_way, k_shot + q_query)
    x = 0.5 + 0.2 * patterns[labels.flatten()] + 0.3 * torch.randn(len(labels.flatten()), 1, SIZE, SIZE, generator=g)
    x = x.view(n_way, k_shot + q_query, 1, SIZE, SIZE)
    support, query = x[:, :k_shot].reshape(-1, 1, SIZE, SIZE), x[:, k_shot:].reshape(-1, 1, SIZE, SIZE)
    return support, labels[:, :k_shot].flatten(), query, labels[:, k_shot:].flatten()


def held_out_accuracy(method: nn.Module, episodes_: int = 20, seed: int = 99) -> float:
    """Mean query accuracy of `method.predict` in eval mode over fresh episodes (same ones for every call)."""
    g = torch.Generator().manual_seed(seed)
    method.eval()
    correct = 0.0
    for _ in range(episodes_):
        s, sl, q, ql = image_episode(g)
        with torch.no_grad():
            correct += (method.predict(s, sl, q).argmax(1) == ql).float().mean().item()
    method.train()
    return correct / episodes_


def method_config(objective: str, **over: object):
    return resolve(
        overrides={"objective": objective, "n_way": 5, "val_way": 5, "k_shot": 1, "widths": "8,8,8,8", **over}
    )


@pytest.mark.parametrize(
    ("objective", "lr"),
    [("matching", 1e-2), ("matching_fce", 3e-3), ("relation", 1e-2), ("maml", 3e-3), ("fomaml", 3e-3)],
)
def test_each_method_learns_a_synthetic_episodic_task(objective: str, lr: float) -> None:
    torch.manual_seed(0)
    method = build_episodic_method(method_config(objective))
    before = held_out_accuracy(method)
    opt = torch.optim.Adam(method.parameters(), lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(80):
        loss, _ = method.loss(*image_episode(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_accuracy(method)
    # 5-way: chance is 0.2. Trained, every method clears 0.7 on new classes (measured 0.75-1.0).
    assert after > 0.65, (before, after)
    assert after > before + 0.2, (before, after)


def test_maml_second_order_differs_from_first_order_only_in_the_outer_gradient() -> None:
    torch.manual_seed(0)
    second = build_episodic_method(method_config("maml"))
    first = build_episodic_method(method_config("fomaml"))
    first.load_state_dict(second.state_dict())
    episode = image_episode(torch.Generator().manual_seed(3))
    grads = []
    for method in (second, first):
        loss, _ = method.loss(*episode)
        grads.append(torch.autograd.grad(loss, list(method.parameters())))
        # Predictions are the same function of the weights for both: the variants differ in training only.
    torch.testing.assert_close(second.predict(*episode[:3]), first.predict(*episode[:3]))
    differs = [not torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True)]
    assert any(differs)  # the second-order term is there...
    cos = nn.functional.cosine_similarity(
        torch.cat([a.flatten() for a in grads[0]]), torch.cat([b.flatten() for b in grads[1]]), 0
    )
    assert cos > 0.5  # ...and first order approximates it


def test_maml_inner_loop_leaves_the_parameters_alone_and_needs_its_width() -> None:
    torch.manual_seed(0)
    method = build_episodic_method(method_config("maml", inner_steps=2, inner_steps_eval=4))
    before = {k: v.clone() for k, v in method.state_dict().items()}
    s, sl, q, _ = image_episode(torch.Generator().manual_seed(0))
    with torch.no_grad():  # evaluation under no_grad still adapts (MAML enables its own gradients)
        adapted = method.predict(s, sl, q)
    params = dict(method.net.named_parameters())
    plain = torch.func.functional_call(method.net, params, (q,))
    assert not torch.allclose(adapted, plain)
    for k, v in method.state_dict().items():
        torch.testing.assert_close(v, before[k])
    s3, sl3, q3, _ = image_episode(torch.Generator().manual_seed(0), n_way=3)
    with pytest.raises(ValueError, match="5-way head"):
        method.predict(s3, sl3, q3)


def test_maml_batch_norm_uses_batch_statistics_at_test_time() -> None:
    """Transductive, as the paper: a query's prediction depends on the other queries of its batch."""
    torch.manual_seed(0)
    method = build_episodic_method(method_config("maml")).eval()
    s, sl, q, _ = image_episode(torch.Generator().manual_seed(0))
    together = method.predict(s, sl, q)[:2]
    alone = method.predict(s, sl, q[:2])
    assert not torch.allclose(together, alone)
    assert not any(isinstance(b, torch.Tensor) and b.numel() > 1 for b in method.buffers())  # no running stats


def test_predict_columns_follow_sorted_support_labels() -> None:
    """Arbitrary label ids: column j is class unique(support_labels)[j] and predict_fn maps back to ids."""
    torch.manual_seed(0)
    method = build_episodic_method(method_config("matching")).eval()  # predict_fn evaluates in eval mode
    s, sl, q, ql = image_episode(torch.Generator().manual_seed(0))
    ids = torch.tensor([42, 7, 13, 99, 5])
    scores = method.predict(s, ids[sl], q)
    classes, targets = episode_targets(ids[sl], ids[ql])
    assert classes.tolist() == [5, 7, 13, 42, 99]
    assert (classes[targets] == ids[ql]).all()
    labels = predict_fn(method, torch.device("cpu"))(s.numpy(), ids[sl].numpy(), q.numpy())
    assert (labels == classes[scores.argmax(1)].numpy()).all()
    with pytest.raises(ValueError, match="support labels"):
        episode_targets(ids[sl], torch.tensor([1000]))


def test_matching_with_one_shot_is_cosine_nearest_neighbour() -> None:
    torch.manual_seed(0)
    method = build_episodic_method(method_config("matching")).eval()
    s, sl, q, _ = image_episode(torch.Generator().manual_seed(0))
    with torch.no_grad():
        zs, zq = method.embedder(s), method.embedder(q)
        nearest = (zq @ zs.T).argmax(1)  # unit vectors: the embedder normalises
        assert (method.predict(s, sl, q).argmax(1) == sl[nearest]).all()


def test_train_module_splits_a_meta_batch_in_the_sampler_layout() -> None:
    labels = np.repeat(np.arange(10), 6)
    sampler = EpisodeSampler(labels, n_way=3, k_shot=2, q_query=1, seed=0, episodes=2)
    batch = sampler.batch(5)
    assert len(batch) == sampler.batch_size == 2 * 3 * 3
    single = EpisodeSampler(labels, n_way=3, k_shot=2, q_query=1, seed=0).batch(5)
    assert (batch[:9] == single).all()  # one episode per batch draws what it always drew
    seen: list[tuple[torch.Tensor, ...]] = []

    class Recorder(nn.Module):
        def loss(self, *episode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append(episode)
            return torch.tensor(float(len(seen))), torch.tensor(1.0)

    module = EpisodicTrainModule(Recorder(), n_way=3, k_shot=2, q_query=1, episodes=2)  # type: ignore[arg-type]
    y = torch.from_numpy(labels[batch])
    loss, acc = module(torch.zeros(18, 1, 2, 2), y)
    assert loss.item() == 1.5  # the mean over the two episodes
    assert acc.item() == 1.0
    for e, (_, sl, _, ql) in enumerate(seen):
        assert sl.tolist() == y[9 * e : 9 * e + 6].tolist()
        assert ql.tolist() == y[9 * e + 6 : 9 * e + 9].tolist()
        assert set(ql.tolist()) == set(sl.tolist())


# --- fine-tuning


def nuisance_task(seed: int, n_way: int = 5, k_shot: int = 5, n_query: int = 10, dim: int = 8):
    """Classes separable in `dim` signal dimensions, but every sample also carries a large random value
    along one nuisance input dimension that the (pretrained) embedder maps with a large gain. Frozen
    cosine features point mostly along the nuisance: prototype matching is near chance. The support set
    shows that the nuisance varies within classes, which fine-tuning can learn to ignore."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_way, dim, generator=g)
    labels = torch.arange(n_way).repeat_interleave(k_shot + n_query).view(n_way, -1)
    signal = means[labels.flatten()] + 0.3 * torch.randn(labels.numel(), dim, generator=g)
    nuisance = 10.0 * torch.randn(labels.numel(), 1, generator=g)
    x = torch.cat([signal, nuisance], 1).view(n_way, k_shot + n_query, dim + 1)
    support, query = x[:, :k_shot].reshape(-1, dim + 1), x[:, k_shot:].reshape(-1, dim + 1)
    return support, labels[:, :k_shot].flatten(), query, labels[:, k_shot:].flatten()


def nuisance_embedder(dim: int = 8) -> nn.Module:
    """A 'pretrained' embedder: signal passed through, the nuisance input amplified onto every output."""
    lin = nn.Linear(dim + 1, dim, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:, :dim] = torch.eye(dim)
        lin.weight[:, dim] = 3.0
    return lin


# Measured on these 8 episodes: frozen 0.27, classifier only 0.56, whole embedder 0.90 (5-way: chance 0.2).
# The classifier alone can only turn its weights away from the nuisance; the embedder can remove it.
@pytest.mark.parametrize(("train_embedder", "gain"), [(True, 0.5), (False, 0.2)], ids=["whole", "classifier-only"])
def test_finetuning_beats_frozen_prototypes_where_the_frozen_features_mislead(
    train_embedder: bool, gain: float
) -> None:
    torch.manual_seed(0)
    embedder = nuisance_embedder()
    original = {k: v.clone() for k, v in embedder.state_dict().items()}
    frozen, tuned = [], []
    for seed in range(8):
        s, sl, q, ql = nuisance_task(seed)
        logits, classes = prototype_logits(embedder, s, sl, q)
        frozen.append((classes[logits.argmax(1)] == ql).float().mean().item())
        logits, classes = finetune(
            embedder, s, sl, q, steps=50, lr=0.05, entropy_weight=0.1, train_embedder=train_embedder
        )
        tuned.append((classes[logits.argmax(1)] == ql).float().mean().item())
    assert np.mean(frozen) < 0.5, frozen
    assert np.mean(tuned) > np.mean(frozen) + gain, (frozen, tuned)
    for k, v in embedder.state_dict().items():  # the caller's embedder is never modified
        torch.testing.assert_close(v, original[k])


def test_finetune_with_zero_steps_is_cosine_prototype_classification() -> None:
    s, sl, q, _ = nuisance_task(0)
    embedder = nuisance_embedder()
    logits, classes = finetune(embedder, s, sl, q, steps=0)
    with torch.no_grad():
        zs, zq = nn.functional.normalize(embedder(s), dim=1), nn.functional.normalize(embedder(q), dim=1)
    protos = nn.functional.normalize(torch.stack([zs[sl == c].mean(0) for c in classes]), dim=1)
    torch.testing.assert_close(logits, 10.0 * zq @ protos.T)


def test_entropy_term_sharpens_query_predictions() -> None:
    s, sl, q, _ = nuisance_task(1)
    embedder = nuisance_embedder()

    def mean_entropy(weight: float) -> float:
        logits, _ = finetune(embedder, s, sl, q, steps=30, lr=0.05, entropy_weight=weight, train_embedder=False)
        p = logits.softmax(1)
        return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())

    assert mean_entropy(1.0) < mean_entropy(0.0)


# --- evaluation


def test_episodes_predict_draws_the_same_episodes_as_episodes() -> None:
    """A predictor that embeds pixels and takes the nearest prototype scores exactly what the embedding
    path scores on the same seed."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 6)
    centres = rng.integers(0, 255, size=(12, 1, 4, 4))
    images = np.clip(centres[labels] + rng.normal(0, 60, size=(len(labels), 1, 4, 4)), 0, 255).astype(np.uint8)
    euclid = distances.get("euclidean")
    from training.evaluate import classify

    def predict(support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return classify(pixel_embed(support), support_labels, pixel_embed(queries), euclid)

    by_embedding = episodes(pixel_embed(images / 255.0), labels, 5, 1, 2, 50, euclid, seed=4)
    by_predictor = episodes_predict(predict, images, labels, 5, 1, 2, 50, seed=4)
    assert by_predictor == by_embedding
    assert 0.2 < by_predictor.mean < 1.0  # neither chance nor trivial: the comparison means something

    from training.data.omniglot import OneShotRun

    floats = images.astype(np.float32) / 255.0
    runs = []
    for classes in (range(6), range(6, 12)):  # two 6-way runs: support the first image, queries the next two
        support = [np.flatnonzero(labels == c)[0] for c in classes]
        queries = [np.flatnonzero(labels == c)[j] for c in classes for j in (1, 2)]
        runs.append(OneShotRun(floats[support], floats[queries], np.repeat(np.arange(6), 2)))
    assert one_shot_runs_predict(predict, runs) == one_shot_runs(pixel_embed, runs, euclid)


# --- config, trainer, export


def test_config_accepts_the_episodic_objectives_and_refuses_bad_combinations() -> None:
    for objective in EPISODIC_OBJECTIVES:
        cfg = resolve(overrides={"objective": objective, "n_way": 20, "val_way": 20})
        assert cfg.episodic
    assert not resolve().episodic
    cfg = resolve(overrides={"objective": "maml", "n_way": "5", "val_way": "5", "inner_steps": "5", "inner_lr": "0.1"})
    assert (cfg.inner_steps, cfg.inner_lr, cfg.inner_steps_eval) == (5, 0.1, 3)
    with pytest.raises(ValueError, match="val_way"):
        resolve(overrides={"objective": "maml", "n_way": 5, "val_way": 20})
    with pytest.raises(ValueError, match="sampler = episodes"):
        resolve(overrides={"objective": "relation", "sampler": "pairs"})
    with pytest.raises(ValueError, match="episodes_per_batch"):
        resolve(overrides={"episodes_per_batch": 4})  # proto sees one episode per step
    with pytest.raises(ValueError, match="inner_lr"):
        resolve(overrides={"objective": "fomaml", "inner_lr": 0})
    with pytest.raises(ValueError, match="net = convnet"):
        resolve(overrides={"objective": "relation", "net": "koch"})
    with pytest.raises(ValueError, match="split"):
        resolve(overrides={"split": "random"})
    for name in ("matching", "relation", "maml"):
        cfg = resolve(Path(__file__).resolve().parents[1] / "experiments" / f"omniglot_{name}.toml")
        assert (cfg.objective, cfg.split, cfg.image_size) == (name, "vinyals", 28)


def tiny_episodic(glyph_folder: Path, out: Path, objective: str, **over: object) -> dict[str, object]:
    way = 2 if objective in ("maml", "fomaml") else 3  # MAML validates at its training width
    return {
        "name": objective,
        "out_dir": str(out),
        "data": "folder",
        "data_root": str(glyph_folder),
        "rotations": False,
        "augment": False,
        "val_groups": 2,
        "val_way": 2,
        "val_episodes": 10,
        "objective": objective,
        "sampler": "episodes",
        "n_way": way,
        "k_shot": 1,
        "q_query": 2,
        "episodes_per_batch": 2,
        "widths": "8,8,8,8",
        "steps": 4,
        "val_every": 2,
        "warmup_steps": 1,
        "lr": 3e-3,
        "patience": 0,
        **over,
    }


@pytest.mark.parametrize("objective", EPISODIC_OBJECTIVES)
def test_trainer_runs_each_episodic_objective_and_writes_a_rebuildable_checkpoint(
    glyph_folder: Path, tmp_path: Path, objective: str
) -> None:
    run = train(resolve(overrides=tiny_episodic(glyph_folder, tmp_path, objective)))
    for f in ("config.json", "metrics.json", "curve.png", "best.pt", "last.pt"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"]
    assert metrics["steps"] == 4
    assert all(math.isfinite(h["loss"]) and 0 <= h["train_acc"] <= 1 for h in metrics["history"])
    assert 0.0 <= metrics["best_val_acc"] <= 1.0
    method, ckpt = load_episodic(run / "best.pt")
    assert metrics["distance"] == ("cosine" if objective == "matching" else None)
    # The checkpoint alone reproduces the validation score the trainer recorded for it.
    from training.config import TrainConfig
    from training.trainer import load_data, validation_accuracy

    cfg = TrainConfig.from_saved(ckpt["train_config"])
    _, val = load_data(cfg)
    assert val is not None
    acc = validation_accuracy(
        None, val, cfg, None, cfg.val_episodes, 1234, predict=predict_fn(method, torch.device("cpu"))
    )
    assert acc.mean == pytest.approx(ckpt["val_acc"])


def test_episodic_runs_resume_to_the_same_weights(glyph_folder: Path, tmp_path: Path) -> None:
    straight = train(resolve(overrides=tiny_episodic(glyph_folder, tmp_path / "a", "fomaml")))
    cut = tiny_episodic(glyph_folder, tmp_path / "b", "fomaml", max_minutes=1e-9)
    train(resolve(overrides=cut))
    resumed = train(resolve(overrides={**cut, "max_minutes": 0.0}))
    a = torch.load(straight / "last.pt", weights_only=False)["module"]
    b = torch.load(resumed / "last.pt", weights_only=False)["module"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_export_takes_plain_matching_and_refuses_the_other_episodic_methods(glyph_folder: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    matching = train(resolve(overrides=tiny_episodic(glyph_folder, runs, "matching")))
    relation = train(resolve(overrides=tiny_episodic(glyph_folder, runs, "relation")))
    out = export_run(matching, "m", "1.0.0", tmp_path / "artifacts", tmp_path, 10, "test")
    card = json.loads((out / "card.json").read_text())
    assert card["distance"] == "cosine"
    assert card["training"]["objective"] == "matching"
    with pytest.raises(ExportRefused, match="episodic method"):
        export_run(relation, "r", "1.0.0", tmp_path / "artifacts", tmp_path, 10, "test")
    assert not (tmp_path / "artifacts" / "r").exists()
