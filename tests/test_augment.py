"""AffineAugment: identity at p=0, deterministic per generator, shape- and roughly ink-preserving."""

from __future__ import annotations

import torch

from training.augment import AffineAugment


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
