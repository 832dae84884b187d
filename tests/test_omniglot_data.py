"""The Omniglot loaders against the real files (skipped without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.preprocess import PreprocessSpec
from training.data.omniglot import load_lake_runs, load_omniglot, load_vinyals

pytestmark = pytest.mark.data


def test_background_and_evaluation_sets(data_root: Path, tmp_path: Path) -> None:
    bg = load_omniglot(data_root, "background", cache=tmp_path)
    assert (len(bg), bg.num_classes, len(bg.group_names)) == (19280, 964, 30)
    assert np.bincount(bg.labels).tolist() == [20] * 964  # 20 drawers per character
    ev = load_omniglot(data_root, "evaluation", cache=tmp_path)
    assert (len(ev), ev.num_classes, len(ev.group_names)) == (13180, 659, 20)
    assert not set(bg.group_names) & set(ev.group_names)  # Lake's 30/20 alphabet split is disjoint
    # Ink is bright after `invert`: most of a character image is background (near 0).
    assert bg.images.shape[1:] == (1, 28, 28)
    assert np.median(bg.images) == 0
    again = load_omniglot(data_root, "background", cache=tmp_path)  # from the cache
    np.testing.assert_array_equal(again.images, bg.images)


def test_lake_runs_are_twenty_20_way_runs(data_root: Path) -> None:
    runs = load_lake_runs(data_root, PreprocessSpec(size=(35, 35)))
    assert len(runs) == 20
    for run in runs:
        assert run.support.shape == run.queries.shape == (20, 1, 35, 35)
        assert sorted(run.answers.tolist()) == list(range(20))  # each class queried exactly once


def test_vinyals_split_has_rotations_as_classes(data_root: Path, tmp_path: Path) -> None:
    test = load_vinyals(data_root, "test", cache=tmp_path)
    assert test.num_classes == 1692
    assert len(test) == 1692 * 20
    name = test.class_names[1]
    assert name.endswith("rot090")
    base = test.images[test.labels == 0]
    np.testing.assert_array_equal(test.images[test.labels == 1], np.rot90(base, 1, axes=(2, 3)))
