"""Network definitions (torch). Training builds them; export turns them into ONNX for serving.

Every net is rebuilt from its config dataclass alone (`EmbedderConfig.from_dict(ckpt["model_config"])`),
so a checkpoint carries everything needed to make the module again without the training code.

Input to every embedder: float32 N×C×H×W in [0, 1] (see `model.preprocess`). Output: N×D embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ConvNetConfig:
    """A stack of [conv3×3 → BatchNorm → ReLU → max-pool 2×2] blocks, then flatten (Snell et al.'s
    "Conv-4" with the default widths). At 28×28 four blocks leave 64×1×1, a 64-d embedding.

    embedding_dim: if set, a linear layer maps the flattened features to this size.
    """

    in_channels: int = 1
    input_size: int = 28
    widths: tuple[int, ...] = (64, 64, 64, 64)
    embedding_dim: int | None = None

    def feature_dim(self) -> int:
        side = self.input_size
        for _ in self.widths:
            side //= 2
        if side < 1:
            raise ValueError(f"{len(self.widths)} pooling blocks shrink {self.input_size}px to nothing")
        return self.widths[-1] * side * side

    def output_dim(self) -> int:
        return self.embedding_dim or self.feature_dim()


@dataclass(frozen=True)
class KochNetConfig:
    """Koch, Zemel & Salakhutdinov (2015), section 3.2: conv(64@10) → pool → conv(128@7) → pool →
    conv(128@4) → pool → conv(256@4) → flatten → dense(4096) with a sigmoid. ReLU between convolutions.

    The defaults are the paper's (105×105 input). Smaller `input_size` with smaller `kernels` gives the
    reduced-resolution variant for CPU runs; the card records which was used.
    """

    in_channels: int = 1
    input_size: int = 105
    channels: tuple[int, int, int, int] = (64, 128, 128, 256)
    kernels: tuple[int, int, int, int] = (10, 7, 4, 4)
    hidden: int = 4096

    def feature_side(self) -> int:
        side = self.input_size
        for i, k in enumerate(self.kernels):
            side = side - k + 1
            if i < 3:
                side //= 2
            if side < 1:
                raise ValueError(f"kernels {self.kernels} do not fit a {self.input_size}px input")
        return side

    def output_dim(self) -> int:
        return self.hidden


@dataclass(frozen=True)
class ResNetConfig:
    """A compact residual face embedder: conv3×3 stem, then stages of improved residual blocks
    (BN → conv3×3 → BN → PReLU → conv3×3 → BN, + shortcut; Deng et al. 2019's "IR" block), the first block
    of every stage halving the side, then ArcFace's "E" output: BN → dropout → flatten → linear → BN.

    Flatten rather than global pooling: on aligned faces *where* a feature is (an eye, the mouth) is part
    of who it is. At 64×64 with the defaults the last map is 128×4×4 (stem stride 2, three stages).
    """

    in_channels: int = 1
    input_size: int = 64
    stem_width: int = 32
    stem_stride: int = 2
    widths: tuple[int, ...] = (48, 96, 128)
    blocks: tuple[int, ...] = (1, 2, 1)
    embedding_dim: int = 128
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError(f"widths {self.widths} and blocks {self.blocks} must be non-empty and match")
        if min(self.blocks) < 1:
            raise ValueError(f"every stage needs >= 1 block, got {self.blocks}")

    def feature_side(self) -> int:
        side = self.input_size // self.stem_stride
        for _ in self.widths:
            side = (side + 1) // 2
        if side < 1:
            raise ValueError(f"{len(self.widths)} stages shrink {self.input_size}px to nothing")
        return side

    def output_dim(self) -> int:
        return self.embedding_dim


@dataclass(frozen=True)
class EmbedderConfig:
    """What serving needs to rebuild an embedder: the backbone, its config, and the output transform.

    backbone: "convnet", "koch" or "resnet". mean/std: input normalisation done inside the graph.
    l2_normalize: unit-length outputs (cosine objectives). scaled: a per-dimension non-negative scale
    is applied last (Koch's weighted-L1 head folded in, so plain L1 on outputs equals the head's distance).
    tta_shift: test-time augmentation, set at export and never in training. If s > 0 the embedding is the
    mean over the (2s+1)² copies of the image shifted by -s..s pixels on each axis (zero fill): the graph
    does (2s+1)² times the work, for robustness to where a drawer put a stroke (+3.75 points on Lake's
    runs at s = 2 for Conv-4, measured).
    tta_flip: test-time mirror averaging, also set at export: the embedding is the mean over the image and
    its left-right mirror (faces: a mirrored face is the same person), each embedded as usual, the mean
    L2-normalised again when the embedder normalises.
    Combined with tta_shift, every shifted copy is mirrored too.
    """

    backbone: str = "convnet"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    mean: float = 0.0
    std: float = 1.0
    l2_normalize: bool = False
    scaled: bool = False
    tta_shift: int = 0
    tta_flip: bool = False

    def __post_init__(self) -> None:
        if self.tta_shift < 0:
            raise ValueError(f"tta_shift must be >= 0, got {self.tta_shift}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbedderConfig:
        return cls(**d)

    def backbone_dataclass(self) -> ConvNetConfig | KochNetConfig | ResNetConfig:
        kinds = {"convnet": ConvNetConfig, "koch": KochNetConfig, "resnet": ResNetConfig}
        if self.backbone not in kinds:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {sorted(kinds)}")
        cfg = kinds[self.backbone]
        # JSON turns tuples into lists; the dataclasses are frozen and want tuples back.
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in self.backbone_config.items()}
        return cfg(**fixed)

    @property
    def embedding_dim(self) -> int:
        """D of the N×D output, known without building the net."""
        return self.backbone_dataclass().output_dim()

    @property
    def input_size(self) -> int:
        return self.backbone_dataclass().input_size

    @property
    def in_channels(self) -> int:
        return self.backbone_dataclass().in_channels


class ConvNet(nn.Module):
    """See ConvNetConfig. (N, C, S, S) -> (N, feature_dim or embedding_dim)."""

    def __init__(self, cfg: ConvNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for w in cfg.widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(cfg.feature_dim(), cfg.embedding_dim) if cfg.embedding_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).flatten(1))


class KochNet(nn.Module):
    """See KochNetConfig. (N, C, S, S) -> (N, hidden), values in (0, 1) from the final sigmoid."""

    def __init__(self, cfg: KochNetConfig) -> None:
        super().__init__()
        c, k = cfg.channels, cfg.kernels
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c[0], k[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c[0], c[1], k[1]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c[1], c[2], k[2]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c[2], c[3], k[3]),
            nn.ReLU(inplace=True),
        )
        side = cfg.feature_side()
        self.fc = nn.Sequential(nn.Linear(c[3] * side * side, cfg.hidden), nn.Sigmoid())
        # PyTorch's default (Kaiming-uniform) initialisation, not the paper's N(0, 1e-2): that one was
        # tuned for the paper's SGD schedule, and under Adam it left the sigmoid features nearly constant
        # (BCE still at ln 2 after 250 steps, measured on the 35x35 variant).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class IRBlock(nn.Module):
    """BN → conv3×3(stride) → BN → PReLU → conv3×3 → BN, plus a shortcut (1×1 conv + BN when the shape
    changes). (N, C_in, S, S) -> (N, C_out, ceil(S / stride), ceil(S / stride))."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResNet(nn.Module):
    """See ResNetConfig. (N, C, S, S) -> (N, embedding_dim)."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, cfg.stem_stride, 1, bias=False),
            nn.BatchNorm2d(cfg.stem_width),
            nn.PReLU(cfg.stem_width),
        ]
        c_in = cfg.stem_width
        for width, n in zip(cfg.widths, cfg.blocks, strict=True):
            layers += [IRBlock(c_in if i == 0 else width, width, 2 if i == 0 else 1) for i in range(n)]
            c_in = width
        self.features = nn.Sequential(*layers)
        side = cfg.feature_side()
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Dropout(cfg.dropout),
            nn.Flatten(),
            nn.Linear(c_in * side * side, cfg.embedding_dim),
            nn.BatchNorm1d(cfg.embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Embedder(nn.Module):
    """Input normalisation → backbone → optional scale → optional L2 normalisation.

    forward: float32 (N, C, H, W) in [0, 1] -> (N, D).
    """

    def __init__(self, cfg: EmbedderConfig) -> None:
        super().__init__()
        self.config = cfg
        bcfg = cfg.backbone_dataclass()
        self.backbone: nn.Module
        if isinstance(bcfg, ConvNetConfig):
            self.backbone = ConvNet(bcfg)
        elif isinstance(bcfg, KochNetConfig):
            self.backbone = KochNet(bcfg)
        else:
            self.backbone = ResNet(bcfg)
        self.embedding_dim = cfg.embedding_dim
        # Scale is a buffer, not a parameter: training learns it in the loss head (KochLoss) and
        # export copies it here, so the deployed graph needs no head.
        self.register_buffer("scale", torch.ones(self.embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, flip = self.config.tta_shift, self.config.tta_flip
        if s == 0 and not flip:
            return self._embed(x)
        views = [x]
        if s:
            h, w = x.shape[2], x.shape[3]
            padded = nn.functional.pad(x, (s, s, s, s))
            views = [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(2 * s + 1) for dx in range(2 * s + 1)]
        if flip:
            views += [v.flip(3) for v in views]
        z = self._embed(torch.cat(views)).reshape(len(views), -1, self.embedding_dim).mean(0)
        return nn.functional.normalize(z, dim=1) if self.config.l2_normalize else z

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.config.mean) / self.config.std
        z = self.backbone(x)
        if self.config.scaled:
            z = z * self.scale
        if self.config.l2_normalize:
            z = nn.functional.normalize(z, dim=1)
        return z


def build_embedder(cfg: EmbedderConfig) -> Embedder:
    """The module described by `cfg`, freshly initialised."""
    return Embedder(cfg)
