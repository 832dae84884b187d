"""Bookkeeping of bench/faces_student.py: every student row is a valid training config that differs from the
others only in its input, on the distillation mix and detector the report states."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from training.config import resolve


def test_student_rows_differ_only_in_their_input(load_bench: Callable[[str], ModuleType]) -> None:
    bench = load_bench("faces_student")
    configs = {
        slug: resolve(bench.EXPERIMENT, {**bench.MIX, **overrides, "steps": 6000, "face_protocol": "view1"})
        for slug, (_, overrides) in bench.STUDENTS.items()
    }
    inputs = {(c.channels, c.image_size) for c in configs.values()}
    assert len(inputs) == len(configs), "two rows train the same input"
    for cfg in configs.values():
        assert (cfg.teacher, cfg.objective) == ("dlib", "distill")
        assert (cfg.distill_regression, cfg.distill_relational, cfg.face_detector) == (1.0, 1.0, "blazeface")
        rest = {k: v for k, v in vars(cfg).items() if k not in ("channels", "image_size")}
        assert rest == {k: v for k, v in vars(configs["grey64"]).items() if k not in ("channels", "image_size")}
