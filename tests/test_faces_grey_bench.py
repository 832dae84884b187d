"""bench/faces_grey.py's conversion: the luminance the training augmentation uses, and grey crops untouched."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np


def test_in_grey_feeds_the_training_luminance(load_bench: Callable[[str], ModuleType]) -> None:
    bench = load_bench("faces_grey")
    seen: list[np.ndarray] = []
    embed = bench.in_grey(lambda x: seen.append(x) or x.sum((1, 2, 3)))
    rng = np.random.default_rng(0)
    colour = rng.random((2, 3, 4, 4), dtype=np.float32)
    embed(colour)
    luma = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    for c in range(3):
        np.testing.assert_allclose(seen[0][:, c], luma, atol=1e-6)
    grey = np.repeat(rng.random((2, 1, 4, 4), dtype=np.float32), 3, axis=1)
    embed(grey)
    np.testing.assert_allclose(seen[1], grey, atol=1e-6)  # a grey photo stays what it was
