"""From a decoded photo to one aligned face crop: detect, choose, align. Shared by training and serving.

    img = decode(data)                                   # model.preprocess: PIL image, RGB or L, EXIF applied
    rgb = as_rgb_array(img)                              # H×W×3 uint8
    face = find_face(rgb, HaarFaceDetector())            # exactly one usable face, or a typed FaceError
    crop = align_face(rgb, face, AlignSpec())            # S×S×3 uint8, eyes on the template

Conventions (coordinates in pixels of the image passed in, x to the right, y down, (0, 0) the centre of the
top-left pixel, as OpenCV's warpAffine and resize use them):
  - A box is (x, y, w, h), its top-left corner and size. A box may extend past the image edge.
  - "left_eye" is the eye on the image's left (smaller x), i.e. the subject's right eye; "right_eye" the other.
    That is the order of ArcFace's five-point template, whose first point (38.29, 51.70) is the image-left eye.

Detectors implement `FaceDetector.detect(image) -> list[Face]`. `HaarFaceDetector` (OpenCV's Haar cascades,
shipped with opencv-python-headless, no download) is the default; `model.blazeface.BlazeFaceDetector`
(MediaPipe's BlazeFace, shipped as ONNX in model/detectors/, with six landmarks) is about five times faster;
`DlibFaceDetector` (dlib's HOG detector and 5-point landmarks) is used only where dlib and its landmark model
are installed. None imports torch. A model card names its detector (`detector_from_card`).
Numbers behind the default parameters are in bench/results/face_detection.md (bench/face_detection.py).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import cv2
import numpy as np
from PIL import Image

LOG = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
Point = tuple[float, float]

LEFT_EYE = "left_eye"
RIGHT_EYE = "right_eye"
NOSE = "nose"

# ArcFace / InsightFace's 112×112 template (insightface `arcface_dst`): the two eye points. Image-left first.
ARCFACE_LEFT_EYE: Point = (38.2946, 51.6963)
ARCFACE_RIGHT_EYE: Point = (73.5318, 51.5014)

# Where the eyes sit inside a Haar face box (HaarParams defaults), as fractions of the box's width and height:
# the mean over the 11,705 images of LFW (all 13,233) and ORL (all 400) whose largest Haar face got an eye
# pair (pooled by face, so LFW's 11,318 dominate; ORL alone gives (0.284, 0.397), (0.710, 0.402): its faces
# fill the frame and get relatively tighter boxes). Measured by `OMP_NUM_THREADS=1 python
# bench/face_detection.py`, section "Fallback eye positions" of bench/results/face_detection.md, which also
# gives the spread (std 0.017-0.025) and the fallback's error: median 0.07 interocular distances on LFW, 0.12
# on ORL, against 0.045 for the Haar eyes themselves (both measured against dlib's 5-point eyes). That was with
# 2.0.0's full-resolution face search; with today's downscaled search the same section gives (0.3050, 0.4024),
# (0.6815, 0.3978) on a 2,000-photo LFW sample and ORL, within a fifth of the spread. The constants stay: they
# are in the crop recipe of every face card (which carries its own) and of the training crop caches.
HAAR_BOX_LEFT_EYE: Point = (0.3090, 0.4049)
HAAR_BOX_RIGHT_EYE: Point = (0.6783, 0.3985)

# Below this (the shorter side of the box, in pixels of the input image) a face is too small to align to
# 112×112 without inventing most of its detail.
DEFAULT_MIN_FACE_SIZE = 40


# ---------------------------------------------------------------------------------------------------- errors


class FaceError(ValueError):
    """The image holds no single usable face. `code` is a short machine-readable reason for the HTTP layer."""

    code = "face_error"


class NoFaceError(FaceError):
    """The detector found no face. `image_size` is (width, height) of the searched image."""

    code = "no_face"

    def __init__(self, image_size: tuple[int, int], detector: str = "") -> None:
        self.image_size = image_size
        self.detector = detector
        by = f" by {detector}" if detector else ""
        super().__init__(f"no face found{by} in a {image_size[0]}×{image_size[1]} image")


class MultipleFacesError(FaceError):
    """More than one face large enough to use, and the caller asked for exactly one.

    `count` is how many, `boxes` their (x, y, w, h), largest first.
    """

    code = "multiple_faces"

    def __init__(self, count: int, boxes: Sequence[Box]) -> None:
        self.count = count
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        super().__init__(f"{count} faces found, expected one (boxes x, y, w, h: {self.boxes})")


class FaceTooSmallError(FaceError):
    """Faces were found but the largest is smaller than `min_size` (pixels, shorter side of its box)."""

    code = "face_too_small"

    def __init__(self, size: int, min_size: int, box: Box | None = None) -> None:
        self.size = int(size)
        self.min_size = int(min_size)
        self.box = tuple(int(v) for v in box) if box is not None else None
        super().__init__(f"largest face is {self.size} px, smaller than the minimum of {self.min_size} px")


# ------------------------------------------------------------------------------------------------- the face


@dataclass(frozen=True)
class Face:
    """One detected face.

    box: (x, y, w, h) in pixels of the image given to the detector; may extend past its edges.
    score: the detector's confidence, higher is surer; its scale depends on `detector` (Haar: the number of
        raw detections merged into the box; dlib: the HOG SVM margin).
    landmarks: named points (x, y) in image pixels: LEFT_EYE / RIGHT_EYE when found (both or neither), NOSE
        from dlib. Read-only.
    image_size: (width, height) of the image the face was found in.
    detector: which backend produced it ("haar", "dlib-hog").
    """

    box: Box
    score: float
    landmarks: Mapping[str, Point] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)
    detector: str = ""

    def __post_init__(self) -> None:
        if len(self.box) != 4 or self.box[2] <= 0 or self.box[3] <= 0:
            raise ValueError(f"box must be (x, y, w, h) with positive w, h; got {self.box}")
        object.__setattr__(self, "box", tuple(int(v) for v in self.box))
        points = {str(k): (float(v[0]), float(v[1])) for k, v in dict(self.landmarks).items()}
        if (LEFT_EYE in points) != (RIGHT_EYE in points):
            raise ValueError("landmarks must hold both eyes or neither")
        object.__setattr__(self, "landmarks", MappingProxyType(points))
        object.__setattr__(self, "score", float(self.score))

    @property
    def size(self) -> int:
        """The shorter side of the box, in pixels: what `find_face`'s `min_size` compares against."""
        return min(self.box[2], self.box[3])

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    @property
    def eyes(self) -> tuple[Point, Point] | None:
        """(left_eye, right_eye) in image pixels, image-left first; None when the detector found none."""
        if LEFT_EYE not in self.landmarks:
            return None
        return self.landmarks[LEFT_EYE], self.landmarks[RIGHT_EYE]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able types (an API response, a log line)."""
        return {
            "box": list(self.box),
            "score": self.score,
            "landmarks": {k: list(v) for k, v in self.landmarks.items()},
            "image_size": list(self.image_size),
            "detector": self.detector,
        }


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces. `detect` takes RGB uint8 H×W×3 (grey H×W also accepted) and returns every face found,
    most confident first, boxes and landmarks in that image's pixels. It never raises for "no face": that
    is an empty list (see `find_face` for the typed errors)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


def _validate_image(image: np.ndarray) -> None:
    """Raise unless `image` is an H×W×3 RGB or H×W grey uint8 array (what every detector takes)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 numpy array, got {type(image).__name__} {getattr(image, 'dtype', '')}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected an H×W×3 RGB or H×W grey image, got shape {image.shape}")


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an H×W×3 RGB or H×W grey uint8 array; return it as grey H×W uint8 (contiguous)."""
    _validate_image(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def as_rgb_array(image: Image.Image) -> np.ndarray:
    """A PIL image (e.g. from `model.preprocess.decode`) -> RGB uint8 H×W×3, what detectors and `align_face` take."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------- Haar


# The eye cascades searched in each face box: (cascade file, image side searched, centre offset x, y as
# fractions of the detected eye box's width, height). The 2splits cascades are trained per eye: "righteye" is
# the subject's right eye, on the image's left. Their boxes include the eyebrow, so the eye centre sits below
# the box's centre; the offsets move each box centre to the eye centre. They are the median offsets from a
# box centre to dlib's 5-point eye centre (mean of the two corners) over 300 LFW (seeded sample) and 400 ORL
# faces, stable to ±0.01 between the two sets; with them, on another 400 LFW images, the median error
# against dlib's eyes fell from 0.08 to 0.04 interocular distances and the eye-pair rate rose from 59% to 80%
# (2splits + haarcascade_eye, against haarcascade_eye alone without offsets).
# The 2splits pair is searched first; haarcascade_eye only when that gives no plausible pair (about a third of
# LFW's faces), which saves the eye search about a third of its time and finds the same pairs (measured in
# bench/results/face_detection.md).
DEFAULT_EYE_CASCADES: tuple[tuple[str, str, float, float], ...] = (
    ("haarcascade_righteye_2splits.xml", "left", 0.01, 0.195),
    ("haarcascade_lefteye_2splits.xml", "right", -0.06, 0.195),
)
DEFAULT_EYE_FALLBACK: tuple[tuple[str, str, float, float], ...] = (
    ("haarcascade_eye.xml", "left", 0.06, 0.055),
    ("haarcascade_eye.xml", "right", 0.02, 0.055),
)


@dataclass(frozen=True)
class HaarParams:
    """Parameters of `HaarFaceDetector`; the defaults are measured in bench/results/face_detection.md.

    face_cascade: a file name in `cv2.data.haarcascades`.
    scale_factor, min_neighbors, min_face: `detectMultiScale`'s scaleFactor, minNeighbors and minSize (pixels,
        at detection resolution).
    search_face: faces are searched on a copy of the image downscaled by search_face / min_face (never
        upscaled), so that the smallest face searched spans search_face pixels there: about the cascade's own
        window (20×20 for alt2), where it still finds faces, while the search, whose cost grows with the pixel
        count, gets (min_face / search_face)² cheaper. Boxes are mapped back to the image; the eyes are searched
        at full resolution, so alignment keeps its precision. 0: search at full resolution.
    max_side: images whose longer side exceeds this are searched on a copy downscaled to it (speed; boxes are
        mapped back), so faces smaller than min_face × (longer side / max_side) are not found. min_face defaults to
    DEFAULT_MIN_FACE_SIZE: smaller faces would be refused as too small anyway, and the smallest scales are most
    of the search's work (24 → 40 px: about 25% less time per LFW photo, same faces found on a 80-image sample).
    small_face_probe: when the searches at min_face find nothing, one more search down to this size (0: none), so
    that a small face is reported as too small, with its size, rather than as no face.
    pad_retry: when nothing is found, search again with a replicated border of this fraction of the longer
        side on every edge: the cascade needs some context around a face, and faces that fill the frame (ORL's
        92×112 portraits) are otherwise missed. A second pass only for images where the first found nothing,
        because padding every image adds spurious boxes on LFW (measured). 0 disables it.
    equalize: histogram-equalise the grey image before searching.
    eye_cascades: (file, "left" | "right" image half, offset x, offset y) per eye search; see
        DEFAULT_EYE_CASCADES. Empty: no eye search (every face then aligns by the box fallback).
    eye_fallback: more eye searches of the same form, run only when eye_cascades' candidates make no plausible
        pair; the pair is then chosen among the candidates of both.
    eye_width: each face box is resized to this width before the eye search, so that eyes of small and large
        faces alike fall within the eye cascades' range (eyes 12%–45% of it).
    eye_band: the vertical band of the face box searched for eyes, as fractions of its height.
    eye_scale_factor, eye_min_neighbors: for the eye cascades.
    eye_prior: where the pair selection expects the eyes, fractions of the box (rounded, a prior only).
    """

    face_cascade: str = "haarcascade_frontalface_alt2.xml"
    scale_factor: float = 1.1
    min_neighbors: int = 4
    min_face: int = 40
    search_face: int = 24
    small_face_probe: int = 24
    max_side: int = 1024
    pad_retry: float = 0.15
    equalize: bool = True
    eye_cascades: tuple[tuple[str, str, float, float], ...] = DEFAULT_EYE_CASCADES
    eye_fallback: tuple[tuple[str, str, float, float], ...] = DEFAULT_EYE_FALLBACK
    eye_width: int = 120
    eye_band: tuple[float, float] = (0.15, 0.6)
    eye_scale_factor: float = 1.05
    eye_min_neighbors: int = 3
    eye_prior: tuple[Point, Point] = ((0.30, 0.39), (0.69, 0.39))

    # What a parameter added later meant before it existed (full-resolution face search; all eye cascades in
    # one stage), for `from_dict` on older cards.
    LEGACY: ClassVar[dict[str, Any]] = {"search_face": 0, "eye_fallback": ()}

    def __post_init__(self) -> None:
        if self.scale_factor <= 1.0 or self.eye_scale_factor <= 1.0:
            raise ValueError("scale factors must be > 1")
        if self.min_neighbors < 0 or self.eye_min_neighbors < 0 or self.min_face < 1 or self.max_side < 32:
            raise ValueError("min_neighbors >= 0, min_face >= 1 and max_side >= 32 required")
        if self.small_face_probe < 0:
            raise ValueError(f"small_face_probe must be >= 0, got {self.small_face_probe}")
        if not 0.0 <= self.pad_retry <= 1.0:
            raise ValueError(f"pad_retry must be in [0, 1], got {self.pad_retry}")
        if not 0.0 <= self.eye_band[0] < self.eye_band[1] <= 1.0:
            raise ValueError(f"eye_band must be 0 <= top < bottom <= 1, got {self.eye_band}")
        if self.search_face < 0:
            raise ValueError(f"search_face must be >= 0, got {self.search_face}")
        if self.eye_width < 40:
            raise ValueError(f"eye_width must be >= 40, got {self.eye_width}")
        for entry in self.eye_cascades + self.eye_fallback:
            if len(entry) != 4 or entry[1] not in ("left", "right"):
                raise ValueError(f"eye cascade entries are (file, 'left' | 'right', dx, dy), got {entry}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eye_cascades"] = [list(e) for e in self.eye_cascades]
        d["eye_fallback"] = [list(e) for e in self.eye_fallback]
        d["eye_band"] = list(self.eye_band)
        d["eye_prior"] = [list(p) for p in self.eye_prior]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HaarParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Haar parameter(s) {sorted(unknown)}")
        # A card written before a parameter existed was measured without it: it keeps that behaviour.
        kw = {**cls.LEGACY, **d}
        for key in ("eye_cascades", "eye_fallback"):
            if key in kw:
                kw[key] = tuple((str(f), str(s), float(dx), float(dy)) for f, s, dx, dy in kw[key])
        if "eye_band" in kw:
            kw["eye_band"] = tuple(float(v) for v in kw["eye_band"])
        if "eye_prior" in kw:
            kw["eye_prior"] = tuple((float(p[0]), float(p[1])) for p in kw["eye_prior"])
        return cls(**kw)


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FileNotFoundError(f"cannot load the Haar cascade {path}")
    return cascade


class HaarFaceDetector:
    """Faces with OpenCV's Haar cascades; eyes with per-eye cascades inside each face box.

    Thread-safe: each thread gets its own cascade objects (OpenCV does not promise that one CascadeClassifier
    may be used from several threads at once). Construction reads the cascade files once, to fail early.
    """

    name = "haar"

    def __init__(self, params: HaarParams | None = None) -> None:
        self.params = params or HaarParams()
        self._local = threading.local()
        self._cascades()  # fail now, not on the first request

    def _cascades(self) -> dict[str, cv2.CascadeClassifier]:
        cascades = getattr(self._local, "cascades", None)
        if cascades is None:
            p = self.params
            names = {p.face_cascade, *(e[0] for e in p.eye_cascades + p.eye_fallback)}
            cascades = {n: _load_cascade(n) for n in sorted(names)}
            self._local.cascades = cascades
        return cascades

    def detect(self, image: np.ndarray) -> list[Face]:
        """RGB uint8 H×W×3 (or grey H×W) -> every face, most confident (most merged detections) first."""
        grey = _check_image(image)
        h, w = grey.shape
        p = self.params
        cascades = self._cascades()
        # The search at min_face, then (only when it found nothing) once more down to small_face_probe, so that
        # a small face is reported as too small (find_face's min_size refuses it) rather than as no face.
        sizes = [p.min_face] + ([p.small_face_probe] if 0 < p.small_face_probe < p.min_face else [])
        for min_face in sizes:
            scale = min(1.0, p.max_side / max(h, w), p.search_face / min_face if p.search_face else 1.0)
            small = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            if p.equalize:
                small = cv2.equalizeHist(small)
            min_search = max(1, round(min_face * scale))
            boxes, counts = self._search(cascades[p.face_cascade], small, 0, min_search)
            if len(boxes) == 0 and p.pad_retry > 0:
                pad = max(1, round(p.pad_retry * max(small.shape)))
                boxes, counts = self._search(cascades[p.face_cascade], small, pad, min_search)
            if len(boxes):
                break
        faces = []
        for (bx, by, bw, bh), count in zip(boxes, counts, strict=True):
            box = (round(bx / scale), round(by / scale), max(1, round(bw / scale)), max(1, round(bh / scale)))
            eyes = self._eyes(cascades, grey, box)
            landmarks = {LEFT_EYE: eyes[0], RIGHT_EYE: eyes[1]} if eyes else {}
            faces.append(Face(box, float(count), landmarks, (w, h), self.name))
        faces.sort(key=lambda f: (-f.score, -f.area))
        return faces

    def _search(
        self, cascade: cv2.CascadeClassifier, grey: np.ndarray, pad: int, min_face: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N×4, in `grey`'s pixels) and their merged-detection counts, optionally on a padded copy."""
        p = self.params
        img = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else grey
        boxes, counts = cascade.detectMultiScale2(
            img, scaleFactor=p.scale_factor, minNeighbors=p.min_neighbors, minSize=(min_face, min_face)
        )
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        boxes[:, :2] -= pad
        return boxes, np.asarray(counts, dtype=np.int64).reshape(-1)

    def _eyes(
        self, cascades: Mapping[str, cv2.CascadeClassifier], grey: np.ndarray, box: Box
    ) -> tuple[Point, Point] | None:
        """The most plausible (left, right) eye pair inside `box`, in image pixels, or None.

        Searches the band `eye_band` of the box, resized to `eye_width`: each cascade of `eye_cascades` in its
        half (the halves overlap by 10% of the width), its boxes' centres shifted by its offsets. A pair must be
        0.25–0.7 box widths apart and tilted less than 30°; among those, the one nearest `eye_prior` (sum of
        the two distances) wins. When no pair qualifies, the `eye_fallback` cascades add their candidates and
        the choice is made again among all of them.
        """
        p = self.params
        if not p.eye_cascades:
            return None
        x, y, w, h = box
        img_h, img_w = grey.shape
        x0, x1 = max(0, x), min(img_w, x + w)
        y0, y1 = max(0, y + round(p.eye_band[0] * h)), min(img_h, y + round(p.eye_band[1] * h))
        if x1 - x0 < 8 or y1 - y0 < 4:
            return None
        k = p.eye_width / w
        interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        band = cv2.equalizeHist(cv2.resize(grey[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=interpolation))
        min_eye, max_eye = max(8, round(0.12 * p.eye_width)), round(0.45 * p.eye_width)
        mid_band = (x + w / 2 - x0) * k  # the face's centre line, in band pixels
        overlap = round(0.1 * p.eye_width)
        split = int(np.clip(round(mid_band), 1, band.shape[1] - 1))
        halves = {"left": (0, min(band.shape[1], split + overlap)), "right": (max(0, split - overlap), band.shape[1])}
        (plx, ply), (prx, pry) = p.eye_prior
        prior_left, prior_right = (x + plx * w, y + ply * h), (x + prx * w, y + pry * h)
        candidates: dict[str, list[Point]] = {"left": [], "right": []}
        best = None
        for stage in (p.eye_cascades, p.eye_fallback):
            for file, side, dx, dy in stage:
                lo, hi = halves[side]
                found = cascades[file].detectMultiScale(
                    band[:, lo:hi],
                    scaleFactor=p.eye_scale_factor,
                    minNeighbors=p.eye_min_neighbors,
                    minSize=(min_eye, min_eye),
                    maxSize=(max_eye, max_eye),
                )
                for ex, ey, ew, eh in np.asarray(found).reshape(-1, 4):
                    # Band pixel centre -> image pixels (pixel centres at integer coordinates, as cv2.resize has).
                    cx = lo + ex + (ew - 1) / 2 + dx * ew
                    cy = ey + (eh - 1) / 2 + dy * eh
                    point = (x0 + (cx + 0.5) / k - 0.5, y0 + (cy + 0.5) / k - 0.5)
                    if (point[0] < x + w / 2) == (side == "left"):
                        candidates[side].append(point)
            best = _best_eye_pair(candidates, w, prior_left, prior_right)
            if best is not None:
                break
        return best


def _best_eye_pair(
    candidates: Mapping[str, Sequence[Point]], width: float, prior_left: Point, prior_right: Point
) -> tuple[Point, Point] | None:
    """The (left, right) candidate pair 0.25–0.7 × `width` apart, tilted < 30°, nearest the priors; or None."""
    best, best_cost = None, math.inf
    for left in candidates["left"]:
        for right in candidates["right"]:
            dx, dy = right[0] - left[0], right[1] - left[1]
            if not 0.25 * width <= dx <= 0.7 * width or abs(dy) > dx * math.tan(math.radians(30)):
                continue
            cost = math.dist(left, prior_left) + math.dist(right, prior_right)
            if cost < best_cost:
                best, best_cost = (left, right), cost
    return best


# ----------------------------------------------------------------------------------------------------- dlib


DLIB_LANDMARKS_ENV = "SIAMFACE_DLIB_LANDMARKS"
DLIB_LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"


def dlib_landmarks_path() -> Path | None:
    """Where dlib's 5-point landmark model is: $SIAMFACE_DLIB_LANDMARKS, else the copy in the
    `face_recognition_models` package if installed (located without importing it: its __init__ needs
    pkg_resources, which setuptools >= 81 no longer ships), else None."""
    env = os.environ.get(DLIB_LANDMARKS_ENV)
    if env:
        return Path(env)
    import importlib.util

    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "models" / DLIB_LANDMARKS_FILE
        if candidate.is_file():
            return candidate
    return None


def dlib_available() -> bool:
    """True when `DlibFaceDetector()` can be built: dlib importable and the 5-point model found."""
    import importlib.util

    if importlib.util.find_spec("dlib") is None:
        return False
    path = dlib_landmarks_path()
    return path is not None and path.is_file()


class DlibFaceDetector:
    """Faces with dlib's HOG + linear SVM frontal detector; eyes (and nose) from dlib's 5-point shape predictor.

    Optional: needs the `dlib` package (e.g. `pip install dlib-bin`) and shape_predictor_5_face_landmarks.dat
    (see `dlib_landmarks_path`). upsample: how many times dlib doubles the image before searching (its
    detector's smallest face is about 80×80 px); None picks 1 for images whose shorter side is under 400 px,
    else 0. pad_retry: as HaarParams.pad_retry (a replicated border, tried only when the first search found
    nothing). Scores are the SVM margin (dlib's `run` with adjust_threshold 0: every returned face is > 0).
    Thread-safety: dlib's detector objects are used under a lock.
    """

    name = "dlib-hog"

    def __init__(
        self,
        upsample: int | None = None,
        landmarks_path: str | os.PathLike[str] | None = None,
        pad_retry: float = 0.15,
    ) -> None:
        import dlib  # optional dependency: imported only when this backend is asked for

        path = Path(landmarks_path) if landmarks_path is not None else dlib_landmarks_path()
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"dlib's {DLIB_LANDMARKS_FILE} not found: set {DLIB_LANDMARKS_ENV} or install face_recognition_models"
            )
        self.upsample = upsample
        self.pad_retry = pad_retry
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        """RGB uint8 H×W×3 (or grey H×W) -> every face, highest SVM score first."""
        grey = _check_image(image)  # validates; dlib's HOG works on grey
        h, w = grey.shape
        upsample = self.upsample if self.upsample is not None else int(min(h, w) < 400)
        pad = 0
        with self._lock:
            rects, scores, _ = self._detector.run(grey, upsample, 0.0)
            if not rects and self.pad_retry > 0:
                pad = max(1, round(self.pad_retry * max(h, w)))
                grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                rects, scores, _ = self._detector.run(grey, upsample, 0.0)
            shapes = [self._predictor(grey, r) for r in rects]
        faces = []
        for r, score, shape in zip(rects, scores, shapes, strict=True):
            pts = [(float(shape.part(i).x - pad), float(shape.part(i).y - pad)) for i in range(shape.num_parts)]
            # The 5-point model: 0-1 the corners of one eye, 2-3 of the other, 4 below the nose.
            a = ((pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2)
            b = ((pts[2][0] + pts[3][0]) / 2, (pts[2][1] + pts[3][1]) / 2)
            left, right = (a, b) if a[0] < b[0] else (b, a)
            box = (r.left() - pad, r.top() - pad, r.right() - r.left() + 1, r.bottom() - r.top() + 1)
            faces.append(Face(box, float(score), {LEFT_EYE: left, RIGHT_EYE: right, NOSE: pts[4]}, (w, h), self.name))
        faces.sort(key=lambda f: -f.score)
        return faces


def make_detector(name: str = "haar", **kwargs: Any) -> FaceDetector:
    """A detector by name with today's defaults: "haar" (kwargs: HaarParams fields), "blazeface" (kwargs:
    `model.blazeface.BlazeFaceParams` fields) or "dlib" (kwargs: DlibFaceDetector's)."""
    if name == "haar":
        return HaarFaceDetector(HaarParams(**kwargs))
    if name == "blazeface":
        from model.blazeface import BlazeFaceDetector, BlazeFaceParams  # imports this module

        return BlazeFaceDetector(BlazeFaceParams(**kwargs))
    if name in ("dlib", "dlib-hog"):
        return DlibFaceDetector(**kwargs)
    raise ValueError(f"unknown face detector {name!r}; expected 'haar', 'blazeface' or 'dlib'")


def detector_block(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A card's `face.detector` block {"name", "params"} for "haar" or "blazeface": today's default parameters
    with `overrides` (field names of HaarParams / BlazeFaceParams, JSON types) on top, validated, every
    parameter written out (so that the block keeps meaning the same when the defaults change)."""
    if name == "haar":
        params = HaarParams.from_dict({**HaarParams().to_dict(), **(overrides or {})}).to_dict()
    elif name == "blazeface":
        from model.blazeface import BlazeFaceParams

        params = BlazeFaceParams.from_dict({**BlazeFaceParams().to_dict(), **(overrides or {})}).to_dict()
    else:
        raise ValueError(f"unknown face detector {name!r} for a card; expected 'haar' or 'blazeface'")
    return {"name": name, "params": params}


def detector_from_card(block: Mapping[str, Any]) -> FaceDetector:
    """A model card's `face.detector` block {"name", "params"} (JSON types) as a detector.

    Parameters a card does not name take the values they had before they existed (HaarParams.LEGACY), so that
    an older card keeps the detector its metrics were measured with.
    """
    name, params = block["name"], dict(block.get("params") or {})
    if name == "haar":
        return HaarFaceDetector(HaarParams.from_dict(params))
    if name == "blazeface":
        from model.blazeface import BlazeFaceDetector, BlazeFaceParams

        return BlazeFaceDetector(BlazeFaceParams.from_dict(params))
    return make_detector(name, **params)


# ------------------------------------------------------------------------------------------------ choosing


def find_face(
    image: np.ndarray,
    detector: FaceDetector,
    *,
    min_size: int = DEFAULT_MIN_FACE_SIZE,
    allow_multiple: bool | Literal["largest"] = False,
) -> Face:
    """The one face to use in `image` (RGB uint8 H×W×3 or grey H×W), or a typed `FaceError`.

    Faces whose `size` (shorter box side, pixels) is under `min_size` are ignored while at least one face
    reaches it (a small face in the background does not make a portrait "several faces"). Then:
      - no face at all: `NoFaceError`;
      - faces, but all under `min_size`: `FaceTooSmallError` with the largest one's size;
      - several usable faces: `MultipleFacesError` if `allow_multiple` is False; the largest box if it is
        "largest"; the detector's most confident face if it is True.
    """
    if allow_multiple not in (False, True, "largest"):
        raise ValueError(f"allow_multiple must be False, True or 'largest', got {allow_multiple!r}")
    faces = detector.detect(image)
    if not faces:
        raise NoFaceError((image.shape[1], image.shape[0]), getattr(detector, "name", ""))
    usable = [f for f in faces if f.size >= min_size]
    if not usable:
        largest = max(faces, key=lambda f: f.area)
        raise FaceTooSmallError(largest.size, min_size, largest.box)
    if len(usable) == 1:
        return usable[0]
    if allow_multiple is False:
        by_area = sorted(usable, key=lambda f: -f.area)
        raise MultipleFacesError(len(usable), [f.box for f in by_area])
    if allow_multiple == "largest":
        return max(usable, key=lambda f: (f.area, f.score))
    return max(usable, key=lambda f: (f.score, f.area))


# ------------------------------------------------------------------------------------------------ aligning


@dataclass(frozen=True)
class AlignSpec:
    """The geometry of an aligned crop; lives in the model card so serving aligns exactly as training did.

    size: the crop is size×size pixels.
    left_eye / right_eye: where the eye centres land in the crop (pixels; image-left eye first). Default:
        ArcFace's 112×112 template.
    fallback_left_eye / fallback_right_eye: where the eyes are assumed to be, as fractions (x of the box width,
        y of its height) of a Haar face box, when the detector found no eyes. Measured on LFW and ORL; see
        HAAR_BOX_LEFT_EYE. They describe Haar boxes: another detector's boxes sit differently on the face
        (dlib always returns eyes, so this matters only for Haar).
    """

    size: int = 112
    left_eye: Point = ARCFACE_LEFT_EYE
    right_eye: Point = ARCFACE_RIGHT_EYE
    fallback_left_eye: Point = HAAR_BOX_LEFT_EYE
    fallback_right_eye: Point = HAAR_BOX_RIGHT_EYE

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        for name in ("left_eye", "right_eye"):
            x, y = getattr(self, name)
            if not (0 <= x < self.size and 0 <= y < self.size):
                raise ValueError(f"{name} {(x, y)} must lie inside the {self.size}×{self.size} crop")
        for name in ("fallback_left_eye", "fallback_right_eye"):
            x, y = getattr(self, name)
            if not (0 < x < 1 and 0 < y < 1):
                raise ValueError(f"{name} {(x, y)} must be fractions of the box in (0, 1)")
        if self.left_eye[0] >= self.right_eye[0] or self.fallback_left_eye[0] >= self.fallback_right_eye[0]:
            raise ValueError("the left eye (image-left) must have the smaller x")

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "left_eye": list(self.left_eye),
            "right_eye": list(self.right_eye),
            "fallback_left_eye": list(self.fallback_left_eye),
            "fallback_right_eye": list(self.fallback_right_eye),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlignSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown align keys {sorted(unknown)}")
        kw: dict[str, Any] = {k: (float(v[0]), float(v[1])) for k, v in d.items() if k != "size"}
        if "size" in d:
            kw["size"] = int(d["size"])
        return cls(**kw)


def similarity_from_eyes(src: tuple[Point, Point], dst: tuple[Point, Point]) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, translation; no reflection) mapping src[i] to dst[i].

    Two point pairs determine it exactly. As complex numbers, z -> a·z + b with a = (d1 − d0) / (s1 − s0).
    """
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    if abs(s1 - s0) < 1e-6:
        raise ValueError(f"the two source points coincide: {src}")
    a = (d1 - d0) / (s1 - s0)
    b = d0 - a * s0
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray | Sequence[Point]) -> np.ndarray:
    """Apply a 2×3 affine matrix to N×2 points; returns N×2 float64."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def alignment_eyes(face: Face, spec: AlignSpec) -> tuple[tuple[Point, Point], Literal["landmarks", "box"]]:
    """The eye centres alignment uses, in image pixels, and where they came from.

    The detector's eye landmarks when present ("landmarks"); otherwise the spec's fallback fractions placed
    on the box ("box"): (x + fx·w, y + fy·h).
    """
    if face.eyes is not None:
        return face.eyes, "landmarks"
    x, y, w, h = face.box
    (lx, ly), (rx, ry) = spec.fallback_left_eye, spec.fallback_right_eye
    return ((x + lx * w, y + ly * h), (x + rx * w, y + ry * h)), "box"


def alignment_matrix(face: Face, spec: AlignSpec) -> np.ndarray:
    """The 2×3 similarity taking image pixels to crop pixels: eyes (or the box fallback) onto the template."""
    eyes, _ = alignment_eyes(face, spec)
    return similarity_from_eyes(eyes, (spec.left_eye, spec.right_eye))


def align_face(image: np.ndarray, face: Face, spec: AlignSpec | None = None) -> np.ndarray:
    """Warp `face` out of `image` into the canonical crop: S×S×3 uint8 for RGB H×W×3 input (S×S for grey H×W).

    A similarity transform puts the eye centres on spec's template (`alignment_matrix`); pixels from outside
    the image repeat its edge (BORDER_REPLICATE), bilinear interpolation. The same call serves training data
    preparation and serving input.
    """
    spec = spec or AlignSpec()
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("expected a uint8 H×W×3 or H×W image")
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"expected 3 channels, got shape {image.shape}")
    matrix = alignment_matrix(face, spec)
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (spec.size, spec.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def detect_and_align(
    image: np.ndarray,
    detector: FaceDetector,
    spec: AlignSpec | None = None,
    *,
    min_size: int = DEFAULT_MIN_FACE_SIZE,
    allow_multiple: bool | Literal["largest"] = False,
) -> tuple[np.ndarray, Face]:
    """`find_face` then `align_face`: (S×S×3 uint8 crop, the face used). Raises `FaceError` subclasses."""
    face = find_face(image, detector, min_size=min_size, allow_multiple=allow_multiple)
    return align_face(image, face, spec), face
