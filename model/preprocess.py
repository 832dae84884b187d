"""From an image file to the tensor a model sees: one function for training, evaluation and serving.

`decode` turns untrusted bytes into a normalised PIL image (RGB or L, 8-bit, EXIF orientation applied) or
raises `ImageDecodeError` / `ImageTooLargeError`; faces are then found and aligned by `model.faces`.
The card's `preprocess` block is a `PreprocessSpec`; `prepare` applies it. The network's ONNX graph takes
float32 N×C×H×W in [0, 1] (this module's output); mean/std normalisation happens inside the graph, so a
client only has to resize, set channels and (for ink-on-paper data such as Omniglot) invert.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

LOG = logging.getLogger(__name__)

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageDecodeError(ValueError):
    """The bytes are not an image this pipeline can read (undecodable, truncated, unsupported format or mode).

    `code` is a short machine-readable reason that the HTTP layer maps to a response.
    """

    code = "undecodable"


class ImageTooLargeError(ImageDecodeError):
    """The image's header declares more pixels than allowed (a decompression-bomb guard).

    `pixels` is the declared width × height (None when only Pillow's own check saw it and its message could not
    be parsed); `limit` is the cap that refused it.
    """

    code = "image_too_large"

    def __init__(self, pixels: int | None, limit: int | None, size: tuple[int, int] | None = None) -> None:
        self.pixels = pixels
        self.limit = limit
        self.size = size
        dims = f" ({size[0]}×{size[1]})" if size else ""
        super().__init__(f"image has {pixels if pixels is not None else 'too many'} pixels{dims}, limit is {limit}")


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


# 40 megapixels: more than any phone camera (a 12 MP photo is 12e6), far below what would exhaust memory
# (40e6 RGB pixels are 120 MB decoded). Pillow's own bomb limit (Image.MAX_IMAGE_PIXELS, ~89 MP) still applies
# on top of this one: it warns above it and raises above twice it, whatever `max_pixels` says.
DEFAULT_MAX_PIXELS = 40_000_000

# The formats a photo arrives in, as Pillow names them. A whitelist: Pillow also reads formats we never want to
# parse from untrusted bytes (EPS shells out to Ghostscript, for one). "JPEG" also opens MPO, the multi-picture
# JPEG many phone cameras write; "PPM" covers PGM, the format of the ORL faces.
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")

_BOMB_MESSAGE = re.compile(r"Image size \((\d+) pixels\) exceeds limit of (\d+) pixels")


def decode(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] | None = DEFAULT_FORMATS,
) -> Image.Image:
    """Decode untrusted image bytes into a normalised PIL image, or raise a typed error; never anything else.

    Contract:
      - Returns a fully loaded image in mode "RGB" (colour sources) or "L" (grey sources), 8 bits per channel,
        with its EXIF orientation applied (so pixel row 0 is the top of the scene).
      - Alpha (RGBA, LA, palette transparency) is composited onto white; CMYK and YCbCr become RGB (no colour
        management); 16-bit and 32-bit grey ("I;16", "I", "F") are scaled to 8 bits (see `_to_8bit`).
      - Only the first frame of animated or multi-frame files is read.
      - Raises `ImageTooLargeError` when the header declares more than `max_pixels` pixels (None: no cap of
        ours), before any pixel data is decoded. Pillow's DecompressionBombError (and its
        DecompressionBombWarning, where a process turns warnings into errors) map to the same error.
      - Raises `ImageDecodeError` for anything else that is not a readable image: unknown or disallowed format
        (`formats`, None allows every format Pillow knows), corrupt or truncated data, unsupported mode.
        Truncated files raise as long as `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is left False (Pillow's default;
        it is process-wide, and setting it True makes Pillow fill the missing rows with grey instead).
      - Capping the number of bytes is the caller's job (read at most N bytes from the request).
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        LOG.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images will decode without error")
    try:
        img = Image.open(io.BytesIO(data), formats=list(formats) if formats is not None else None)
    except Image.DecompressionBombError as e:
        raise _too_large_from_pillow(e, max_pixels) from e
    except Image.DecompressionBombWarning as e:  # only raised when warnings are errors (python -W error)
        raise _too_large_from_pillow(e, max_pixels) from e
    except Exception as e:  # Pillow raises many types for bad input; one typed error for callers.
        raise ImageDecodeError(f"cannot decode image: {e}") from e
    width, height = img.size
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        img.close()
        raise ImageTooLargeError(pixels, max_pixels, (width, height))
    try:
        img.load()
        img = _exif_transpose(img)
        return _normalise_mode(img)
    except ImageDecodeError:
        raise
    except Exception as e:
        raise ImageDecodeError(f"cannot decode image: {e}") from e


def _too_large_from_pillow(e: Exception, max_pixels: int | None) -> ImageTooLargeError:
    match = _BOMB_MESSAGE.search(str(e))
    if match is None:
        return ImageTooLargeError(None, max_pixels)
    pixels, pillow_limit = int(match.group(1)), int(match.group(2))
    limit = pillow_limit if max_pixels is None else min(max_pixels, pillow_limit)
    return ImageTooLargeError(pixels, limit)


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag. A corrupt EXIF block is logged and ignored: the pixels are still good."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:  # EXIF parsing errors come in many types; the orientation is best-effort.
        LOG.warning("ignoring unreadable EXIF orientation: %s", e)
        return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """Grey images with more than 8 bits ("I;16*", "I", "F") -> "L".

    16-bit modes are scaled by 255/65535. "I" (32-bit int; older Pillow opened 16-bit PNGs as "I") is scaled
    the same way when its values fit 16 bits, kept when they already fit 8 bits, and min-max stretched
    otherwise; "F" is taken as [0, 1] when it fits there, else min-max stretched.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = arr.astype(np.float64) * (255.0 / 65535.0)
    else:
        arr = arr.astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ImageDecodeError(f"image of mode {img.mode} has non-finite values")
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            out = arr * 255.0
        elif img.mode == "I" and lo >= 0 and hi <= 255:
            out = arr
        elif img.mode == "I" and lo >= 0 and hi <= 65535:
            out = arr * (255.0 / 65535.0)
        else:
            out = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> "RGB" or "L" (8-bit), alpha composited onto white."""
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        return _to_8bit(img)
    elif mode == "La":
        img = img.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        img = img.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode in ("CMYK", "YCbCr", "HSV"):
        img = img.convert("RGB")
    if img.mode in ("LA", "RGBA"):
        grey = img.mode == "LA"
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(background, img.convert("RGBA"))
        return flat.convert("L" if grey else "RGB")
    if img.mode in ("RGB", "L"):
        return img
    raise ImageDecodeError(f"unsupported image mode {img.mode!r}")


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
