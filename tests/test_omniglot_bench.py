"""The benchmark's protocol selection (`training.benchmark.evaluate_protocols(settings=...)`) on synthetic
Omniglot stand-ins, and the few-shot table's bookkeeping in bench/omniglot.py (budget, merging, rendering)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from model import distances
from model.preprocess import PreprocessSpec
from training import benchmark
from training.data.base import ImageSet
from training.data.omniglot import OneShotRun


def separable_set(n_classes: int = 24, per_class: int = 10, seed: int = 0) -> ImageSet:
    """uint8 1×4×4 images whose pixels encode the class (plus noise): nearest prototype is exact."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    codes = rng.integers(0, 256, size=(n_classes, 1, 4, 4))
    noise = rng.integers(-3, 4, size=(len(labels), 1, 4, 4))
    images = np.clip(codes[labels] + noise, 0, 255).astype(np.uint8)
    return ImageSet(images, labels, [f"c{c}" for c in range(n_classes)], np.zeros(len(labels), np.int64), ["g"])


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the Omniglot loaders of `training.benchmark`; returns the names of the loaders called."""
    called: list[str] = []
    s = separable_set()
    runs = [OneShotRun(s.images[::10][:20] / 255.0, s.images[1::10][:20] / 255.0, np.arange(20))]

    def lake_runs(root: Path, spec: PreprocessSpec) -> list[OneShotRun]:
        called.append("lake_runs")
        return runs

    def loader(name: str) -> Any:
        def load(root: Path, split: str, spec: PreprocessSpec) -> ImageSet:
            called.append(f"{name}:{split}")
            return s

        return load

    monkeypatch.setattr(benchmark, "load_lake_runs", lake_runs)
    monkeypatch.setattr(benchmark, "load_omniglot", loader("omniglot"))
    monkeypatch.setattr(benchmark, "load_vinyals", loader("vinyals"))
    return called


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)


def test_no_settings_measures_lakes_runs_alone(fake_data: list[str]) -> None:
    out = benchmark.evaluate_protocols(
        PreprocessSpec(size=(4, 4)), Path("x"), 5, embed=flat, distance=distances.get("euclidean"), settings=()
    )
    assert list(out) == ["lake_runs"]
    assert out["lake_runs"]["accuracy"] == 1.0
    assert fake_data == ["lake_runs"]  # images_evaluation is never loaded


def test_settings_pick_the_vinyals_episodes(fake_data: list[str]) -> None:
    out = benchmark.evaluate_protocols(
        PreprocessSpec(size=(4, 4)),
        Path("x"),
        7,
        split="vinyals",
        embed=flat,
        distance=distances.get("euclidean"),
        settings=((20, 5), (5, 1)),
    )
    assert list(out) == ["5way_1shot", "20way_5shot"]  # in the protocol order, not the argument's
    assert all(r["trials"] == 7 and r["accuracy"] == 1.0 for r in out.values())
    assert fake_data == ["vinyals:test"]


def test_settings_and_a_bound_width_intersect(fake_data: list[str]) -> None:
    """An episodic method bound to 5-way asked for 20-way settings only measures nothing: no data loaded."""

    def predict(support: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return labels[:1].repeat(len(queries))

    out = benchmark.evaluate_protocols(
        PreprocessSpec(size=(4, 4)), Path("x"), 3, split="vinyals", predict=predict, n_way=5, settings=((20, 1),)
    )
    assert out == {}
    assert fake_data == []


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="not among"):
        benchmark.evaluate_protocols(
            PreprocessSpec(size=(4, 4)), Path("x"), embed=flat, distance=distances.get("cosine"), settings=((10, 1),)
        )


# --- bench/omniglot.py


@pytest.fixture(scope="module")
def bench(load_bench: Callable[[str], ModuleType]) -> ModuleType:
    return load_bench("omniglot")


def write_metrics(run_dir: Path, finished: bool, minutes: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"finished": finished, "train_time_s": 60 * minutes}))


def test_a_run_is_trained_until_its_budget_is_spent(bench: ModuleType, tmp_path: Path) -> None:
    assert bench.needs_training(tmp_path / "absent", 2.0) == 2.0
    write_metrics(tmp_path / "spent", False, 2.2)
    assert bench.needs_training(tmp_path / "spent", 2.0) == 0.0
    write_metrics(tmp_path / "done", True, 0.5)  # finished its steps early: nothing left to train
    assert bench.needs_training(tmp_path / "done", 2.0) == 0.0
    write_metrics(tmp_path / "cut", False, 0.5)  # interrupted: only the rest of the budget
    assert bench.needs_training(tmp_path / "cut", 2.0) == pytest.approx(1.5)


def test_every_run_has_its_budget_and_a_unique_name(bench: ModuleType, tmp_path: Path) -> None:
    names = [r.name for r in bench.FEWSHOT_RUNS]
    assert len(names) == len(set(names))
    assert all(n.startswith("omni-") for n in names)
    assert {r.method for r in bench.FEWSHOT_RUNS} == {m.key for m in bench.METHODS} - {"proto+finetune"}
    for method in {r.method for r in bench.FEWSHOT_RUNS}:  # each method on both protocols
        assert {r.protocol for r in bench.FEWSHOT_RUNS if r.method == method} == {"lake", "vinyals"}
    cmd = bench.fewshot_train_command(bench.FEWSHOT_RUNS[0], 2.0, tmp_path)
    flags = dict(zip(cmd[6::2], cmd[7::2], strict=True))
    assert flags["--max-minutes"] == "2.0"
    assert flags["--name"] == bench.FEWSHOT_RUNS[0].name
    assert flags["--out-dir"] == str(tmp_path)


def entry(method: str, protocol: str, results: dict[str, float], n_way: int | None = None) -> dict[str, Any]:
    return {
        "method": method,
        "protocol": protocol,
        "results": {k: {"accuracy": v, "ci95": 0.01, "trials": 1000} for k, v in results.items()},
        "train_minutes": 2.1,
        "steps": 50,
        "steps_planned": 1000,
        "finished": False,
        "hardware": "CPU",
        "n_way": n_way,
        "eval_s": 90.0,
    }


def test_rows_merge_the_settings_each_run_fills(bench: ModuleType) -> None:
    """MAML's 5-way and 20-way runs fill their own columns; a 1-shot Relation model's 5-shot results are not
    shown where the 5-shot model fills them."""
    all4 = {"5way_1shot": 0.9, "5way_5shot": 0.2, "20way_1shot": 0.8, "20way_5shot": 0.1}
    runs = {
        "omni-vinyals-maml-5way": entry("maml", "vinyals", {"5way_1shot": 0.95, "5way_5shot": 0.97}, 5),
        "omni-vinyals-maml-20way": entry("maml", "vinyals", {"20way_1shot": 0.85, "20way_5shot": 0.9}, 20),
        "omni-vinyals-relation": entry("relation", "vinyals", all4),
        "omni-vinyals-relation-5shot": entry("relation", "vinyals", {"5way_5shot": 0.99, "20way_5shot": 0.97}),
        "omni-lake-relation": entry("relation", "lake", {"lake_runs": 0.5}),
    }
    fs = {"runs": runs, "budget_minutes": 2.0, "episodes": 1000, "command": "cmd", "platform": "p"}
    maml = bench.merged(bench.entries_of(fs, "maml", "vinyals"))
    assert {k: v["accuracy"] for k, v in maml.items()} == {
        "5way_1shot": 0.95,
        "5way_5shot": 0.97,
        "20way_1shot": 0.85,
        "20way_5shot": 0.9,
    }
    relation = bench.merged(bench.entries_of(fs, "relation", "vinyals"))
    assert relation["5way_5shot"]["accuracy"] == 0.99
    assert relation["5way_1shot"]["accuracy"] == 0.9

    md = "\n".join(bench.fewshot_section(fs))
    row = next(line for line in md.splitlines() if line.startswith("| Relation Network |"))
    assert "| 50.00 ± 1.00 | 90.00 ± 1.00 | 99.00 ± 1.00 | 80.00 ± 1.00 | 97.00 ± 1.00 |" in row
    assert "-9.6 / -17.6" in row  # 90.0 − 99.6, 80.0 − 97.6
    assert "5-shot: 2.1 min, 50 of 1000 steps" in row
    assert "omni-vinyals-maml-20way 1.5 min" in md  # MAML's evaluation time is stated
    assert "2-minute CPU budget" in md
    assert "Relation Network: -9.6 / -17.6" in md


def test_render_shows_the_largest_budget_and_every_budget_side_by_side(bench: ModuleType, tmp_path: Path) -> None:
    """The main table is the largest budget's; the budget table has a row per method and budget, with its
    distance from the paper, and the plot of those distances is written beside the report."""

    def budget(minutes: float, five: float, twenty: float, jobs: int) -> dict[str, Any]:
        runs = {
            "omni-vinyals-relation": entry("relation", "vinyals", {"5way_1shot": five, "20way_1shot": twenty}),
            "omni-lake-relation": entry("relation", "lake", {"lake_runs": 0.5}),
        }
        command = f"cmd {minutes:g}"
        return {
            "runs": runs,
            "budget_minutes": minutes,
            "episodes": 1000,
            "command": command,
            "platform": "p",
            "jobs": jobs,
        }

    plot = tmp_path / "omniglot_budget.png"
    only_two = bench.render({"fewshot": {"budgets": {"2": budget(2.0, 0.9, 0.8, 1)}}}, plot)
    assert "2-minute CPU budget" in only_two
    assert "at each budget measured" not in only_two
    assert not plot.exists()

    md = bench.render({"fewshot": {"budgets": {"2": budget(2.0, 0.9, 0.8, 1), "6": budget(6.0, 0.95, 0.9, 2)}}}, plot)
    main = md.split("## The same methods at each budget measured")[0]
    assert "6-minute CPU budget" in main
    assert "2-minute" not in main
    assert "2 training processes at a time, one thread each" in main
    assert "| Relation Network | 50.00 ± 1.00 | 95.00 ± 1.00 |" in main
    rows = [line for line in md.splitlines() if line.startswith("| Relation Network | ") and " min |" in line]
    assert [r.split(" | ")[1] for r in rows] == ["2 min", "6 min"]  # budgets in increasing order
    assert "| -9.6 / -17.6 |" in rows[0]
    assert "| -4.6 / -7.6 |" in rows[1]
    assert "2 min: `cmd 2`; 6 min: `cmd 6`" in md
    assert f"]({plot.name})" in md
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_budget_given_to_a_few_methods_does_not_become_the_main_table(bench: ModuleType) -> None:
    every = {r.name: entry(r.method, r.protocol, {"5way_1shot": 0.9}) for r in bench.FEWSHOT_RUNS}
    full = {"runs": every}
    partial = {"runs": {"omni-vinyals-proto": entry("proto", "vinyals", {"5way_1shot": 0.99})}}
    assert bench.main_budget({"6": full, "30": partial}) == "6"
    assert bench.main_budget({"2": full, "6": full}) == "6"
    assert bench.main_budget({"30": partial}) == "30"  # nothing complete: the largest
