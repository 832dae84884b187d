"""AffineAugment: identity at p=0, deterministic per generator, shape- and roughly ink-preserving."""

from __future__ import annotations

import pytest
import torch

from training.augment import AffineAugment, FaceAugment, build_augment
from training.config import TrainConfig


def _images(n: int = 6, channels: int = 1, size: int = 28, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.zeros(n, channels, size, size, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    x[:, :, 8:20, 8:20] = torch.rand(n, channels, 12, 12, generator=g, dtype=dtype)  # ink away from the border
    return x


def test_p0_is_identity() -> None:
    for dtype in (torch.float32, torch.float64):
        x = _images(dtype=dtype)
        out = AffineAugment(p=0.0)(x, torch.Generator().manual_seed(1))
        assert out.dtype == dtype
        torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_same_seed_same_output() -> None:
    x, aug = _images(), AffineAugment(p=0.5)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_shape_preserved() -> None:
    x = _images(n=3, channels=3, size=20)
    assert AffineAugment(p=1.0)(x, torch.Generator().manual_seed(0)).shape == x.shape


def test_p1_distorts_every_image_but_keeps_ink() -> None:
    x = _images(n=8)
    out = AffineAugment(p=1.0)(x, torch.Generator().manual_seed(5))
    change = (out - x).abs().flatten(1).amax(1)
    assert (change > 0.05).all()
    ratio = out.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ratio > 0.5) & (ratio < 2.0)).all()


def _face_augment(grey: float) -> FaceAugment:
    """FaceAugment with every other draw off, so that only the grey step acts."""
    return FaceAugment(affine=AffineAugment(p=0.0), flip=False, grey=grey, brightness=0.0, contrast=0.0, gamma=0.0)


def test_grey_shows_colour_crops_as_their_luminance() -> None:
    x = torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    always = _face_augment(1.0)(x, torch.Generator().manual_seed(1))
    for c in range(3):
        torch.testing.assert_close(always[:, c], luma, atol=1e-5, rtol=0)
    torch.testing.assert_close(_face_augment(0.0)(x, torch.Generator().manual_seed(1)), x, atol=1e-5, rtol=0)
    half = _face_augment(0.5)(x, torch.Generator().manual_seed(1))
    spread = (half.amax(1) - half.amin(1)).amax((1, 2))  # per crop: the largest difference between channels
    greyed = spread < 1e-5
    assert 0 < int(greyed.sum()) < len(x)  # some crops grey, the others untouched
    torch.testing.assert_close(half[~greyed], x[~greyed], atol=1e-5, rtol=0)
    one = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))  # grey input: nothing to do
    torch.testing.assert_close(_face_augment(1.0)(one, torch.Generator().manual_seed(1)), one, atol=1e-5, rtol=0)


def test_grey_p_is_checked_and_reaches_the_augmentation() -> None:
    cfg = TrainConfig(data="faces", channels=3, grey_p=0.2, hflip=True)
    aug = build_augment(cfg)
    assert isinstance(aug, FaceAugment)
    assert aug.grey == 0.2
    with pytest.raises(ValueError, match="probability"):
        TrainConfig(data="faces", channels=3, grey_p=1.5)
    with pytest.raises(ValueError, match="channels = 3"):
        TrainConfig(data="faces", channels=1, grey_p=0.2)
