"""Consistent teaching: the teacher describes the very view of a face that the student is shown.

With fixed targets (`distill_views = "fixed"`) the teacher describes each clean original photo once, and the
student's randomly rotated, scaled, mirrored, relit crop is pulled to that one vector: it is asked for an
invariance the teacher itself does not have (measured on 150 LFW photos: the teacher's centred descriptor of
such a view has cosine 0.88 with that of the clean photo, while two photos of the same person have 0.68).
Beyer et al. (2022, "Knowledge distillation: a good teacher is patient and consistent") found that a student
matches its teacher far better when both see the same view. Here both views come from one draw of
`FaceAugment`:

- the student's view is its usual crop (`model.faces.AlignSpec` geometry) through `FaceAugment.apply`;
- the teacher's view is a chip with the geometry of dlib's 150×150 face chip, cut from a larger "master" chip
  aligned once from the same eyes (`teacher_chip_block`), through the same draw, with the geometric part
  carried into the master's frame, so that it moves the same face by the same amount. The teacher is the
  PyTorch port of dlib's ResNet (training/teacher_net.py).

Measured on LFW View 1's 1,000 test pairs, the teacher scores 97.8% on these chips (aligned from our
BlazeFace eyes) and 98.6% on dlib's own 5-point chips: the student's ceiling is the former.

Two ways to run it: online (`teacher_pool = 0`), a fresh draw every step with the teacher run on the batch,
for a GPU; pooled (`teacher_pool = K`), K draws per image made once, their descriptors computed at the start
(~12 ms per view on 2 CPU cores) and cached in the run folder with the centre below, one drawn per image
and step, for the CPU.
Targets are normalised, then centred on the mean descriptor of the clean training chips and normalised
again (as `training.teacher.centre` does for fixed targets).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.faces import AlignSpec, similarity_from_eyes
from training.augment import FaceAugment, FaceView
from training.config import TrainConfig
from training.data.base import ImageSet
from training.teacher_net import CHIP, DlibFaceNet, load_teacher_net

LOG = logging.getLogger(__name__)

# Where dlib's 150×150 chip (get_face_chip(image, shape, 150, 0.25)) puts the eye centres (means of its 5-point
# eye corners), in pixels, measured on 120 LFW photos (std 1.3 px); BlazeFace's eyes land within 0.6 px of them
# on average (300 photos).
TEACHER_LEFT_EYE = (46.86, 46.30)
TEACHER_RIGHT_EYE = (100.06, 46.41)
MARGIN = 16  # pixels of the master chip around the 150×150 teacher chip: room for a view's shift and zoom-out


def teacher_chip_block(face: dict[str, Any]) -> dict[str, Any]:
    """The crop recipe `face` (card format) with the master chip's geometry: (150 + 2·MARGIN)² pixels, the eyes
    where dlib's chip has them, offset by the margin. Same detector, so same eyes as the student's crops."""
    out = copy.deepcopy(face)
    left = (TEACHER_LEFT_EYE[0] + MARGIN, TEACHER_LEFT_EYE[1] + MARGIN)
    right = (TEACHER_RIGHT_EYE[0] + MARGIN, TEACHER_RIGHT_EYE[1] + MARGIN)
    out["align"] = AlignSpec(CHIP + 2 * MARGIN, left, right).to_dict()
    return out


def _to_normalised(size: int) -> np.ndarray:
    """3×3: pixel coordinates (centres at integers, OpenCV's convention) -> grid_sample's [-1, 1] coordinates
    (align_corners=False: u = (2p + 1) / size - 1)."""
    return np.array([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0], [0.0, 0.0, 1.0]])


def frame_map(src: AlignSpec, dst: AlignSpec) -> np.ndarray:
    """3×3: a point in the normalised frame of a crop aligned with `src` -> the same photo point in the
    normalised frame of a crop of the same face aligned with `dst` (both put the same eyes on their templates,
    so one fixed similarity relates them)."""
    sim = np.vstack([similarity_from_eyes((src.left_eye, src.right_eye), (dst.left_eye, dst.right_eye)), [0, 0, 1]])
    return _to_normalised(dst.size) @ sim @ np.linalg.inv(_to_normalised(src.size))


class ConsistentTeacher:
    """Student inputs and teacher targets from the same augmented view of each training face.

    net: the teacher (eval mode, on `device`). chips: uint8 N×3×M×M master chips (`teacher_chip_block`), row
    i the same photo as the student's training image i. student_align / master_align: the two crops' AlignSpecs.
    `views(rows, x, generator)` -> (student views float N×C×H×W, targets float32 N×128, normalised, centred).
    """

    def __init__(
        self,
        net: DlibFaceNet,
        chips: torch.Tensor,
        augment: FaceAugment,
        student_align: AlignSpec,
        master_align: AlignSpec,
        batch: int = 256,
    ) -> None:
        if chips.dtype != torch.uint8 or chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"chips must be uint8 N×3×M×M, got {chips.dtype} {tuple(chips.shape)}")
        if chips.shape[2] != master_align.size or chips.shape[3] != master_align.size:
            raise ValueError(f"chips are {tuple(chips.shape[2:])}, the master geometry says {master_align.size}")
        self.net, self.chips, self.augment, self.batch = net, chips, augment, batch
        self.device = chips.device
        # The teacher's chip inside the master: centred, CHIP of its pixels (a scale, no shift).
        chip_in_master = np.diag([CHIP / master_align.size, CHIP / master_align.size, 1.0])
        self._student_to_master = torch.tensor(frame_map(student_align, master_align), dtype=torch.float32)
        self._chip_to_master = torch.tensor(chip_in_master, dtype=torch.float32)
        self._mean: torch.Tensor | None = None
        self.pool: tuple[FaceView, torch.Tensor] | None = None

    # --------------------------------------------------------------------------------- the teacher's side
    def teacher_view(self, view: FaceView) -> FaceView:
        """`view` (geometry in the student's frame) with its geometry as the teacher's 150×150 chip sees it:
        output pixel u of the chip -> master point P·G·P⁻¹·C·u (P: student frame -> master frame, G: the view's
        warp, C: chip frame -> master frame)."""
        n = len(view.sample)
        g = torch.cat([view.sample.float(), torch.tensor([0.0, 0.0, 1.0]).expand(n, 1, 3)], 1)
        p = self._student_to_master
        sample = p @ g @ torch.linalg.inv(p) @ self._chip_to_master
        return FaceView(sample[:, :2], view.grey, view.gamma, view.contrast, view.brightness)

    @torch.no_grad()
    def describe(self, rows: torch.Tensor, view: FaceView | None, progress: str = "") -> torch.Tensor:
        """float32 len(rows)×128: the teacher's normalised descriptors of `rows`' master chips through `view`
        (None: the clean 150×150 chip), in batches of `self.batch`; with a progress bar named `progress`."""
        out = []
        starts = range(0, len(rows), self.batch)
        for i in tqdm(starts, desc=progress, unit="batch", disable=not progress):
            r = rows[i : i + self.batch].to(self.device)
            x = self.chips[r].float().div_(255.0)
            v = self.teacher_view(view[i : i + self.batch] if view is not None else _identity(len(r)))
            x = self.augment.apply(x, v, size=CHIP)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                d = self.net(x.mul_(255.0))
            out.append(F.normalize(d.float(), dim=1))
        return torch.cat(out)

    @property
    def mean(self) -> torch.Tensor:
        """float32 128: the mean of the teacher's normalised descriptors of the clean training chips, computed
        on first use (or read with the pool)."""
        if self._mean is None:
            n = len(self.chips)
            self._mean = self.describe(torch.arange(n), None, progress=f"teacher: {n} clean chips for the centre")
            self._mean = self._mean.mean(0)
        return self._mean

    def _centred(self, d: torch.Tensor) -> torch.Tensor:
        return F.normalize(d - self.mean.to(d.device), dim=1)

    # --------------------------------------------------------------------------------- the pool (CPU)
    def build_pool(self, k: int, seed: int, channels: int, path: Path | None = None) -> None:
        """Draw `k` views of every training image (seeded) and describe them all, with a progress bar; with
        `path`, kept there and read back on resume (the same draws, so nothing is recomputed)."""
        n = len(self.chips)
        key = {"k": k, "seed": seed, "n": n, "channels": channels, "augment": repr(self.augment)}
        if path is not None and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=False)
            if saved["key"] == key:
                self.pool = (saved["views"], saved["descriptors"].to(self.device))
                self._mean = saved["mean"].to(self.device)
                LOG.info("teacher pool: %d views per image from %s", k, path)
                return
        views = []
        for j in range(k):
            views.append(self.augment.draw(n, channels, torch.Generator().manual_seed(seed * 7_919 + j)))
        pooled = FaceView.stack(views)  # tensors N×K×...
        rows = torch.arange(n)
        desc = torch.stack(
            [self.describe(rows, views[j], progress=f"teacher views {j + 1}/{k}") for j in range(k)], 1
        )  # N×K×128
        self.pool = (pooled, desc)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            torch.save({"key": key, "views": pooled, "descriptors": desc.cpu(), "mean": self.mean.cpu()}, tmp)
            tmp.replace(path)

    # --------------------------------------------------------------------------------- a training batch
    def views(
        self, rows: torch.Tensor, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's view of each of `rows` (x: their crops, float N×C×H×W in [0, 1]) and the teacher's
        centred descriptor of the same view: a fresh draw (online), or one of the pool's K per image."""
        if self.pool is None:
            view = self.augment.draw(len(rows), x.shape[1], generator)
            targets = self.describe(rows, view)
        else:
            pooled, desc = self.pool
            k = desc.shape[1]
            pick = torch.randint(k, (len(rows),), generator=generator)
            cpu_rows = rows.cpu()
            view = pooled[cpu_rows, pick]
            targets = desc[rows, pick.to(desc.device)]
        return self.augment.apply(x, view), self._centred(targets)


def _identity(n: int) -> FaceView:
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3).clone()
    zeros = torch.zeros(n)
    return FaceView(eye, torch.zeros(n, dtype=torch.bool), zeros, zeros, zeros)


def build_consistent_teacher(
    cfg: TrainConfig,
    train: ImageSet,
    augment: FaceAugment | None,
    face: dict[str, Any] | None,
    device: torch.device,
    run_dir: Path,
    rank: int = 0,
) -> ConsistentTeacher:
    """The ConsistentTeacher of a run with `distill_views = "consistent"`: its training set's master chips on
    `device`, the teacher net, and with `cfg.teacher_pool` its pool of views (kept in run_dir, per rank)."""
    if not isinstance(augment, FaceAugment):
        raise ValueError("distill_views = consistent needs the face augmentation (data = faces, augment = true)")
    if train.teacher_inputs is None or face is None:
        raise ValueError("distill_views = consistent needs the training set's master chips (teacher_inputs)")
    net = load_teacher_net(Path(cfg.cache_dir)).to(device)
    chips = torch.from_numpy(train.teacher_inputs).to(device)
    master = AlignSpec.from_dict(teacher_chip_block(face)["align"])
    teacher = ConsistentTeacher(net, chips, augment, AlignSpec.from_dict(face["align"]), master)
    if cfg.teacher_pool:
        path = run_dir / f"teacher_pool_rank{rank}.pt"
        teacher.build_pool(cfg.teacher_pool, cfg.seed * 1_000 + rank, train.images.shape[1], path)
    return teacher
