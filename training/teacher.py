"""A public-domain face teacher for distillation: dlib's ResNet (the model behind `face_recognition`).

Its author released the model files into the public domain ("anyone can do whatever they want with these
model files", dlib-models README) and trained it on about 3 million faces of 7,485 people, none from LFW.
Only `training/` and `bench/` use it, through the optional extra `pip install -e '.[teacher]'`
(`dlib-bin`, `face_recognition_models`); serving, the Docker image and the default install never do.

`face_recognition_models` is never imported: its `__init__` imports `pkg_resources`, which setuptools ≥ 81
no longer ships. Its .dat files are found through `importlib` and loaded by dlib directly.

Targets: `teacher_targets` computes one descriptor per image of the face sets, with the teacher's own
pipeline on the original photo (HOG detection, the 5-point shape predictor, its 150×150 aligned chip), and
caches them in `cache_dir/teacher/<set>.npz`, saved every few hundred images, so an interrupted run
resumes. The student never sees the teacher's chip: it trains on our own aligned crops (`face_cache`), and
the target is only the vector.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

LOG = logging.getLogger(__name__)

NAME = "dlib_face_recognition_resnet_model_v1"
LICENCE = "public domain (dlib-models README: 'anyone can do whatever they want with these model files')"
DIM = 128
VERSION = 1  # bump when the target recipe changes, so old caches are not reused
# Where no face is found, a box centred in the image with this side (fraction of the shorter side): LFW's
# labelled person is centred in a 250×250 photo with a face ~110 px wide; ORL and Yale B are face crops.
FALLBACK_BOX = {"lfw": 0.44, "orl": 0.8, "yaleb": 0.8}


def model_dir() -> Path | None:
    """face_recognition_models' folder of .dat files (found without importing it), or None when the
    `teacher` extra is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None or importlib.util.find_spec("dlib") is None:
        return None
    return Path(spec.origin).parent / "models"


def require_teacher() -> Path:
    folder = model_dir()
    if folder is None:
        raise RuntimeError("the face teacher is not installed: pip install -e '.[teacher]'")
    return folder


@dataclass
class Description:
    """One photo through the teacher: `vector` (128 float32, as dlib returns it, not normalised) or None,
    `how` it found the face ("detected", "upsampled", "fallback", "none"), and `seconds` spent."""

    vector: np.ndarray | None
    how: str
    seconds: float


class DlibTeacher:
    """dlib's frontal HOG detector + 5-point shape predictor + ResNet encoder (one jitter)."""

    def __init__(self) -> None:
        import dlib

        folder = require_teacher()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(folder / f"{NAME}.dat"))

    def describe(self, rgb: np.ndarray, pick: str = "largest", upsample: int = 1, fallback: float = 0.0) -> Description:
        """The descriptor of one face of `rgb` (uint8 H×W×3).

        pick: "largest" (what face_recognition users get of a group photo) or "central" (the face nearest the
          image centre: LFW's labelled person). upsample: dlib's upsampling passes; with "central" the photo is
          searched without upsampling first, then with `upsample`. fallback: where nothing is found, describe a
          centred box of this fraction of the shorter side (0: give up, vector None).
        """
        t = time.perf_counter()
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        how, faces = "detected", list(self.detector(rgb, 0)) if pick == "central" else []
        if not faces:
            how, faces = ("upsampled" if pick == "central" else "detected"), list(self.detector(rgb, upsample))
        if faces:
            if pick == "largest":
                face = max(faces, key=lambda r: r.width() * r.height())
            else:
                face = min(faces, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        elif fallback > 0:
            side = fallback * min(h, w)
            x0, y0 = round((w - side) / 2), round((h - side) / 2)
            face, how = self._dlib.rectangle(x0, y0, x0 + int(side), y0 + int(side)), "fallback"
        else:
            return Description(None, "none", time.perf_counter() - t)
        vec = np.asarray(self.encoder.compute_face_descriptor(rgb, self.predictor(rgb, face), 1), np.float32)
        return Description(vec, how, time.perf_counter() - t)


# --------------------------------------------------------------------------------- cached targets
_WORKER: DlibTeacher | None = None


def _describe_worker(item: tuple[str, bytes, float]) -> tuple[str, Description]:
    global _WORKER
    from model.faces import as_rgb_array
    from model.preprocess import ImageDecodeError, decode

    if _WORKER is None:
        _WORKER = DlibTeacher()
    key, data, fallback = item
    try:
        rgb = as_rgb_array(decode(data))
    except ImageDecodeError:
        return key, Description(None, "none", 0.0)
    return key, _WORKER.describe(rgb, pick="central", upsample=1, fallback=fallback)


@dataclass(frozen=True)
class TeacherTargets:
    """keys: "<set>/<identity>/<file>" (as `FaceCrops.keys`); vectors: float32 N×128, L2-normalised (NaN rows
    where the photo could not be decoded); how: per key, how the face was found."""

    keys: list[str]
    vectors: np.ndarray
    how: np.ndarray

    def lookup(self, keys: list[str]) -> np.ndarray:
        """float32 len(keys)×128: each key's normalised target, NaN rows for keys without one."""
        row = {k: i for i, k in enumerate(self.keys)}
        out = np.full((len(keys), self.vectors.shape[1]), np.nan, np.float32)
        for i, k in enumerate(keys):
            if k in row:
                out[i] = self.vectors[row[k]]
        return out


def _save(path: Path, done: dict[str, Description]) -> None:
    keys = sorted(done)
    vecs = np.stack([done[k].vector if done[k].vector is not None else np.full(DIM, np.nan, np.float32) for k in keys])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        keys=np.array(keys),
        vectors=vecs.astype(np.float32),
        how=np.array([done[k].how for k in keys]),
        seconds=np.array([done[k].seconds for k in keys], np.float32),
        version=VERSION,
    )
    tmp.replace(path)  # never half-written


def _load(path: Path) -> dict[str, Description]:
    if not path.is_file():
        return {}
    z = np.load(path, allow_pickle=False)
    if int(z["version"]) != VERSION:
        LOG.warning("%s was made by another teacher recipe: recomputing", path)
        return {}
    out = {}
    for k, v, how, s in zip(z["keys"].tolist(), z["vectors"], z["how"].tolist(), z["seconds"], strict=True):
        out[k] = Description(None if np.isnan(v).any() else v, how, float(s))
    return out


def _images(set_name: str, data_root: Path) -> Iterator[tuple[str, bytes]]:
    from training.data.face_cache import READERS

    for img in READERS[set_name](data_root):
        yield f"{set_name}/{img.identity}/{img.filename}", img.data


def teacher_targets(
    data_root: Path, cache_dir: Path, sets: tuple[str, ...], workers: int | None = None, save_every: int = 500
) -> TeacherTargets:
    """Teacher descriptors of every image of `sets`, from the cache where present, computed (with a progress
    bar, `workers` processes, default all cores) and cached otherwise. Vectors come back L2-normalised."""
    folder = cache_dir / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    hows: list[str] = []
    for set_name in sets:
        path = folder / f"{set_name}.npz"
        done = _load(path)
        todo = ((k, d, FALLBACK_BOX[set_name]) for k, d in _images(set_name, data_root) if k not in done)
        from training.data.face_cache import SET_SIZES

        total = SET_SIZES.get(set_name, 0) - len(done)
        if total > 0:
            require_teacher()
            n_workers = workers or os.cpu_count() or 1
            LOG.info("teacher %s: %d cached, ~%d to describe, %d workers", set_name, len(done), total, n_workers)
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                results = pool.map(_describe_worker, todo, chunksize=8)
                for i, (key, desc) in enumerate(tqdm(results, total=total, desc=f"teacher {set_name}", unit="img")):
                    done[key] = desc
                    if (i + 1) % save_every == 0:
                        _save(path, done)
            _save(path, done)
        for k in sorted(done):
            keys.append(k)
            vecs.append(done[k].vector if done[k].vector is not None else np.full(DIM, np.nan, np.float32))
            hows.append(done[k].how)
        counts = {h: sum(done[k].how == h for k in done) for h in ("detected", "upsampled", "fallback", "none")}
        LOG.info("teacher %s: %d images, %s", set_name, len(done), counts)
    v = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, DIM), np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)  # NaN rows stay NaN
    return TeacherTargets(keys, v, np.array(hows))


def centre(targets: np.ndarray) -> np.ndarray:
    """Targets (float32 N×D, normalised; NaN rows allowed) minus their mean, normalised again.

    The teacher's descriptors all lie in a narrow cone (measured on LFW: the mean of the normalised vectors
    has norm 0.91; two different people have cosine 0.83 on average, the same person 0.95). Regressed raw,
    the student first learns that common direction (1 - cos is already ~0.15 for a constant output) and the
    pairwise similarities it should copy differ by a few hundredths. Centred, different people sit near
    cosine 0, and every unit of the loss is about telling people apart. Cosine comparisons between centred
    vectors are what the student then learns, so the mean is taken over the training images only."""
    ok = ~np.isnan(targets).any(1)
    out = targets - targets[ok].mean(0, keepdims=True)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def teacher_card(sets: tuple[str, ...], views: str = "fixed") -> dict[str, Any]:
    """What a distilled model's card says of its teacher (views: the run's distill_views)."""
    targets = (
        f"one descriptor per original photo of {', '.join(sets)}; HOG detection, 5-point alignment; "
        "normalised, centred on the training images' mean, normalised again"
    )
    if views == "consistent":
        targets = (
            f"the descriptor of each augmented view the student saw of {', '.join(sets)} (the same draw applied "
            "to a 150x150 chip aligned from our detector's eyes; training/consistent.py), by the PyTorch port of "
            "the model; normalised, centred on the clean training chips' mean, normalised again"
        )
    return {
        "name": NAME,
        "source": "dlib-models (Davis King), through the face_recognition_models package",
        "licence": LICENCE,
        "trained_on": "about 3 million faces of 7,485 people (no LFW identities, per dlib-models README)",
        "targets": targets,
    }
