"""Omniglot from `../shared/data/omniglot` (Lake, Salakhutdinov & Tenenbaum 2015; MIT licence).

- `load_omniglot(root, "background" | "evaluation", spec)`: the 30/20 alphabet split, cached prepared.
- `load_lake_runs(root, spec)`: the 20 within-alphabet 20-way one-shot runs of `all_runs.zip`.
- `load_vinyals(root, split, spec)`: the Vinyals et al. class split (mixes both zips; rotations as classes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.preprocess import PreprocessSpec, prepare
from training.data.base import ImageSet

LOG = logging.getLogger(__name__)

DEFAULT_ROOT = Path("../shared/data")
DEFAULT_CACHE = Path(".cache")
SUBSETS = ("background", "evaluation", "background_small1", "background_small2")


def omniglot_dir(root: Path) -> Path:
    d = Path(root) / "omniglot"
    if not (d / "images_background.zip").is_file():
        raise FileNotFoundError(f"Omniglot not found under {d} (expected images_background.zip there)")
    return d


def _cache_path(cache: Path, name: str, spec: PreprocessSpec) -> Path:
    key = hashlib.sha1(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache) / "omniglot" / f"{name}-{key}.npz"


def _read_png(zf: zipfile.ZipFile, name: str, spec: PreprocessSpec) -> np.ndarray:
    with zf.open(name) as f:
        img = Image.open(f)
        img.load()
    return np.round(prepare(img, spec) * 255.0).astype(np.uint8)


def load_omniglot(
    root: Path = DEFAULT_ROOT,
    subset: str = "background",
    spec: PreprocessSpec | None = None,
    cache: Path = DEFAULT_CACHE,
) -> ImageSet:
    """All images of one Omniglot zip, prepared with `spec`, cached as .npz under `cache`.

    Classes are characters ("Alphabet/characterNN", sorted), groups are alphabets.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    spec = spec or PreprocessSpec()
    path = _cache_path(cache, subset, spec)
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return ImageSet(
            images=z["images"],
            labels=z["labels"],
            class_names=list(z["class_names"]),
            groups=z["groups"],
            group_names=list(z["group_names"]),
        )
    zpath = omniglot_dir(root) / f"images_{subset}.zip"
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        # "images_background/Alphabet/characterNN/xxxx_yy.png" -> class "Alphabet/characterNN".
        cls = ["/".join(n.split("/")[1:3]) for n in names]
        class_names = sorted(set(cls))
        group_names = sorted({c.split("/")[0] for c in class_names})
        class_id = {c: i for i, c in enumerate(class_names)}
        group_id = {g: i for i, g in enumerate(group_names)}
        images = np.stack([_read_png(zf, n, spec) for n in tqdm(names, desc=f"omniglot {subset}", leave=False)])
    labels = np.array([class_id[c] for c in cls], dtype=np.int64)
    groups = np.array([group_id[c.split("/")[0]] for c in cls], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # unique: concurrent builders never share it
    np.savez(
        tmp,
        images=images,
        labels=labels,
        class_names=np.array(class_names),
        groups=groups,
        group_names=np.array(group_names),
    )
    tmp.replace(path)  # atomic: a crash mid-write never leaves a truncated cache behind
    LOG.info("cached %d Omniglot %s images at %s", len(images), subset, path)
    return load_omniglot(root, subset, spec, cache)


@dataclass(frozen=True)
class OneShotRun:
    """One N-way one-shot trial set: classify each query as one of the support images.

    support: float32 N×C×H×W (one image per class). queries: float32 Q×C×H×W.
    answers: int64 Q, the index into `support` of each query's true class.
    """

    support: np.ndarray
    queries: np.ndarray
    answers: np.ndarray


def load_lake_runs(root: Path = DEFAULT_ROOT, spec: PreprocessSpec | None = None) -> list[OneShotRun]:
    """Lake et al.'s 20 runs of 20-way one-shot classification within an alphabet (400 trials).

    Images are read straight from `all_runs.zip` through `prepare` (float, no 8-bit cache), exactly as
    serving would read them.
    """
    spec = spec or PreprocessSpec()
    zpath = omniglot_dir(root) / "all_runs.zip"
    runs = []
    with zipfile.ZipFile(zpath) as zf:
        run_dirs = sorted({n.split("/")[0] for n in zf.namelist() if n.startswith("run")})

        def read(name: str) -> np.ndarray:
            with zf.open(name) as f:
                img = Image.open(f)
                img.load()
            return prepare(img, spec)

        for run in run_dirs:
            pairs = [line.split() for line in zf.read(f"{run}/class_labels.txt").decode().splitlines() if line.strip()]
            support_names = sorted({train for _, train in pairs})
            index = {n: i for i, n in enumerate(support_names)}
            runs.append(
                OneShotRun(
                    support=np.stack([read(n) for n in support_names]),
                    queries=np.stack([read(test) for test, _ in pairs]),
                    answers=np.array([index[train] for _, train in pairs], dtype=np.int64),
                )
            )
    return runs


def load_vinyals(
    root: Path = DEFAULT_ROOT,
    split: str = "test",
    spec: PreprocessSpec | None = None,
    cache: Path = DEFAULT_CACHE,
) -> ImageSet:
    """The classes of `splits/vinyals/<split>.txt` ("Alphabet/characterNN/rotDDD"), each rotation a class.

    The split mixes background and evaluation alphabets: never combine it with the 30/20 protocol.
    """
    lines = (omniglot_dir(root) / "splits" / "vinyals" / f"{split}.txt").read_text().split()
    both = [load_omniglot(root, s, spec, cache) for s in ("background", "evaluation")]
    by_class: dict[str, tuple[ImageSet, np.ndarray]] = {}
    for ds in both:
        for i, name in enumerate(ds.class_names):
            by_class[name] = (ds, ds.images[ds.labels == i])
    images, labels, groups, group_names = [], [], [], sorted({ln.split("/")[0] for ln in lines})
    gid = {g: i for i, g in enumerate(group_names)}
    for label, line in enumerate(lines):
        alphabet, character, rot = line.split("/")
        _, imgs = by_class[f"{alphabet}/{character}"]
        images.append(np.rot90(imgs, k=int(rot[3:]) // 90, axes=(2, 3)))
        labels.append(np.full(len(imgs), label, dtype=np.int64))
        groups.append(np.full(len(imgs), gid[alphabet], dtype=np.int64))
    return ImageSet(
        images=np.ascontiguousarray(np.concatenate(images)),
        labels=np.concatenate(labels),
        class_names=lines,
        groups=np.concatenate(groups),
        group_names=group_names,
    )
