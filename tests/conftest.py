"""Shared fixtures. Tests that need ../shared/data use `data_root` and skip with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared dataset folder; skips the test when it (or Omniglot inside it) is absent."""
    if not (DATA_ROOT / "omniglot" / "images_background.zip").is_file():
        pytest.skip(f"needs the shared datasets at {DATA_ROOT} (set SIAMFACE_DATA to point elsewhere)")
    return DATA_ROOT


def make_glyph_folder(root: Path, classes: int = 6, per_class: int = 10, size: int = 28, seed: int = 0) -> Path:
    """Write `root/class_k/img_j.png`: each class a random polygon ("glyph"), each image a jittered copy.

    A real image folder whose ground truth is known by construction: a learnable few-shot task.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for k in range(classes):
        shape = rng.uniform(0.2, 0.8, size=(rng.integers(3, 7), 2)) * size
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            angle = rng.uniform(-0.3, 0.3)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pts = (shape - size / 2) @ rot.T + size / 2 + rng.uniform(-2, 2, size=2)
            img = Image.new("L", (size, size), 0)
            ImageDraw.Draw(img).polygon([tuple(p) for p in pts], outline=255, width=2)
            img.save(root / f"class_{k}" / f"img_{j}.png")
    return root


@pytest.fixture
def glyph_folder(tmp_path: Path) -> Path:
    return make_glyph_folder(tmp_path / "glyphs")
