"""Training-time augmentation, applied to a whole batch on its device: Koch et al.'s affine distortions
for characters, and a face variant (milder geometry, mirror images, lighting) for faces.

Every augmentation is `(x float N×C×H×W in [0, 1], generator) -> same shape`, drawing all its randomness
from `generator`, so that the trainer can reseed it per step and a resumed run sees the same batches.

Koch's: each image gets T = (rotation θ, shear ρx ρy, scale sx sy, translation tx ty), each component drawn
with probability `p` (else the identity), θ ∈ [-10°, 10°], ρ ∈ [-0.3, 0.3], s ∈ [0.8, 1.2],
t ∈ [-2, 2] px at 105×105 (expressed here as a fraction of the image side, so it scales with size).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.config import TrainConfig

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's convert("L")


@dataclass(frozen=True)
class AffineAugment:
    rotation_deg: float = 10.0
    shear: float = 0.3
    scale: tuple[float, float] = (0.8, 1.2)
    translate: float = 2.0 / 105.0
    p: float = 0.5
    padding: str = "zeros"  # grid_sample's padding_mode: zeros (ink on paper) or border (photos)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: float N×C×H×W -> same shape, each image distorted independently (zeros fill the border)."""
        return warp(x, self.matrices(x.shape[0], generator), self.padding)

    def matrices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """float32 N×2×3 draws of T in affine_grid's convention: output pixel u (coordinates in [-1, 1])
        samples the input at T·(u, 1)."""

        def draw(lo: float, hi: float, identity: float) -> torch.Tensor:
            v = torch.rand(n, generator=generator) * (hi - lo) + lo
            keep = torch.rand(n, generator=generator) < self.p
            return torch.where(keep, v, torch.full_like(v, identity))

        theta = draw(-self.rotation_deg, self.rotation_deg, 0.0) * (math.pi / 180.0)
        shx, shy = draw(-self.shear, self.shear, 0.0), draw(-self.shear, self.shear, 0.0)
        sx, sy = draw(*self.scale, 1.0), draw(*self.scale, 1.0)
        # affine_grid works in [-1, 1] coordinates: a shift of t·side pixels is 2t there.
        tx, ty = draw(-self.translate, self.translate, 0.0) * 2, draw(-self.translate, self.translate, 0.0) * 2
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear = torch.stack([torch.stack([torch.ones(n), shx], -1), torch.stack([shy, torch.ones(n)], -1)], -2)
        scale = torch.diag_embed(torch.stack([sx, sy], -1))
        return torch.cat([rot @ shear @ scale, torch.stack([tx, ty], -1)[..., None]], -1)


def warp(x: torch.Tensor, matrices: torch.Tensor, padding: str, size: int | None = None) -> torch.Tensor:
    """x float N×C×H×W resampled through N×2×3 affine_grid matrices (bilinear; `padding`: grid_sample's
    padding_mode), output H×W, or size×size."""
    shape = list(x.shape) if size is None else [x.shape[0], x.shape[1], size, size]
    grid = F.affine_grid(matrices.to(x.device, x.dtype), shape, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


@dataclass(frozen=True)
class FaceView:
    """One face augmentation draw per image, applicable to any crop of the same faces.

    sample: float32 N×2×3, output pixel u -> input point (affine_grid's convention), the mirror folded in;
    grey: bool N; gamma, contrast, brightness: float32 N (exponent offset, contrast offset, additive)."""

    sample: torch.Tensor
    grey: torch.Tensor
    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.sample, self.grey, self.gamma, self.contrast, self.brightness)

    def __getitem__(self, idx: torch.Tensor | slice | tuple[torch.Tensor, ...]) -> FaceView:
        """The draws of some images (an index, a slice, or (rows, views) into a stacked FaceView)."""
        return FaceView(*(t[idx] for t in self.tensors()))

    @staticmethod
    def stack(views: list[FaceView]) -> FaceView:
        """K FaceViews of the same N images -> one whose tensors have a second, view axis (N×K×...)."""
        return FaceView(*(torch.stack(ts, 1) for ts in zip(*(v.tensors() for v in views), strict=True)))


@dataclass(frozen=True)
class FaceAugment:
    """For aligned face crops: a mild affine (the aligner already fixed the eyes; this covers its
    errors), a mirror image half the time, optionally a grey copy of a colour crop (`grey`: its chance), and
    lighting: brightness, contrast and gamma per image, so that Yale B's harsh side light and LFW's press photos
    look alike to the net. Borders replicate the edge (a black band would be a cue no real crop has)."""

    affine: AffineAugment = AffineAugment(
        rotation_deg=10.0, shear=0.05, scale=(0.9, 1.1), translate=0.06, p=0.8, padding="border"
    )
    flip: bool = True
    grey: float = 0.0  # chance of showing an RGB crop in grey (ITU-R BT.601 luminance in every channel)
    brightness: float = 0.25  # additive, ± this
    contrast: float = 0.3  # multiplicative about the image mean, 1 ± this
    gamma: float = 0.3  # exponent in [1 - g, 1 + g]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.draw(x.shape[0], x.shape[1], generator))

    def draw(self, n: int, channels: int, generator: torch.Generator) -> FaceView:
        """N draws for crops with `channels` channels (grey copies only of colour crops)."""
        sample = self.affine.matrices(n, generator)

        def uniform(half_width: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * half_width

        if self.flip:
            # Mirroring the warped image samples the input at T·(-u_x, u_y): negate T's first column.
            mirror = torch.rand(n, generator=generator) < 0.5
            sample[:, :, 0] = torch.where(mirror[:, None], -sample[:, :, 0], sample[:, :, 0])
        grey = torch.zeros(n, dtype=torch.bool)
        if self.grey > 0 and channels == 3:
            grey = torch.rand(n, generator=generator) < self.grey
        return FaceView(sample, grey, uniform(self.gamma), uniform(self.contrast), uniform(self.brightness))

    def apply(self, x: torch.Tensor, view: FaceView, size: int | None = None) -> torch.Tensor:
        """x float N×C×H×W in [0, 1] -> N×C×H×W (or size×size), each image through its draw of `view`. The
        geometry is in x's own [-1, 1] frame (for another crop of the same faces, map `view.sample` to it)."""
        n = x.shape[0]

        def per_image(v: torch.Tensor) -> torch.Tensor:
            return v.to(x.device, x.dtype).view(n, 1, 1, 1)

        x = warp(x, view.sample, self.affine.padding, size)
        if x.shape[1] == 3 and bool(view.grey.any()):
            luma = (x * LUMA.to(x.device, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
            x = torch.where(view.grey.to(x.device).view(n, 1, 1, 1), luma, x)
        x = x.clamp(0, 1).pow(1 + per_image(view.gamma))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + per_image(view.contrast)) + mean + per_image(view.brightness)
        return x.clamp(0, 1)


def build_augment(cfg: TrainConfig) -> Augment | None:
    """The augmentation `cfg` asks for, or None: Koch's for Omniglot and identity folders, the face one
    for faces (with flips as `cfg.hflip` says)."""
    if not cfg.augment:
        return None
    if cfg.data == "faces":
        return FaceAugment(flip=cfg.hflip, grey=cfg.grey_p)
    return AffineAugment()
