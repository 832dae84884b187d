"""The image pipeline shared by training and serving, and the identity-folder loader built on it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.preprocess import ImageDecodeError, PreprocessSpec, decode, prepare, prepare_batch
from training.data.folder import load_identity_folder


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_prepare_resizes_inverts_and_scales() -> None:
    img = Image.new("L", (105, 105), 255)  # white paper
    img.paste(0, (0, 0, 105, 52))  # black ink over the top half
    x = prepare(img, PreprocessSpec(size=(28, 28), invert=True))
    assert x.shape == (1, 28, 28)
    assert x.dtype == np.float32
    assert x[:, :10].min() == pytest.approx(1.0)  # ink becomes bright
    assert x[:, -10:].max() == pytest.approx(0.0)  # paper becomes dark


def test_prepare_rgb_and_channel_conversion() -> None:
    img = Image.new("RGB", (40, 30), (255, 0, 0))
    rgb = prepare(img, PreprocessSpec(size=(16, 20), channels=3, invert=False))
    assert rgb.shape == (3, 16, 20)
    np.testing.assert_allclose(rgb[:, 0, 0], [1.0, 0.0, 0.0])
    grey = prepare(img, PreprocessSpec(size=(16, 20), channels=1, invert=False))
    assert grey.shape == (1, 16, 20)  # colour collapses to luminance
    assert 0.2 < grey[0, 0, 0] < 0.4


def test_decode_round_trip_and_typed_error() -> None:
    img = Image.new("L", (8, 8), 7)
    assert np.asarray(decode(png_bytes(img))).tolist() == np.asarray(img).tolist()
    with pytest.raises(ImageDecodeError):
        decode(b"definitely not an image")
    with pytest.raises(ImageDecodeError):
        decode(png_bytes(img)[:40])  # truncated


def test_spec_validation_and_dict_round_trip() -> None:
    spec = PreprocessSpec(size=(35, 35), resample="lanczos")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="channels"):
        PreprocessSpec(channels=2)
    with pytest.raises(ValueError, match="resample"):
        PreprocessSpec(resample="cubic-ish")
    with pytest.raises(ValueError, match="unknown preprocess keys"):
        PreprocessSpec.from_dict({**spec.to_dict(), "gamma": 2.2})
    assert prepare_batch([], spec).shape == (0, 1, 35, 35)


def test_identity_folder_reads_classes_and_skips_broken_files(glyph_folder: Path) -> None:
    (glyph_folder / "class_0" / "broken.png").write_bytes(b"not a png")
    (glyph_folder / "lonely").mkdir()
    Image.new("L", (28, 28)).save(glyph_folder / "lonely" / "only.png")
    data = load_identity_folder(glyph_folder, PreprocessSpec(invert=False), min_per_class=2)
    assert data.class_names == [f"class_{k}" for k in range(6)]  # "lonely" has too few images
    assert len(data) == 60
    assert np.bincount(data.labels).tolist() == [10] * 6
    assert data.images.dtype == np.uint8
    assert data.images.max() == 255


def test_identity_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_identity_folder(tmp_path / "nope", PreprocessSpec())
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folder"):
        load_identity_folder(tmp_path, PreprocessSpec())
