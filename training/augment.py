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
        n = x.shape[0]

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
        mat = rot @ shear @ scale
        affine = torch.cat([mat, torch.stack([tx, ty], -1)[..., None]], -1).to(x.device, x.dtype)
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)


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
        n = x.shape[0]
        x = self.affine(x, generator)

        def uniform(half_width: float) -> torch.Tensor:
            v = (torch.rand(n, generator=generator) * 2 - 1) * half_width
            return v.to(x.device, x.dtype).view(n, 1, 1, 1)

        if self.flip:
            mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(mirror, x.flip(3), x)
        if self.grey > 0 and x.shape[1] == 3:
            luma = (x * LUMA.to(x.device, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
            greyed = (torch.rand(n, generator=generator) < self.grey).to(x.device).view(n, 1, 1, 1)
            x = torch.where(greyed, luma, x)
        x = x.clamp(0, 1).pow(1 + uniform(self.gamma))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + uniform(self.contrast)) + mean + uniform(self.brightness)
        return x.clamp(0, 1)


def build_augment(cfg: TrainConfig) -> Augment | None:
    """The augmentation `cfg` asks for, or None: Koch's for Omniglot and identity folders, the face one
    for faces (with flips as `cfg.hflip` says)."""
    if not cfg.augment:
        return None
    if cfg.data == "faces":
        return FaceAugment(flip=cfg.hflip, grey=cfg.grey_p)
    return AffineAugment()
