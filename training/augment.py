"""Koch et al.'s affine distortions, applied to a whole batch on its device.

Each image gets T = (rotation θ, shear ρx ρy, scale sx sy, translation tx ty), each component drawn
with probability `p` (else the identity), θ ∈ [-10°, 10°], ρ ∈ [-0.3, 0.3], s ∈ [0.8, 1.2],
t ∈ [-2, 2] px at 105×105 (expressed here as a fraction of the image side, so it scales with size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineAugment:
    rotation_deg: float = 10.0
    shear: float = 0.3
    scale: tuple[float, float] = (0.8, 1.2)
    translate: float = 2.0 / 105.0
    p: float = 0.5

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
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
