"""bench/gallery_match.py's bookkeeping on synthetic embeddings, through the real Gallery over real SQLite: who is
enrolled, who is probed, and how top-1 and EER are counted for each match mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from model import distances

DIM = 16


@pytest.fixture(scope="module")
def bench(load_bench: Callable[[str], ModuleType]) -> ModuleType:
    return load_bench("gallery_match")


def clusters(bench: ModuleType, n: int, per: int, noise: float, seed: int) -> list:
    """n people, `per` unit vectors each, scattered by `noise` around a random direction per person."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        centre = rng.normal(size=DIM)
        v = centre / np.linalg.norm(centre) + noise * rng.normal(size=(per, DIM))
        out.append(bench.PersonPhotos(f"p{i}", (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)))
    return out


PIPELINE = SimpleNamespace(dim=DIM, distance=distances.get("cosine"), model_id="synthetic@1#0")


def test_separated_people_are_always_found(bench: ModuleType, tmp_path: Path) -> None:
    ds = bench.Dataset("synthetic", clusters(bench, 5, 7, 0.01, 0), [], photos=35, unusable=0)
    out = bench.run_draw(ds, k=2, draw=0, pipeline=PIPELINE, scratch=tmp_path)
    assert set(out) == set(bench.MODES)
    for top1, eer, probes in out.values():
        assert probes == 5 * min(7 - 2, bench.MAX_PROBES)
        assert top1 == 1.0
        assert eer == 0.0


def test_modes_agree_with_one_face_and_distractors_cost_accuracy(bench: ModuleType, tmp_path: Path) -> None:
    people = clusters(bench, 8, 6, 0.35, 1)  # overlapping: neither perfect nor chance
    plain = bench.Dataset("synthetic", people, [], photos=48, unusable=0)
    one = bench.run_draw(plain, k=1, draw=0, pipeline=PIPELINE, scratch=tmp_path)
    assert one["faces"] == one["mean"] == one["both"]  # one face: the closest face is the mean
    assert 0.2 < one["faces"][0] < 1.0
    crowded = bench.Dataset("synthetic+", people, clusters(bench, 200, 1, 0.0, 2), photos=248, unusable=0, verify=False)
    with_distractors = bench.run_draw(crowded, k=1, draw=0, pipeline=PIPELINE, scratch=tmp_path)
    assert np.isnan(with_distractors["faces"][1])  # no EER without `verify`
    assert with_distractors["faces"][2] == one["faces"][2]  # the same probes: the draw ignores the distractors
    assert with_distractors["faces"][0] <= one["faces"][0]


def test_render_marks_the_best_mode(bench: ModuleType) -> None:
    score = {m: bench.Score([t], [e], 10) for m, t, e in (("faces", 0.5, 0.2), ("mean", 0.7, 0.1), ("both", 0.6, 0.3))}
    ds = bench.Dataset("synthetic", [], [], photos=10, unusable=1)
    text = bench.render([(ds, {2: score})], SimpleNamespace(command="c", draws=1), "meta")
    row = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == ["50.00 ± 0.00", "**70.00 ± 0.00**", "60.00 ± 0.00"]  # top-1: higher is better
    assert cells[5:] == ["20.00 ± 0.00", "**10.00 ± 0.00**", "30.00 ± 0.00"]  # EER: lower is better
