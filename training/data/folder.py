"""A generic identity-folder dataset: `root/<class>/<image>`, for training on your own images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.preprocess import PreprocessSpec, prepare
from training.data.base import ImageSet

LOG = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff", ".gif"}


def load_identity_folder(root: Path, spec: PreprocessSpec, min_per_class: int = 1) -> ImageSet:
    """Every image under `root/<class>/`, prepared with `spec`. Each class is its own group, so that
    `split_by_group` holds out whole identities.

    Files that are not decodable images are skipped with a warning; classes with fewer than
    `min_per_class` readable images are dropped. Raises FileNotFoundError if nothing usable remains.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity folder {root} does not exist")
    images: list[np.ndarray] = []
    labels: list[int] = []
    class_names: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        arrays = []
        for f in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in EXTENSIONS):
            try:
                with Image.open(f) as img:
                    arrays.append(np.round(prepare(img, spec) * 255.0).astype(np.uint8))
            except (UnidentifiedImageError, OSError) as e:
                LOG.warning("skipping %s: %s", f, e)
        if len(arrays) < min_per_class:
            continue
        images += arrays
        labels += [len(class_names)] * len(arrays)
        class_names.append(class_dir.name)
    if not images:
        raise FileNotFoundError(f"no class folder under {root} has {min_per_class}+ readable images")
    return ImageSet(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        class_names=class_names,
        groups=np.array(labels, dtype=np.int64),
        group_names=list(class_names),
    )
