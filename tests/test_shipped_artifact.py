"""The artifact shipped in model/artifacts/omniglot: loads without torch, and its Lake's-runs figure,
measured from ONNX through `model/`, is the one its card and the README state."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from model.artifact import ARTIFACTS_DIR
from model.artifact import load as load_artifact
from training import evaluate
from training.data.omniglot import load_lake_runs

SHIPPED = ARTIFACTS_DIR / "omniglot"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_shipped_card_is_complete() -> None:
    art = load_artifact(SHIPPED)
    card = art.card
    assert card.name == "omniglot"
    assert card.command.startswith("python -m training export")
    assert "Lake" in card.data["terms"]
    assert "MIT" in card.data["terms"]
    assert card.metrics["lake_runs"]["trials"] == 400
    h, w = card.spec.size
    assert art.embed(np.zeros((1, card.spec.channels, h, w), np.float32)).shape == (1, card.embedding_dim)


@pytest.mark.data
def test_shipped_artifact_reproduces_the_stated_accuracy(data_root: Path) -> None:
    # Lake's 400 trials only: the episode protocols embed all 13,180 evaluation images and belong to the
    # benchmark (bench/omniglot.py re-measures them from the same artifact).
    art = load_artifact(SHIPPED)
    measured = evaluate.one_shot_runs(art.embed, load_lake_runs(data_root, art.spec), art.distance)
    assert measured.mean == pytest.approx(art.card.metrics["lake_runs"]["accuracy"], abs=1e-9)
    lake = f"{100 * measured.mean:.2f}%"
    assert re.search(re.escape(lake), README.read_text()), f"README does not state the measured {lake}"


FACES = ARTIFACTS_DIR / "faces"


def test_shipped_face_card_is_complete() -> None:
    """What serving reads from the face card: the crop recipe, calibrated thresholds, terms and metrics."""
    art = load_artifact(FACES)
    card = art.card
    assert card.name == "faces"
    assert card.command.startswith("python -m training export")
    assert {"align", "detector", "min_face"} <= set(card.face)
    cal = card.calibration
    assert cal is not None
    assert set(cal.far_thresholds) >= {"1e-2", "1e-3"}
    for key in ("lfw_view1", "lfw_view1_end_to_end", "orl_heldout"):
        assert 0.5 < card.metrics[key]["accuracy"] <= 1.0, key
    assert "LFW" in card.data["terms"]
    assert "ORL" in card.data["terms"]
    h, w = card.spec.size
    z = art.embed(np.zeros((2, card.spec.channels, h, w), np.float32))
    assert z.shape == (2, card.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


@pytest.mark.data
def test_shipped_face_artifact_reproduces_its_orl_figures(data_root: Path) -> None:
    """ORL's held-out subjects from the ONNX graph through model/, on crops made by the card's own recipe: the
    card's EER and one-shot identification, and the README's EER. (LFW's figures are re-measured by
    bench/faces.py: its crop cache takes minutes to build.)"""
    from training.data.face_cache import load_face_crops, orl_heldout
    from training.face_eval import orl_heldout_report

    art = load_artifact(FACES)
    stated = art.card.metrics["orl_heldout"]
    cfg = art.card.training["config"]
    crops = load_face_crops(data_root, Path(".cache"), ("orl",), art.card.face, channels=art.card.spec.channels)
    subjects = orl_heldout(cfg["holdout_subjects"], cfg["seed"])
    report, ident = orl_heldout_report(art.embed, crops, subjects, art.spec, art.card.distance)
    assert report.eer == pytest.approx(stated["eer"], abs=1e-9)
    assert ident.mean == pytest.approx(stated["one_shot_identification"], abs=1e-9)
    eer = f"{100 * report.eer:.2f}%"
    assert eer in README.read_text(), f"README does not state the measured ORL EER {eer}"
