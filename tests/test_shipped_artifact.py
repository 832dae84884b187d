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
