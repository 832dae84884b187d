"""`python -m training recard`: same weights, the current detector defaults, re-measured, a new version.

The measurement itself (every face protocol over LFW and ORL, minutes) is replaced by a recorder: what is
tested here is what the command does around it, on a real shipped artifact copied to a temp dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from model.artifact import load as load_artifact
from model.blazeface import BlazeFaceParams
from model.calibration import Calibration
from model.faces import HaarParams, detector_block
from training import export
from training.cli import main

SHIPPED = Path(__file__).resolve().parents[1] / "model" / "artifacts" / "faces"


@pytest.fixture
def old_card_artifact(tmp_path: Path) -> Path:
    """The shipped face artifact as a card written before today's detector parameters existed would have it."""
    if not SHIPPED.is_dir():
        pytest.skip(f"needs the shipped face artifact at {SHIPPED}")
    dest = tmp_path / "faces"
    shutil.copytree(SHIPPED, dest)
    card = json.loads((dest / "card.json").read_text())
    # A Haar recipe from before search_face and eye_fallback existed, whatever detector the shipped net uses.
    card["training"].pop("face_recipe_trained", None)
    card["face"] = {**card["face"], "detector": detector_block("haar")}
    params = card["face"]["detector"]["params"]
    params.pop("search_face", None)
    params.pop("eye_fallback", None)
    card["version"], card["command"] = "1.0.0", "python -m training export --run runs/x --name faces"
    (dest / "card.json").write_text(json.dumps(card))
    return dest


def test_recard_swaps_the_detector_remeasures_and_keeps_the_weights(
    old_card_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = load_artifact(old_card_artifact).card
    onnx_bytes = (old_card_artifact / "model.onnx").read_bytes()
    seen: list[dict[str, Any]] = []
    d = before.thresholds["verification"]
    calibration = Calibration.from_dict({**d, "fitted_on": {k: "the recorder" for k in d["fitted_on"]}})

    def recorder(artifact: Any, cfg: dict[str, Any], data_root: Path, cache_dir: Path) -> tuple[dict, Calibration]:
        seen.append(artifact.card.face)  # what the measurement ran with
        return {"lfw_view1": {"accuracy": 0.5}}, calibration

    monkeypatch.setattr(export, "measure_face_artifact", recorder)
    code = main(["recard", "--artifact", str(old_card_artifact), "--version", "1.1.0", "--fold-records", "none",
                 "--detector-params", '{"min_neighbors": 5}'])  # fmt: skip
    assert code == 0
    after = load_artifact(old_card_artifact).card
    expected = HaarParams(min_neighbors=5).to_dict()
    assert len(seen) == 1
    assert seen[0]["detector"]["params"] == expected
    assert after.face["detector"]["params"] == expected
    assert after.version == "1.1.0"
    assert after.metrics == {"lfw_view1": {"accuracy": 0.5}}
    assert set(after.thresholds["verification"]["fitted_on"].values()) == {"the recorder"}
    assert after.training["face_recipe_trained"] == before.face  # what the net was trained on, kept
    assert after.command.startswith("python -m training export --run runs/x --name faces && python -m training recard")
    assert (old_card_artifact / "model.onnx").read_bytes() == onnx_bytes
    assert sorted(p.name for p in old_card_artifact.parent.iterdir()) == ["faces"]  # no temp folder left behind
    # A second re-card keeps the first training recipe, not the intermediate one.
    assert main(["recard", "--artifact", str(old_card_artifact), "--version", "1.2.0", "--fold-records", "no"]) == 0
    assert load_artifact(old_card_artifact).card.training["face_recipe_trained"] == before.face


@pytest.mark.parametrize("params", ['{"min_neighbours": 5}', "[1, 2]", "{not json"])
def test_recard_refuses_bad_detector_params(old_card_artifact: Path, params: str) -> None:
    with pytest.raises(SystemExit):
        main(["recard", "--artifact", str(old_card_artifact), "--version", "9.9.9", "--detector-params", params])
    assert load_artifact(old_card_artifact).card.version == "1.0.0"  # untouched


def test_recard_to_blazeface_writes_its_full_parameters(
    old_card_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = load_artifact(old_card_artifact).card
    seen: list[dict[str, Any]] = []

    def recorder(artifact: Any, cfg: dict[str, Any], data_root: Path, cache_dir: Path) -> tuple[dict, None]:
        seen.append(artifact.card.face)
        return {"lfw_view1": {"accuracy": 0.5}}, None

    monkeypatch.setattr(export, "measure_face_artifact", recorder)
    argv = ["recard", "--artifact", str(old_card_artifact), "--version", "2.0.0", "--detector", "blazeface"]
    assert main([*argv, "--detector-params", '{"min_score": 0.6}']) == 0
    after = load_artifact(old_card_artifact).card
    expected = BlazeFaceParams(min_score=0.6).to_dict()
    assert seen[0]["detector"] == after.face["detector"] == {"name": "blazeface", "params": expected}
    assert expected["fallback_params"] == HaarParams().to_dict()  # the Haar fallback's parameters, in full
    assert after.face["align"] == before.face["align"]
    assert after.training["face_recipe_trained"] == before.face
    assert after.thresholds["verification"] == before.thresholds["verification"]  # no new calibration: kept
    with pytest.raises(SystemExit):  # a Haar-only parameter is not BlazeFace's
        main([*argv, "--detector-params", '{"min_neighbors": 5}'])


def fold_record(
    records: Path, config: dict[str, Any], protocol: str, accuracy: float, end_to_end: float, hardware: str = "a CPU"
) -> None:
    """A run record as bench/faces.py writes it (the fields recipe_view2 reads), for `config` at `protocol`."""
    cfg = {**config, "name": f"{config['name']}-{protocol}", "face_protocol": protocol}
    split = f"lfw_view2-fold{int(protocol[4:]):02d}" if protocol.startswith("fold") else "lfw_view1"

    def row(acc: float) -> dict[str, Any]:
        return {"accuracy": acc, "auc": acc + 0.04, "eer": 1 - acc, "tar_at_far": {"1e-2": acc - 0.1, "1e-3": None}}

    metrics = {split: row(accuracy), f"{split}_end_to_end": row(end_to_end), "orl_heldout": row(0.99)}
    records.mkdir(parents=True, exist_ok=True)
    record = {"name": cfg["name"], "config": cfg, "run": {"hardware": hardware}, "metrics": metrics}
    (records / f"{cfg['name']}.json").write_text(json.dumps(record))


def test_the_card_gains_the_view2_folds_of_its_own_recipe_only(
    old_card_artifact: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_artifact(old_card_artifact).card.training["config"]
    records = tmp_path / "records"
    fold_record(records, config, "fold2", 0.95, 0.94)
    fold_record(records, config, "fold7", 0.93, 0.93, hardware="NVIDIA H100 80GB HBM3")
    fold_record(records, config, "view1", 0.10, 0.10)  # the recipe, but not a View 2 fold
    fold_record(records, {**config, "steps": 10}, "fold3", 0.20, 0.20)  # another recipe

    def recorder(artifact: Any, cfg: dict[str, Any], data_root: Path, cache_dir: Path) -> tuple[dict, None]:
        return {"lfw_view1": {"accuracy": 0.5}}, None

    monkeypatch.setattr(export, "measure_face_artifact", recorder)
    argv = ["recard", "--artifact", str(old_card_artifact), "--version", "1.1.0", "--fold-records", str(records)]
    assert main(argv) == 0
    metrics = load_artifact(old_card_artifact).card.metrics
    assert set(metrics) == {"lfw_view1", "lfw_view2_recipe", "lfw_view2_recipe_end_to_end"}
    aligned, raw = metrics["lfw_view2_recipe"], metrics["lfw_view2_recipe_end_to_end"]
    assert aligned["folds"] == {"2": 0.95, "7": 0.93}
    assert aligned["trained_on"] == raw["trained_on"] == {"2": "a CPU", "7": "NVIDIA H100 80GB HBM3"}
    assert aligned["accuracy"] == pytest.approx(0.94)
    assert aligned["accuracy_std"] == pytest.approx(0.01 * 2**0.5)  # sample std of 0.95 and 0.93
    assert aligned["auc"] == pytest.approx(0.98)
    assert aligned["eer"] == pytest.approx(0.06)
    assert aligned["tar_at_far"] == {"1e-2": pytest.approx(0.84)}
    assert "folds 2, 7 (2 of 10)" in aligned["protocol"]
    assert raw["folds"] == {"2": 0.94, "7": 0.93}
    assert raw["accuracy"] == pytest.approx(0.935)
    assert "raw 250×250 photos" in raw["protocol"]
