"""The in-memory dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Prepared images with integer labels.

    images: uint8 N×C×H×W, the output of `model.preprocess.prepare` scaled by 255 (so training reads
      exactly what serving computes, up to 8-bit rounding).
    labels: int64 N, in [0, len(class_names)).
    class_names: one name per label ("Alphabet/character01", "rot090" suffixes for rotated copies).
    groups: int64 N, a coarser grouping of classes (Omniglot alphabets; identity folders: 0). Episodes
      "within alphabet" and validation splits by alphabet use it.
    group_names: one name per group id.
    targets: float32 N×D per-image regression targets (a teacher's normalised embeddings; NaN rows where the
      teacher has none), or None.
    teacher_inputs: uint8 N×3×M×M per-image inputs for a teacher run during training (master chips of
      training/consistent.py), or None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    groups: np.ndarray
    group_names: list[str]
    targets: np.ndarray | None = None
    teacher_inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,) or self.groups.shape != (n,):
            raise ValueError("labels and groups must have one entry per image")
        if self.targets is not None and (self.targets.ndim != 2 or len(self.targets) != n):
            raise ValueError(f"targets must be N×D with N = {n}, got {self.targets.shape}")
        if self.teacher_inputs is not None and (self.teacher_inputs.ndim != 4 or len(self.teacher_inputs) != n):
            raise ValueError(f"teacher_inputs must be N×C×H×W with N = {n}, got {self.teacher_inputs.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, mask: np.ndarray) -> ImageSet:
        """The images where `mask` holds, with labels and groups renumbered densely from 0."""
        labels, groups = self.labels[mask], self.groups[mask]
        kept_labels, new_labels = np.unique(labels, return_inverse=True)
        kept_groups, new_groups = np.unique(groups, return_inverse=True)
        return ImageSet(
            images=self.images[mask],
            labels=new_labels.astype(np.int64),
            class_names=[self.class_names[i] for i in kept_labels],
            groups=new_groups.astype(np.int64),
            group_names=[self.group_names[i] for i in kept_groups],
            targets=None if self.targets is None else self.targets[mask],
            teacher_inputs=None if self.teacher_inputs is None else self.teacher_inputs[mask],
        )

    def with_rotations(self, angles: tuple[int, ...] = (0, 90, 180, 270)) -> ImageSet:
        """Each rotation of each class becomes a class of its own (Santoro et al. 2016; Vinyals et al.).

        Labels become `label * len(angles) + rotation index`; groups are unchanged.
        """
        if self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"rotations as classes need square images, got {self.images.shape[2:]}")
        if any(a % 90 for a in angles):
            raise ValueError(f"only multiples of 90 degrees are exact on a pixel grid, got {angles}")
        images, labels, groups = [], [], []
        for r, angle in enumerate(angles):
            # np.rot90 turns counter-clockwise; axes (2, 3) are H, W of N×C×H×W.
            images.append(np.rot90(self.images, k=angle // 90, axes=(2, 3)))
            labels.append(self.labels * len(angles) + r)
            groups.append(self.groups)
        names = [f"{c}/rot{a:03d}" for c in self.class_names for a in angles]
        return ImageSet(
            images=np.ascontiguousarray(np.concatenate(images)),
            labels=np.concatenate(labels),
            class_names=names,
            groups=np.concatenate(groups),
            group_names=self.group_names,
        )


def split_by_group(data: ImageSet, n_holdout: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split whole groups (alphabets) off for validation: (rest, held-out), chosen with `seed`."""
    n_groups = len(data.group_names)
    if not 0 < n_holdout < n_groups:
        raise ValueError(f"cannot hold out {n_holdout} of {n_groups} groups")
    held = np.random.default_rng(seed).choice(n_groups, size=n_holdout, replace=False)
    mask = np.isin(data.groups, held)
    return data.subset(~mask), data.subset(mask)
