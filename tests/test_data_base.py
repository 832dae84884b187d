"""ImageSet: subsetting, rotations as classes, group splits and validation."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.base import ImageSet, split_by_group


def _set() -> ImageSet:
    """5 groups × 2 classes × 3 random 1×4×4 images (random, so a wrong rotation direction would show)."""
    labels = np.repeat(np.arange(10), 3).astype(np.int64)
    rng = np.random.default_rng(0)
    return ImageSet(
        images=rng.integers(0, 256, size=(30, 1, 4, 4), dtype=np.uint8),
        labels=labels,
        class_names=[f"g{c // 2}/c{c}" for c in range(10)],
        groups=labels // 2,
        group_names=[f"g{g}" for g in range(5)],
    )


def test_subset_renumbers_densely() -> None:
    data = _set()
    sub = data.subset(np.isin(data.labels, [3, 8]))
    assert len(sub) == 6
    np.testing.assert_array_equal(sub.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(sub.groups, [0, 0, 0, 1, 1, 1])
    assert sub.class_names == ["g1/c3", "g4/c8"]
    assert sub.group_names == ["g1", "g4"]
    np.testing.assert_array_equal(sub.images, data.images[9:12].tolist() + data.images[24:27].tolist())


def test_with_rotations() -> None:
    data = _set()
    rot = data.with_rotations()
    assert len(rot) == 4 * len(data)
    assert rot.num_classes == 4 * data.num_classes
    assert len(np.unique(rot.labels)) == 40
    assert rot.group_names == data.group_names
    for r in range(4):
        block = slice(r * 30, (r + 1) * 30)
        np.testing.assert_array_equal(rot.labels[block], data.labels * 4 + r)
        np.testing.assert_array_equal(rot.groups[block], data.groups)
    i = 7
    np.testing.assert_array_equal(rot.images[30 + i], np.rot90(data.images[i], k=1, axes=(1, 2)))
    np.testing.assert_array_equal(rot.images[60 + i], data.images[i][:, ::-1, ::-1])
    assert rot.class_names[rot.labels[30 + i]] == f"{data.class_names[data.labels[i]]}/rot090"
    with pytest.raises(ValueError, match="multiples of 90"):
        data.with_rotations((0, 45))


def test_split_by_group() -> None:
    data = _set()
    rest, held = split_by_group(data, n_holdout=2, seed=0)
    assert len(held.group_names) == 2
    assert len(rest.group_names) == 3
    assert set(held.group_names).isdisjoint(rest.group_names)
    assert len(rest) + len(held) == len(data)
    for part in (rest, held):  # whole groups: every image of a named group is in that part
        assert {c.split("/")[0] for c in part.class_names} == set(part.group_names)
        for g, name in enumerate(part.group_names):
            assert (part.groups == g).sum() == (data.groups == data.group_names.index(name)).sum()
    again = split_by_group(data, n_holdout=2, seed=0)[1]
    assert again.group_names == held.group_names
    others = {tuple(split_by_group(data, 2, seed=s)[1].group_names) for s in range(10)}
    assert len(others) > 1


def test_split_by_group_bad_counts() -> None:
    for n in (0, 5):
        with pytest.raises(ValueError, match="hold out"):
            split_by_group(_set(), n_holdout=n, seed=0)


def test_validation() -> None:
    data = _set()
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(data.images.astype(np.float32), data.labels, data.class_names, data.groups, data.group_names)
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(data.images[:, 0], data.labels, data.class_names, data.groups, data.group_names)
    with pytest.raises(ValueError, match="one entry per image"):
        ImageSet(data.images, data.labels[:-1], data.class_names, data.groups, data.group_names)
    with pytest.raises(ValueError, match="one entry per image"):
        ImageSet(data.images, data.labels, data.class_names, data.groups[:, None], data.group_names)
