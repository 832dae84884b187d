"""bench/faces.py's run records: a report reads a committed record when its run is gone from runs/, but only a
record of the very same training config, and measures the run afresh whenever the run is there."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from training.config import resolve
from training.verification import roc_curve

CURVE = roc_curve(np.array([True, False, True, False]), np.array([0.9, 0.2, 0.6, 0.7]), higher_is_closer=True)


@pytest.fixture
def bench(load_bench: Callable[[str], ModuleType]) -> ModuleType:
    return load_bench("faces")


def write_record(records: Path, cfg: object, accuracy: float) -> None:
    records.mkdir(parents=True, exist_ok=True)
    saved = {
        "name": cfg.name,  # type: ignore[attr-defined]
        "config": json.loads(json.dumps(cfg.to_dict())),  # type: ignore[attr-defined]
        "run": {"steps": 6000, "train_time_s": 2340.0, "hardware": "test CPU"},
        "metrics": {"lfw_view2-fold01": {"accuracy": accuracy}},
        "extras": {"fit": {"train": 0.78}},
        "curves": {"lfw_view2-fold01": CURVE.to_dict()},
    }
    (records / f"{cfg.name}.json").write_text(json.dumps(saved))  # type: ignore[attr-defined]


def test_a_record_stands_in_for_a_missing_run(bench: ModuleType, tmp_path: Path) -> None:
    cfg = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": str(tmp_path / "runs")})
    write_record(tmp_path / "records", cfg, 0.935)
    got = bench.measured_run(cfg, True, "cmd", tmp_path / "no-data", records=tmp_path / "records")
    assert got is not None
    assert got.metrics["lfw_view2-fold01"]["accuracy"] == 0.935
    assert got.run["steps"] == 6000
    assert got.extras == {"fit": {"train": 0.78}}
    assert got.run_dir is None  # nothing here to time
    np.testing.assert_array_equal(got.curves["lfw_view2-fold01"].tar, CURVE.tar)  # the plot's line


def test_a_record_of_another_config_is_ignored(bench: ModuleType, tmp_path: Path) -> None:
    runs = str(tmp_path / "runs")
    recorded = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": runs})
    write_record(tmp_path / "records", recorded, 0.935)
    asked = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": runs, "steps": 10})
    # no run, no valid record, and no training allowed: nothing to report
    assert bench.measured_run(asked, True, "cmd", tmp_path / "no-data", records=tmp_path / "records") is None


def test_a_run_in_runs_wins_over_its_record(bench: ModuleType, tmp_path: Path) -> None:
    cfg = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": str(tmp_path / "runs")})
    write_record(tmp_path / "records", cfg, 0.935)
    run_dir = tmp_path / "runs" / "rec-fold1"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"steps": 6000, "history": []}))
    # the run is measured afresh: here it has no checkpoint, so evaluating it fails rather than quietly
    # reporting the older record
    with pytest.raises(FileNotFoundError):
        bench.measured_run(cfg, True, "cmd", tmp_path / "no-data", records=tmp_path / "records")


def test_read_record_gives_the_record_of_the_very_same_config_only(bench: ModuleType, tmp_path: Path) -> None:
    runs = str(tmp_path / "runs")
    cfg = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": runs})
    records = tmp_path / "records"
    assert bench.read_record(cfg, records) is None  # no record yet
    write_record(records, cfg, 0.935)
    saved = bench.read_record(cfg, records)
    assert saved is not None
    assert saved["metrics"]["lfw_view2-fold01"]["accuracy"] == 0.935
    assert bench.read_record(resolve(bench.EXPERIMENT, {**cfg.to_dict(), "steps": 10}), records) is None


def test_train_only_trains_nothing_that_is_recorded_and_writes_no_report(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--train-only` (for a GPU machine) trains the runs that have no record and stops there: with the
    committed records of the shipped recipe's folds it has nothing to train, and it writes no report."""
    experiment = Path(bench.REPO) / "experiments" / "faces_student96_grey.toml"
    cfg = resolve(experiment, {"name": "faces-student96-grey-fold1", "face_protocol": "fold1"})
    if bench.read_record(cfg) is None:
        pytest.skip("the shipped recipe's fold 1 record is not in bench/results/runs")
    trained: list[str] = []
    monkeypatch.setattr(bench, "finished_run", lambda cfg, *_: trained.append(cfg.name))
    out = tmp_path / "report.md"
    argv = ["faces.py", "--experiment", str(experiment), "--protocols", "fold1,fold2", "--train-only"]
    monkeypatch.setattr("sys.argv", [*argv, "--out", str(out), "--steps", "7"])
    assert bench.main() == 0
    assert trained == ["faces-student96-grey-fold1-7steps", "faces-student96-grey-fold2-7steps"]  # no records
    monkeypatch.setattr("sys.argv", [*argv, "--out", str(out)])
    trained.clear()
    assert bench.main() == 0
    assert trained == []  # both folds are recorded
    assert not out.exists()
    monkeypatch.setattr("sys.argv", [*argv, "--no-train"])
    with pytest.raises(SystemExit):  # train only, and train nothing: a contradiction, refused
        bench.main()


def test_records_are_not_git_ignored(bench: ModuleType) -> None:
    """The records exist to be committed: an ignore rule for training's runs/ must not also catch
    bench/results/runs/ (a bare `runs/` pattern did, and two View 2 folds' records were lost with their machine)."""
    repo = Path(bench.REPO)
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    record = bench.RECORDS.relative_to(repo) / "faces-student96-fold1.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(record)], cwd=repo, check=False)
    assert ignored.returncode == 1, f"{record} is git-ignored: see .gitignore"
    run = subprocess.run(["git", "check-ignore", "-q", "runs/faces/best.pt"], cwd=repo, check=False)
    assert run.returncode == 0, "training's runs/ must stay ignored"


def test_a_record_made_before_a_config_field_was_added_still_counts(bench: ModuleType, tmp_path: Path) -> None:
    """Records outlive the code that wrote them: one saved without fields added since (here the consistent
    teaching ones) is still the record of the same recipe, and still not of another."""
    cfg = resolve(bench.EXPERIMENT, {"name": "rec-fold1", "face_protocol": "fold1", "out_dir": str(tmp_path)})
    records = tmp_path / "records"
    write_record(records, cfg, 0.935)
    path = records / "rec-fold1.json"
    saved = json.loads(path.read_text())
    for added in ("distill_views", "teacher_pool"):
        del saved["config"][added]
    path.write_text(json.dumps(saved))
    found = bench.read_record(cfg, records)
    assert found is not None
    assert found["metrics"]["lfw_view2-fold01"]["accuracy"] == 0.935
    assert bench.read_record(resolve(bench.EXPERIMENT, {**cfg.to_dict(), "seed": 1}), records) is None
