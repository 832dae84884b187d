"""dlib's face ResNet (the teacher of training/teacher.py) as a PyTorch module, read from its own .dat file.

Why: dlib runs the teacher one image at a time on the CPU (95 ms per 150×150 chip on one core here), which
limits distillation to one fixed target per photo, computed once. As a PyTorch module it runs batched, on a
GPU where one is present, on whatever view of a face the student is shown: the teacher's descriptor of the
very crop, mirror and lighting the student sees (Beyer et al. 2022, "Knowledge distillation: a good teacher
is patient and consistent"), instead of its descriptor of the clean photo.

The network (dlib's dnn_face_recognition_ex.cpp, "anet_type"): a 7×7/2 convolution and a 3×3/2 max pool,
then residual stages of widths 32 (3 blocks), 64 (1 down + 3), 128 (1 down + 2), 256 (1 down + 2),
256 (1 down), an average over the remaining positions, and a 128-d linear layer without bias. Two of dlib's
conventions matter for exact numbers:
- a strided convolution or pool has no padding (dlib's default padding is size/2 only at stride 1);
- `add_prev` adds tensors of different shapes: the sum has the larger size in every dimension and the
  smaller tensor counts as zeros beyond its end. A down block's shortcut (a 2×2/2 average pool of its
  input) therefore brings fewer channels and, at odd sizes, a different spatial size than its main path.
Batch normalisation was folded into per-channel affine layers when dlib saved the model.

The .dat format (dlib/serialize.h): integers as a byte `n` (low 4 bits: byte count, bit 7: sign) then n
little-endian bytes; strings as an integer length then the bytes; tensors (version 2) as five integers
(version, num_samples, k, nr, nc) then raw little-endian float32. Each layer writes its name ("con_4",
"affine_", "fc_2", ...) then its parameter tensor, input layer first. `load_teacher_net` reads only those,
checks every shape against the architecture above, and caches the parsed weights as a .pt file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.teacher import NAME, require_teacher

LOG = logging.getLogger(__name__)

CHIP = 150  # the net's input: dlib.get_face_chip(image, shape, 150, 0.25)
DESCRIPTOR_DIM = 128
# Stage widths and block counts, input first; every stage after the first starts with a down block.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class _Block(nn.Module):
    """relu(affine(conv(relu(affine(conv_s(x))))) + shortcut(x)), shortcut = x, or avg_pool 2×2/2 of x in a
    down block, added with dlib's zero-extending `add_prev`."""

    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.scale1 = _Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.scale2 = _Affine(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.scale2(self.conv2(F.relu(self.scale1(self.conv1(x)))))
        return F.relu(_add_prev(y, F.avg_pool2d(x, 2, 2) if self.down else x))


class _Affine(nn.Module):
    """dlib's affine_ layer: per-channel gamma·x + beta (its saved form of batch normalisation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b over N×C×H×W tensors of possibly different C, H, W: each is zero-extended at the end of every
    dimension to the larger size (dlib's tt::add)."""
    shape = [max(p, q) for p, q in zip(a.shape, b.shape, strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        pad = []
        for dim in (3, 2, 1):  # F.pad lists the last dimension first
            pad += [0, shape[dim] - t.shape[dim]]
        return F.pad(t, pad) if any(pad) else t

    return grow(a) + grow(b)


class DlibFaceNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1 in PyTorch.

    forward(x uint8 or float N×3×150×150, RGB in 0..255, a dlib face chip) -> N×128 descriptors, not
    normalised, as dlib's `compute_face_descriptor(chip)` returns them (Euclidean distance < 0.6: same person).
    """

    MEAN = (122.782, 117.001, 104.298)  # dlib's input_rgb_image; pixels are then divided by 256

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_scale = _Affine(32)
        blocks: list[nn.Module] = []
        c_in = 32
        for width, count, down in STAGES:
            for i in range(count):
                blocks.append(_Block(c_in, width, down and i == 0))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, DESCRIPTOR_DIM, bias=False)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected N×3×H×W RGB chips, got {tuple(x.shape)}")
        x = (x.float() - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem_scale(self.stem(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------------- reading the .dat
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self) -> int:
        head = self.data[self.pos]
        n = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"unsupported dlib tensor version {version} at byte {self.pos}")
        n, k, nr, nc = self.int(), self.int(), self.int(), self.int()
        size = n * k * nr * nc
        out = np.frombuffer(self.data, dtype="<f4", count=size, offset=self.pos).copy()
        self.pos += 4 * size
        return out


def _layer_params(data: bytes, name: bytes, skip_ints: int = 0) -> list[np.ndarray]:
    """The parameter tensor written after each occurrence of the layer name `name` (length-prefixed, as dlib
    writes strings) and `skip_ints` integers (fc_2 writes its output and input sizes first), in file order
    (input first)."""
    tag = bytes([0x01, len(name)]) + name
    out, start = [], 0
    while (i := data.find(tag, start)) >= 0:
        reader = _Reader(data)
        reader.pos = i + len(tag)
        for _ in range(skip_ints):
            reader.int()
        out.append(reader.tensor())
        start = reader.pos
    return out


def _state_from_dat(path: Path) -> dict[str, torch.Tensor]:
    data = path.read_bytes()
    convs, affines = _layer_params(data, b"con_4"), _layer_params(data, b"affine_")
    fcs = _layer_params(data, b"fc_2", skip_ints=2)
    net = DlibFaceNet()
    conv_mods = [net.stem] + [c for b in net.blocks for c in (b.conv1, b.conv2)]
    affine_mods = [net.stem_scale] + [s for b in net.blocks for s in (b.scale1, b.scale2)]
    if (len(convs), len(affines), len(fcs)) != (len(conv_mods), len(affine_mods), 1):
        found = f"{len(convs)} conv, {len(affines)} affine, {len(fcs)} fc layers"
        raise ValueError(f"{path}: found {found}; expected {len(conv_mods)}, {len(affine_mods)}, 1")
    for conv, flat in zip(conv_mods, convs, strict=True):
        w, b = conv.weight, conv.bias
        if flat.size != w.numel() + b.numel():
            raise ValueError(f"{path}: a conv layer has {flat.size} parameters, expected {w.numel() + b.numel()}")
        with torch.no_grad():  # dlib: filters (out, in, kh, kw) then biases, as PyTorch
            w.copy_(torch.from_numpy(flat[: w.numel()]).view_as(w))
            b.copy_(torch.from_numpy(flat[w.numel() :]))
    for aff, flat in zip(affine_mods, affines, strict=True):
        c = aff.gamma.numel()
        if flat.size != 2 * c:
            raise ValueError(f"{path}: an affine layer has {flat.size} parameters, expected {2 * c}")
        with torch.no_grad():  # gamma then beta
            aff.gamma.copy_(torch.from_numpy(flat[:c]))
            aff.beta.copy_(torch.from_numpy(flat[c:]))
    fc = fcs[0]
    if fc.size != net.fc.weight.numel():
        raise ValueError(f"{path}: the fc layer has {fc.size} parameters, expected {net.fc.weight.numel()}")
    with torch.no_grad():  # dlib: y = x · W with W num_inputs × num_outputs; PyTorch stores W transposed
        net.fc.weight.copy_(torch.from_numpy(fc).view(256, DESCRIPTOR_DIM).T)
    return net.state_dict()


def load_teacher_net(cache_dir: Path | None = None) -> DlibFaceNet:
    """The teacher as an eval-mode `DlibFaceNet` with dlib's weights (the `teacher` extra must be installed).
    With `cache_dir`, the parsed weights are kept in `cache_dir/teacher/<NAME>.pt` for the next call."""
    cached = Path(cache_dir) / "teacher" / f"{NAME}.pt" if cache_dir is not None else None
    net = DlibFaceNet()
    if cached is not None and cached.is_file():
        net.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    else:
        state = _state_from_dat(require_teacher() / f"{NAME}.dat")
        net.load_state_dict(state)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(cached)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
