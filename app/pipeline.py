"""Image bytes → face → embedding, exactly as the model card says (detector, alignment, preprocessing).

Everything here is synchronous CPU work; the routers call it through `anyio.to_thread` (off the event loop,
at most `embed_concurrency` at once). Errors are `model`'s typed ones: `ImageDecodeError` (and
`ImageTooLargeError`) from decoding, `FaceError` subclasses (`no_face`, `multiple_faces`, `face_too_small`)
from detection; `app.errors` maps them to HTTP.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from model.artifact import Artifact, ArtifactError
from model.calibration import Calibration
from model.faces import (
    AlignSpec,
    Face,
    FaceDetector,
    FaceTooSmallError,
    NoFaceError,
    align_face,
    as_rgb_array,
    detector_from_card,
    find_face,
)
from model.preprocess import decode, prepare_batch

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceEmbedding:
    """One face of a photo: the detection, its aligned crop (S×S×3 uint8) and its embedding (D float32)."""

    face: Face
    crop: np.ndarray
    embedding: np.ndarray


def build_detector(block: dict[str, Any]) -> FaceDetector:
    """The card's `face.detector` {"name", "params"} as a detector."""
    return detector_from_card(block)


def model_id(artifact: Artifact) -> str:
    """Which model made an embedding: name, version and a hash of the graph (a re-export under the same version
    with other weights is another model)."""
    digest = hashlib.sha256((artifact.path / "model.onnx").read_bytes()).hexdigest()[:16]
    return f"{artifact.card.name}@{artifact.card.version}#{digest}"


class FacePipeline:
    """A face model's serving pipeline. Thread-safe (the detector keeps per-thread cascades; ONNX Runtime's
    `run` may be called from several threads)."""

    def __init__(self, artifact: Artifact, max_pixels: int) -> None:
        card = artifact.card
        if not card.face:
            raise ArtifactError(f"{artifact.path} is not a face model: its card has no `face` block")
        calibration = card.calibration
        if calibration is None:
            raise ArtifactError(f"{artifact.path}: the card has no thresholds.verification calibration")
        self.artifact = artifact
        self.calibration: Calibration = calibration
        self.distance = artifact.distance
        self.detector = build_detector(card.face["detector"])
        self.align = AlignSpec.from_dict(card.face["align"])
        self.min_face = int(card.face["min_face"])
        self.max_pixels = max_pixels
        self.model_id = model_id(artifact)
        self.crop_spec = json.dumps(self.align.to_dict(), sort_keys=True)
        self.dim = card.embedding_dim

    def _rgb(self, data: bytes) -> np.ndarray:
        return as_rgb_array(decode(data, max_pixels=self.max_pixels))

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Aligned crops (S×S×3 uint8) -> N×D float32 through the card's preprocessing."""
        images = [Image.fromarray(c) for c in crops]
        return self.artifact.embed(prepare_batch(images, self.artifact.spec))

    def one(self, data: bytes, allow_multiple: bool | Literal["largest"] = False) -> FaceEmbedding:
        """The one face of a photo (see `model.faces.find_face` for `allow_multiple`), embedded."""
        rgb = self._rgb(data)
        face = find_face(rgb, self.detector, min_size=self.min_face, allow_multiple=allow_multiple)
        crop = align_face(rgb, face, self.align)
        return FaceEmbedding(face, crop, self.embed_crops([crop])[0])

    def all(self, data: bytes, max_faces: int) -> list[FaceEmbedding]:
        """Every usable face of a photo (shorter box side ≥ the card's min_face), largest first, at most
        `max_faces`; raises NoFaceError / FaceTooSmallError as `find_face` would."""
        rgb = self._rgb(data)
        faces = self.detector.detect(rgb)
        if not faces:
            raise NoFaceError((rgb.shape[1], rgb.shape[0]), getattr(self.detector, "name", ""))
        usable = sorted((f for f in faces if f.size >= self.min_face), key=lambda f: -f.area)[:max_faces]
        if not usable:
            largest = max(faces, key=lambda f: f.area)
            raise FaceTooSmallError(largest.size, self.min_face, largest.box)
        crops = [align_face(rgb, f, self.align) for f in usable]
        vectors = self.embed_crops(crops)
        return [FaceEmbedding(f, c, v) for f, c, v in zip(usable, crops, vectors, strict=True)]

    @staticmethod
    def crop_png(crop: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()

    def embed_png_crops(self, pngs: list[bytes]) -> np.ndarray:
        """Stored crops (PNG bytes, from `crop_png`) -> N×D: re-embedding a gallery with a new model."""
        crops = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8) for b in pngs]
        return self.embed_crops(crops)
