"""Aligned face crops of LFW, ORL and Extended Yale B, made once by `model.faces` and cached.

Every image goes through the serving pipeline's own steps (`model.preprocess.decode`, a detector, and
`model.faces.align_face`), so the net trains on exactly what production feeds it. Per image two crops:

- `crops`, the training / protocol crop: the detected face nearest the image centre (LFW's labelled person
  is centred by construction; a bystander is not). Where the detector found nothing, the set's median
  detected box (relative to the image size) stands in, and `method` says "default-box"; where it found a
  face but no eyes, the box fallback of `AlignSpec` places them ("box"); else "landmarks".
- `e2e` (LFW only), what the service would do with the raw photo: the largest usable face
  (`find_face(..., allow_multiple="largest")`), and `e2e_ok` False where it finds none, so that end-to-end
  scores count detection failures against the model.

The cache is one .npz per set under `cache_dir/faces/`, keyed by a hash of everything that shapes a crop
(align spec, detector and its parameters, channels, this module's version); a set already cached is not
redone, so an interrupted build resumes at the set it was on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.faces import (
    DEFAULT_MIN_FACE_SIZE,
    AlignSpec,
    Face,
    FaceDetector,
    FaceError,
    align_face,
    as_rgb_array,
    detector_block,
    detector_from_card,
    find_face,
)
from model.preprocess import ImageDecodeError, PreprocessSpec, decode, prepare
from training.config import FACE_SETS, TrainConfig
from training.data.base import ImageSet
from training.data.faces import (
    FaceImage,
    iter_lfw_images,
    iter_orl_images,
    iter_yaleb_images,
    load_lfw_protocol,
    split_subjects,
)

LOG = logging.getLogger(__name__)
VERSION = 1  # bump when the crop recipe changes, so old caches are not reused
READERS = {"lfw": iter_lfw_images, "orl": iter_orl_images, "yaleb": iter_yaleb_images}
SET_SIZES = {"lfw": 13233, "orl": 400, "yaleb": 2414}  # for the progress bar only


@dataclass(frozen=True)
class FaceCrops:
    """Aligned crops of one or more face sets.

    keys: "<set>/<identity>/<file>" per image, e.g. "lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg".
    identity: "<set>/<identity>" per image (sets never share people).
    crops: uint8 N×S×S×C, the training / protocol crop (S = AlignSpec.size, C = channels).
    method: per image "landmarks", "box" or "default-box" (how the crop was placed, see module doc).
    e2e: uint8 N×S×S×C, the service's crop of the raw photo (meaningful where e2e_ok).
    e2e_ok: bool N; False where the service would find no usable face (and for non-LFW sets).
    """

    keys: list[str]
    identity: list[str]
    crops: np.ndarray
    method: np.ndarray
    e2e: np.ndarray
    e2e_ok: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.identity) == len(self.crops) == len(self.method) == len(self.e2e) == len(self.e2e_ok) == n):
            raise ValueError("FaceCrops fields must have one entry per image")
        object.__setattr__(self, "_rows", {k: i for i, k in enumerate(self.keys)})

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, key: str) -> int:
        try:
            return self._rows[key]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"no face crop for {key!r}") from None

    def model_input(self, rows: np.ndarray, spec: PreprocessSpec, e2e: bool = False) -> np.ndarray:
        """float32 len(rows)×C×H×W in [0, 1]: the crops of `rows` through `model.preprocess.prepare`, exactly
        as serving prepares an aligned crop."""
        source = self.e2e if e2e else self.crops
        c, (h, w) = spec.channels, spec.size
        out = np.empty((len(rows), c, h, w), dtype=np.float32)
        for i, r in enumerate(rows):
            crop = source[r]
            out[i] = prepare(Image.fromarray(crop[..., 0] if crop.shape[-1] == 1 else crop), spec)
        return out

    def select(self, mask: np.ndarray) -> FaceCrops:
        idx = np.flatnonzero(mask)
        return FaceCrops(
            keys=[self.keys[i] for i in idx],
            identity=[self.identity[i] for i in idx],
            crops=self.crops[idx],
            method=self.method[idx],
            e2e=self.e2e[idx],
            e2e_ok=self.e2e_ok[idx],
        )

    @staticmethod
    def concat(parts: list[FaceCrops]) -> FaceCrops:
        return FaceCrops(
            keys=[k for p in parts for k in p.keys],
            identity=[i for p in parts for i in p.identity],
            crops=np.concatenate([p.crops for p in parts]),
            method=np.concatenate([p.method for p in parts]),
            e2e=np.concatenate([p.e2e for p in parts]),
            e2e_ok=np.concatenate([p.e2e_ok for p in parts]),
        )


def _centre_face(faces: list[Face], width: int, height: int, min_size: int) -> Face | None:
    """The face whose box centre is nearest the image centre, preferring faces of at least `min_size`."""
    if not faces:
        return None
    big = [f for f in faces if f.size >= min_size] or faces

    def off_centre(f: Face) -> float:
        x, y, w, h = f.box
        return (x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2

    return min(big, key=off_centre)


def _channels(crop: np.ndarray, channels: int) -> np.ndarray:
    """S×S×3 RGB uint8 -> S×S×channels (grey by ITU-R 601 luma, as PIL's convert("L"))."""
    if channels == 3:
        return crop
    return np.asarray(Image.fromarray(crop).convert("L"))[..., None]


class _Remembering:
    """A detector that answers a second `detect` on the very same array from memory: `find_face` detects
    again, and detection is most of the cost of building the cache."""

    def __init__(self, detector: FaceDetector) -> None:
        self.inner = detector
        self.name = detector.name
        self._last: tuple[np.ndarray, list[Face]] | None = None

    def detect(self, image: np.ndarray) -> list[Face]:
        if self._last is None or self._last[0] is not image:
            self._last = (image, self.inner.detect(image))
        return self._last[1]


def _build_set(
    name: str, images: Iterator[FaceImage], detector: FaceDetector, align: AlignSpec, channels: int, min_size: int
) -> FaceCrops:
    keys, identity, crops, method, e2e, e2e_ok = [], [], [], [], [], []
    deferred: list[tuple[int, np.ndarray]] = []  # (row, rgb) of images with no detection
    boxes_rel: list[tuple[float, float, float, float]] = []
    s = align.size
    blank = np.zeros((s, s, channels), dtype=np.uint8)
    detector = _Remembering(detector)
    for img in tqdm(images, total=SET_SIZES.get(name), desc=f"aligning {name}", unit="img"):
        try:
            rgb = as_rgb_array(decode(img.data))
        except ImageDecodeError as e:
            LOG.warning("skipping %s/%s: %s", img.identity, img.filename, e)
            continue
        height, width = rgb.shape[:2]
        faces = detector.detect(rgb)
        row = len(keys)
        keys.append(f"{name}/{img.identity}/{img.filename}")
        identity.append(f"{name}/{img.identity}")
        face = _centre_face(faces, width, height, min_size)
        if face is None:
            deferred.append((row, rgb))
            crops.append(blank)
            method.append("default-box")
        else:
            x, y, w, h = face.box
            boxes_rel.append((x / width, y / height, w / width, h / height))
            crops.append(_channels(align_face(rgb, face, align), channels))
            method.append("landmarks" if face.eyes is not None else "box")
        ok = False
        if name == "lfw":
            try:
                chosen = find_face(rgb, detector, min_size=min_size, allow_multiple="largest")
                e2e.append(crops[-1] if chosen == face else _channels(align_face(rgb, chosen, align), channels))
                ok = True
            except FaceError:
                e2e.append(blank)
        else:
            e2e.append(blank)
        e2e_ok.append(ok)
    if deferred:
        if not boxes_rel:
            raise RuntimeError(f"the detector found no face in any {name} image")
        bx, by, bw, bh = np.median(np.array(boxes_rel), axis=0)
        LOG.info("%s: %d images without a detected face use the median box %s", name, len(deferred), (bx, by, bw, bh))
        for row, rgb in deferred:
            height, width = rgb.shape[:2]
            box = (round(bx * width), round(by * height), max(1, round(bw * width)), max(1, round(bh * height)))
            crops[row] = _channels(
                align_face(rgb, Face(box=box, score=0.0, image_size=(width, height)), align), channels
            )
    return FaceCrops(
        keys=keys,
        identity=identity,
        crops=np.stack(crops),
        method=np.array(method),
        e2e=np.stack(e2e),
        e2e_ok=np.array(e2e_ok, dtype=bool),
    )


def default_face_block(min_size: int = DEFAULT_MIN_FACE_SIZE, detector: str = "haar") -> dict[str, Any]:
    """The crop recipe in the model card's `face` format: alignment geometry, detector ("haar" or "blazeface")
    and its parameters, smallest usable face. `model.faces`'s and `model.blazeface`'s current defaults."""
    return {"align": AlignSpec().to_dict(), "detector": detector_block(detector), "min_face": min_size}


def recipe_parts(face: dict[str, Any]) -> tuple[AlignSpec, FaceDetector, int]:
    """(align spec, detector, min face size) from a card-format `face` block."""
    return AlignSpec.from_dict(face["align"]), detector_from_card(face["detector"]), int(face["min_face"])


def cache_key(face: dict[str, Any], channels: int) -> str:
    """A hash of everything that shapes a crop, so a changed recipe never reuses old crops."""
    recipe = {"version": VERSION, "face": face, "channels": channels}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def load_face_crops(
    data_root: Path,
    cache_dir: Path,
    sets: tuple[str, ...] = FACE_SETS,
    face: dict[str, Any] | None = None,
    channels: int = 1,
) -> FaceCrops:
    """The aligned crops of `sets` (in that order) made with the recipe `face` (a card-format face block;
    default: `default_face_block()`), built on first use (minutes for LFW) and read from
    `cache_dir/faces/<set>-<key>.npz` afterwards. A model is evaluated with the recipe it trained with
    (its run's face_block.json, its card's `face`), whatever `model.faces`'s defaults have become since."""
    face = face or default_face_block()
    align, detector, min_size = recipe_parts(face)
    key = cache_key(face, channels)
    parts = []
    for name in sets:
        if name not in READERS:
            raise ValueError(f"unknown face set {name!r}; expected one of {sorted(READERS)}")
        path = Path(cache_dir) / "faces" / f"{name}-{key}.npz"
        if not path.is_file():
            part = _build_set(name, READERS[name](data_root), detector, align, channels, min_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two builders never write one file
            np.savez(
                tmp,
                keys=np.array(part.keys),
                identity=np.array(part.identity),
                crops=part.crops,
                method=part.method,
                e2e=part.e2e,
                e2e_ok=part.e2e_ok,
            )
            os.replace(tmp, path)  # never a half-written cache
            counts = {m: int((part.method == m).sum()) for m in ("landmarks", "box", "default-box")}
            LOG.info(
                "cached %d %s crops at %s (%s; end-to-end ok %d)", len(part), name, path, counts, part.e2e_ok.sum()
            )
        with np.load(path) as z:
            parts.append(
                FaceCrops(
                    keys=z["keys"].tolist(),
                    identity=z["identity"].tolist(),
                    crops=z["crops"],
                    method=z["method"],
                    e2e=z["e2e"],
                    e2e_ok=z["e2e_ok"],
                )
            )
    return FaceCrops.concat(parts)


def orl_heldout(n_holdout: int, seed: int) -> list[str]:
    """The ORL subjects ("orl/s7", ...) a face run never trains on, for the held-out report."""
    subjects = [f"orl/s{i}" for i in range(1, 41)]
    return split_subjects(subjects, n_holdout, seed)[1]


def training_mask(crops: FaceCrops, cfg: TrainConfig) -> np.ndarray:
    """Which crops a run with `cfg` may train on: its sets, minus the LFW people its protocol scores
    (View 1 test people, or View 2 fold K) and minus the held-out ORL subjects."""
    sets = np.array([k.split("/", 1)[0] for k in crops.keys])
    ident = np.array(crops.identity)
    mask = np.isin(sets, cfg.face_set_names)
    if "lfw" in cfg.face_set_names and cfg.face_protocol != "all":
        protocol = load_lfw_protocol(Path(cfg.data_root))
        split = (
            protocol.view1_split()
            if cfg.face_protocol == "view1"
            else protocol.view2_split(int(cfg.face_protocol[4:]) - 1)
        )
        banned = [f"lfw/{n}" for n in split.test_people]
        mask &= ~np.isin(ident, banned)
    if "orl" in cfg.face_set_names and cfg.holdout_subjects:
        mask &= ~np.isin(ident, orl_heldout(cfg.holdout_subjects, cfg.seed))
    return mask


def read_face_block(run_dir: Path) -> dict[str, Any]:
    """The crop recipe a face run trained with (its face_block.json), or the current default for runs made
    before runs recorded one."""
    path = Path(run_dir) / "face_block.json"
    return json.loads(path.read_text()) if path.is_file() else default_face_block()


def face_training_set(cfg: TrainConfig, spec: PreprocessSpec, face: dict[str, Any] | None = None) -> ImageSet:
    """The ImageSet a face run trains on (see `training_mask`), prepared with `spec` from crops made with
    the recipe `face` (default: `default_face_block()`). Each identity is its own class and its own group, so
    `split_by_group` holds out whole people for validation. With `cfg.teacher`, each image carries the
    teacher's embedding of its original photo as `targets` (training/teacher.py; computed once and cached), or
    with `cfg.distill_views = "consistent"` its master chip as `teacher_inputs` (training/consistent.py)."""
    face = face or default_face_block()
    crops = load_face_crops(Path(cfg.data_root), Path(cfg.cache_dir), cfg.face_set_names, face, channels=cfg.channels)
    chosen = crops.select(training_mask(crops, cfg))
    names, labels = np.unique(np.array(chosen.identity), return_inverse=True)
    images = np.round(chosen.model_input(np.arange(len(chosen)), spec) * 255.0).astype(np.uint8)
    LOG.info("face training set: %d images of %d people (%s)", len(images), len(names), cfg.face_protocol)
    targets, teacher_inputs = None, None
    if cfg.teacher and cfg.distill_views == "consistent":
        # The teacher describes each step's views itself (training/consistent.py): it needs the master chips.
        from training.consistent import teacher_chip_block

        master = load_face_crops(
            Path(cfg.data_root), Path(cfg.cache_dir), cfg.face_set_names, teacher_chip_block(face), channels=3
        )
        teacher_inputs = np.ascontiguousarray(master.crops[[master.row(k) for k in chosen.keys]].transpose(0, 3, 1, 2))
    elif cfg.teacher:
        from training.teacher import centre, teacher_targets

        teacher = teacher_targets(Path(cfg.data_root), Path(cfg.cache_dir), cfg.face_set_names)
        targets = centre(teacher.lookup(chosen.keys))
        LOG.info("teacher targets for %d of %d images", int((~np.isnan(targets).any(1)).sum()), len(targets))
    return ImageSet(
        images=images,
        labels=labels.astype(np.int64),
        class_names=names.tolist(),
        groups=labels.astype(np.int64),
        group_names=names.tolist(),
        targets=targets,
        teacher_inputs=teacher_inputs,
    )
