"""From an image file to the tensor a model sees: one function for training, evaluation and serving.

The card's `preprocess` block is a `PreprocessSpec`; `prepare` applies it. The network's ONNX graph takes
float32 N×C×H×W in [0, 1] (this module's output); mean/std normalisation happens inside the graph, so a
client only has to resize, set channels and (for ink-on-paper data such as Omniglot) invert.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageDecodeError(ValueError):
    """The bytes are not an image this pipeline can read."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the model's input.

    size: (H, W) after resizing. channels: 1 (grey) or 3 (RGB). invert: map v -> 1 - v after scaling
    to [0, 1] (Omniglot is black ink on white; the nets see bright strokes on a dark background).
    mean/std: per-channel normalisation applied inside the network, recorded here for completeness.
    resample: a key of RESAMPLE.
    """

    size: tuple[int, int] = (28, 28)
    channels: int = 1
    invert: bool = True
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resample: str = "box"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) with positive entries, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        known = {"size", "channels", "invert", "mean", "std", "resample", "extra"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocess keys {sorted(unknown)}")
        return cls(
            size=tuple(d["size"]),  # type: ignore[arg-type]
            channels=int(d["channels"]),
            invert=bool(d["invert"]),
            mean=tuple(float(v) for v in d.get("mean", (0.0,))),
            std=tuple(float(v) for v in d.get("std", (1.0,))),
            resample=str(d.get("resample", "box")),
            extra=dict(d.get("extra", {})),
        )


def decode(data: bytes) -> Image.Image:
    """Decode image bytes (any format Pillow reads), or raise ImageDecodeError."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # Pillow raises many types for bad input; one typed error for callers.
        raise ImageDecodeError(f"cannot decode image: {e}") from e
    return img


def prepare(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """One PIL image -> float32 C×H×W in [0, 1], as `spec` says."""
    mode = "L" if spec.channels == 1 else "RGB"
    img = image.convert(mode)
    h, w = spec.size
    if img.size != (w, h):
        img = img.resize((w, h), RESAMPLE[spec.resample])
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if spec.channels == 1 else arr.transpose(2, 0, 1)
    if spec.invert:
        arr = 1.0 - arr
    return np.ascontiguousarray(arr)


def prepare_batch(images: list[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """A list of PIL images -> float32 N×C×H×W in [0, 1]."""
    if not images:
        c, (h, w) = spec.channels, spec.size
        return np.zeros((0, c, h, w), dtype=np.float32)
    return np.stack([prepare(im, spec) for im in images])
