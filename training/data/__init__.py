"""Datasets as in-memory `ImageSet`s: Omniglot (zips), Lake's one-shot runs, and identity folders."""

from training.data.base import ImageSet, split_by_group

__all__ = ["ImageSet", "split_by_group"]
