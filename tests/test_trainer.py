"""The training loop on a real (generated) image folder: outputs, best checkpoint, exact resume, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.nets import Embedder, EmbedderConfig
from training.config import resolve
from training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def tiny(glyph_folder: Path, out: Path, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "tiny",
        "out_dir": str(out),
        "data": "folder",
        "data_root": str(glyph_folder),
        "rotations": False,
        "val_groups": 2,
        "val_way": 2,
        "val_episodes": 50,
        "objective": "proto",
        "sampler": "episodes",
        "n_way": 4,
        "k_shot": 1,
        "q_query": 3,
        "widths": "16,16,16",
        "steps": 12,
        "val_every": 4,
        "warmup_steps": 2,
        "lr": 3e-3,
        "patience": 0,
    }
    base.update(over)
    return base


def test_train_writes_run_outputs_and_a_rebuildable_best(glyph_folder: Path, tmp_path: Path) -> None:
    run = train(resolve(overrides=tiny(glyph_folder, tmp_path)))
    for f in ("config.json", "metrics.json", "curve.png", "best.pt", "last.pt"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"]
    assert metrics["steps"] == 12
    assert [h["step"] for h in metrics["history"]] == [4, 8, 12]
    assert 0.0 <= metrics["best_val_acc"] <= 1.0
    # The saved config alone rebuilds the net (no training code involved beyond torch.load).
    ckpt = torch.load(run / "best.pt", weights_only=False)
    net = Embedder(EmbedderConfig.from_dict(ckpt["model_config"]))
    net.load_state_dict(ckpt["model"])
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 16 * 3 * 3)


def test_training_reduces_the_loss(glyph_folder: Path, tmp_path: Path) -> None:
    run = train(resolve(overrides=tiny(glyph_folder, tmp_path, steps=40, val_every=10, augment=False)))
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert history[-1]["train_acc"] > 0.5  # 4-way: chance is 0.25


def test_early_stopping_after_patience_evaluations(glyph_folder: Path, tmp_path: Path) -> None:
    # No accuracy can beat the first evaluation by more than 1.0, so every later one is "stale".
    run = train(resolve(overrides=tiny(glyph_folder, tmp_path, steps=40, patience=2, val_min_delta=1.0)))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["early_stopped"]
    assert metrics["steps"] == 12  # best at step 4, stale at 8 and 12
    assert metrics["best_step"] == 4
    # The same command again must not train on past the early stop.
    again = train(resolve(overrides=tiny(glyph_folder, tmp_path, steps=40, patience=2, val_min_delta=1.0)))
    assert json.loads((again / "metrics.json").read_text())["steps"] == 12


KOCH = {"objective": "koch", "sampler": "m_per_class", "classes_per_batch": 3, "m_per_class": 3}


@pytest.mark.parametrize("objective", [{}, KOCH], ids=["proto", "koch-random-negatives"])
def test_interrupted_run_resumes_to_the_same_weights(glyph_folder: Path, tmp_path: Path, objective: dict) -> None:
    straight = train(resolve(overrides=tiny(glyph_folder, tmp_path / "a", **objective)))
    # A run stopped by its time budget at its first checkpoint, then started again with the same command.
    cut = tiny(glyph_folder, tmp_path / "b", max_minutes=1e-9, **objective)
    train(resolve(overrides=cut))
    assert json.loads((tmp_path / "b" / "tiny" / "metrics.json").read_text())["steps"] == 4
    resumed = train(resolve(overrides={**cut, "max_minutes": 0.0}))
    a = torch.load(straight / "last.pt", weights_only=False)["module"]
    b = torch.load(resumed / "last.pt", weights_only=False)["module"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_resume_refuses_a_changed_config(glyph_folder: Path, tmp_path: Path) -> None:
    train(resolve(overrides=tiny(glyph_folder, tmp_path)))
    with pytest.raises(ValueError, match="different config"):
        train(resolve(overrides=tiny(glyph_folder, tmp_path, lr=1e-2)))


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(glyph_folder: Path, tmp_path: Path) -> None:
    over = tiny(glyph_folder, tmp_path, name="ddp", steps=6, val_every=3)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in over.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training",
        "train",
        *flags,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["ranks_in_sync"] is True  # every parameter identical on both ranks after training
    assert metrics["steps"] == 6


@pytest.mark.parametrize(
    ("objective", "sampler", "net"),
    [
        ("koch", "m_per_class", "koch"),
        ("koch", "pairs", "convnet"),
        ("contrastive", "m_per_class", "convnet"),
        ("contrastive", "pairs", "convnet"),
        ("triplet", "m_per_class", "convnet"),
        ("normsoftmax", "m_per_class", "convnet"),
        ("arcface", "m_per_class", "convnet"),
    ],
)
def test_every_objective_trains(glyph_folder: Path, tmp_path: Path, objective: str, sampler: str, net: str) -> None:
    over = tiny(glyph_folder, tmp_path, objective=objective, sampler=sampler, net=net, steps=4, val_every=2,
                classes_per_batch=3, m_per_class=3, pairs=8, koch_kernels="4,3,2,2", koch_channels="8,8,8,8",
                koch_hidden=16, image_size=35 if net == "koch" else 28)  # fmt: skip
    run = train(resolve(overrides=over))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"]
    assert all(math.isfinite(h["loss"]) for h in metrics["history"])
    ckpt = torch.load(run / "best.pt", weights_only=False)
    assert ckpt["distance"] == {"koch": "l1", "contrastive": "euclidean", "triplet": "euclidean"}.get(
        objective, "cosine"
    )
