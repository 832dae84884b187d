"""Config resolution: defaults → TOML file → overrides, with type coercion and loud failures."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.config import TrainConfig, add_override_flags, overrides_from_args, resolve


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text('name = "exp"\nobjective = "triplet"\nsampler = "m_per_class"\nlr = 0.01\nwidths = [32, 32]\n')
    return path


def test_defaults() -> None:
    cfg = resolve()
    assert cfg == TrainConfig()
    assert cfg.objective == "proto"
    assert cfg.widths == (64, 64, 64, 64)
    assert cfg.rotations is True


def test_file_overrides_defaults(toml_file: Path) -> None:
    cfg = resolve(toml_file)
    assert cfg.name == "exp"
    assert (cfg.objective, cfg.sampler, cfg.lr, cfg.widths) == ("triplet", "m_per_class", 0.01, (32, 32))
    assert cfg.k_shot == TrainConfig().k_shot  # untouched keys keep their defaults


def test_overrides_beat_file(toml_file: Path) -> None:
    cfg = resolve(toml_file, {"lr": "0.5", "name": "cli"})
    assert cfg.lr == 0.5
    assert cfg.name == "cli"
    assert cfg.objective == "triplet"


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        resolve(path)


def test_unknown_key_in_overrides() -> None:
    with pytest.raises(ValueError, match="n_ways"):
        resolve(overrides={"n_ways": 5})


def test_tuple_fields_parse_from_strings() -> None:
    cfg = resolve(overrides={"widths": "64,64", "koch_kernels": "3, 5,7"})
    assert cfg.widths == (64, 64)
    assert cfg.koch_kernels == (3, 5, 7)
    with pytest.raises(ValueError, match="widths"):
        resolve(overrides={"widths": "64,wide"})


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("Yes", True), ("on", True), ("false", False), ("0", False), ("OFF", False)],
)
def test_bool_parsing(text: str, value: bool) -> None:
    assert resolve(overrides={"augment": text}).augment is value


def test_bad_values() -> None:
    with pytest.raises(ValueError, match="augment"):
        resolve(overrides={"augment": "maybe"})
    with pytest.raises(ValueError, match="seed"):
        resolve(overrides={"seed": "zero"})
    with pytest.raises(ValueError, match="objective"):
        resolve(overrides={"objective": "hinge"})
    with pytest.raises(ValueError, match="lr"):
        resolve(overrides={"lr": 0})
    with pytest.raises(ValueError, match="face_detector"):
        resolve(overrides={"face_detector": "mtcnn"})


def test_argparse_round_trip(toml_file: Path) -> None:
    parser = argparse.ArgumentParser()
    add_override_flags(parser)
    args = parser.parse_args(["--k-shot", "3", "--widths", "32,32,32", "--augment", "false", "--lr", "0.002"])
    overrides = overrides_from_args(args)
    assert overrides == {"k_shot": "3", "widths": "32,32,32", "augment": "false", "lr": "0.002"}
    cfg = resolve(toml_file, overrides)
    assert (cfg.k_shot, cfg.widths, cfg.augment, cfg.lr, cfg.name) == (3, (32, 32, 32), False, 0.002, "exp")
    assert overrides_from_args(parser.parse_args([])) == {}


EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_file_is_a_valid_config(path: Path) -> None:
    """A recipe that no longer validates (a renamed key, a rule it breaks) fails here, not an hour into a run."""
    assert isinstance(resolve(path), TrainConfig)


def test_experiments_never_share_a_run_folder() -> None:
    names = [resolve(p).name for p in EXPERIMENTS]
    assert len(EXPERIMENTS) > 10
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
