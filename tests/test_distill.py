"""Distillation from a face teacher: the loss's two terms, a student that learns a teacher's geometry through
the real TrainModule, the config rules, the target cache, and dlib's teacher itself where installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.nets import ConvNetConfig, Embedder, EmbedderConfig
from training import teacher as teacher_mod
from training.config import resolve
from training.data.base import ImageSet
from training.losses import DistillLoss
from training.objectives import build_objective
from training.trainer import TrainModule

REPO = Path(__file__).resolve().parents[1]


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_regression_is_zero_only_on_the_teachers_vectors() -> None:
    t = unit(16, 8, 0)
    loss = DistillLoss(8, 8, regression=1.0, relational=0.0)
    assert loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(unit(16, 8, 1), t).item() > 0.5  # random directions: 1 - cos ≈ 1


def test_relational_sees_geometry_not_orientation() -> None:
    """A rotated copy of the teacher's space keeps every pairwise similarity: relational 0, regression not."""
    t = unit(32, 8, 0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)))
    rotated = t @ q
    rel = DistillLoss(8, 8, regression=0.0, relational=1.0)
    reg = DistillLoss(8, 8, regression=1.0, relational=0.0)
    assert rel(rotated, t).item() == pytest.approx(0.0, abs=1e-6)
    assert reg(rotated, t).item() > 0.1
    assert rel(unit(32, 8, 5), t).item() > 0.01


def test_rows_without_a_target_are_left_out() -> None:
    s, t = unit(10, 8, 0), unit(10, 8, 1)
    loss = DistillLoss(8, 8, regression=1.0, relational=1.0)
    with_gaps = t.clone()
    with_gaps[[2, 7]] = float("nan")
    keep = torch.ones(10, dtype=torch.bool)
    keep[[2, 7]] = False
    assert loss(s, with_gaps).item() == pytest.approx(loss(s[keep], t[keep]).item(), rel=1e-6)
    assert torch.isfinite(loss(s, torch.full_like(t, float("nan"))))  # nothing to match: 0, not NaN


def test_a_projection_bridges_different_sizes_and_learns() -> None:
    loss = DistillLoss(16, 8, regression=1.0, relational=0.0)
    assert loss.project is not None
    s = unit(12, 16, 0).requires_grad_()
    loss(s, unit(12, 8, 1)).backward()
    assert s.grad is not None
    assert loss.project.weight.grad is not None
    with pytest.raises(ValueError, match="not both 0"):
        DistillLoss(8, 8, 0.0, 0.0)
    with pytest.raises(ValueError, match="N×D"):
        loss(unit(12, 16, 0), unit(11, 8, 1))


def test_config_rules() -> None:
    base = {"data": "faces", "objective": "distill", "teacher": "dlib", "distill_regression": 1.0}
    resolve(overrides=base)
    for bad, match in [
        ({"teacher": ""}, "teacher and a weight"),
        ({"distill_regression": 0.0}, "teacher and a weight"),
        ({"teacher": "vgg"}, "teacher must be"),
        ({"data": "omniglot"}, "face embedder"),
        ({"distill_regression": -1.0}, ">= 0"),
        ({"objective": "distill", "teacher": "", "distill_regression": 0.0}, "teacher alone"),
    ]:
        with pytest.raises(ValueError, match=match):
            resolve(overrides={**base, **bad})
    cfg = resolve(overrides={**base, "objective": "triplet", "sampler": "m_per_class"})
    with pytest.raises(ValueError, match="cosine"):
        build_objective(cfg, 16, 4, target_dim=8)


def tiny_convnet(out_dim: int) -> Embedder:
    return Embedder(
        EmbedderConfig(
            backbone="convnet",
            backbone_config=ConvNetConfig(1, 16, (16, 16), out_dim).__dict__,
            l2_normalize=True,
            scaled=False,
        )
    )


def test_a_student_learns_the_teachers_geometry_through_the_train_module() -> None:
    """Synthetic task: 40 'people', each a random 16×16 pattern seen with noise; the 'teacher' gives each
    person a random 8-d unit vector (plus a little noise per image). A tiny conv student (16-d, so through a
    projection) distilled on 1,024 images must reproduce the teacher's pairwise similarities on 64 images it
    never trained on far better than at initialisation. It never sees the labels (objective "distill")."""
    gen = torch.Generator().manual_seed(0)
    patterns = torch.rand(40, 1, 16, 16, generator=gen)
    labels = torch.arange(1088) % 40
    images = (patterns[labels] + 0.3 * torch.randn(1088, 1, 16, 16, generator=gen)).clamp(0, 1)
    people = F.normalize(torch.randn(40, 8, generator=gen), dim=1)
    targets = F.normalize(people[labels] + 0.05 * torch.randn(1088, 8, generator=gen), dim=1)
    cfg = resolve(
        overrides={
            "data": "faces",
            "objective": "distill",
            "teacher": "dlib",
            "distill_regression": 1.0,
            "distill_relational": 1.0,
            "sampler": "m_per_class",
        }
    )
    torch.manual_seed(0)
    module = TrainModule(tiny_convnet(16), build_objective(cfg, 16, 40, target_dim=8))

    def similarity_error() -> float:
        module.eval()
        with torch.no_grad():
            s = module.embedder(images[1024:])
        module.train()
        t = targets[1024:]
        return float(((s @ s.T - t @ t.T) ** 2).mean())

    before = similarity_error()
    opt = torch.optim.Adam([*module.embedder.parameters(), *module.head_parameters()], lr=3e-3)
    for step in range(300):
        idx = torch.randint(0, 1024, (64,), generator=torch.Generator().manual_seed(step))
        loss, _ = module(images[idx], labels[idx], targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = similarity_error()
    assert after < 0.3 * before, (before, after)
    with pytest.raises(ValueError, match="teacher targets"):
        module(images[:8], labels[:8])


def test_image_set_subsets_carry_targets() -> None:
    s = ImageSet(
        images=np.zeros((4, 1, 2, 2), np.uint8),
        labels=np.array([0, 0, 1, 1]),
        class_names=["a", "b"],
        groups=np.array([0, 0, 1, 1]),
        group_names=["a", "b"],
        targets=np.arange(8, dtype=np.float32).reshape(4, 2),
    )
    sub = s.subset(np.array([False, True, True, False]))
    assert sub.targets is not None
    assert sub.targets.tolist() == [[2, 3], [4, 5]]
    with pytest.raises(ValueError, match="targets"):
        ImageSet(s.images, s.labels, s.class_names, s.groups, s.group_names, targets=np.zeros((3, 2), np.float32))


def test_target_cache_round_trip_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "lfw.npz"
    v = np.array([3.0, 4.0] + [0.0] * 126, np.float32)
    done = {
        "lfw/A/A_0001.jpg": teacher_mod.Description(v, "detected", 0.1),
        "lfw/B/B_0001.jpg": teacher_mod.Description(None, "none", 0.0),
    }
    teacher_mod._save(path, done)
    back = teacher_mod._load(path)
    assert set(back) == set(done)
    assert back["lfw/B/B_0001.jpg"].vector is None
    np.testing.assert_array_equal(back["lfw/A/A_0001.jpg"].vector, v)
    targets = teacher_mod.TeacherTargets(keys=["lfw/A/A_0001.jpg"], vectors=(v / 5.0)[None], how=np.array(["detected"]))
    got = targets.lookup(["lfw/B/B_0001.jpg", "lfw/A/A_0001.jpg"])
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1, :2], [0.6, 0.8])


needs_dlib = pytest.mark.skipif(
    teacher_mod.model_dir() is None, reason="the face teacher is an optional extra: pip install -e '.[teacher]'"
)


@needs_dlib
def test_teacher_describes_a_face_and_falls_back_to_a_box(data_root: Path) -> None:
    from model.faces import as_rgb_array
    from model.preprocess import decode
    from training.data.faces import iter_lfw_images

    img = next(iter_lfw_images(data_root, {"Aaron_Eckhart"}))
    t = teacher_mod.DlibTeacher()
    d = t.describe(as_rgb_array(decode(img.data)), pick="central")
    assert d.vector is not None
    assert d.vector.shape == (128,)
    assert d.how in ("detected", "upsampled")
    blank = np.full((120, 120, 3), 128, np.uint8)
    assert t.describe(blank).vector is None
    fb = t.describe(blank, pick="central", fallback=0.8)
    assert fb.how == "fallback"
    assert fb.vector is not None
    assert np.isfinite(fb.vector).all()


def test_centring_spreads_a_narrow_cone() -> None:
    """Targets in a narrow cone (as the teacher's are): after centring, different ones are near-orthogonal,
    rows stay unit length, and NaN rows stay NaN."""
    rng = np.random.default_rng(0)
    common = np.zeros(16, np.float32)
    common[0] = 10.0
    raw = common + rng.normal(size=(200, 16)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    raw[5] = np.nan
    assert np.nanmean(raw[:100] @ raw[100:].T) > 0.8
    c = teacher_mod.centre(raw)
    assert np.isnan(c[5]).all()
    ok = ~np.isnan(c).any(1)
    np.testing.assert_allclose(np.linalg.norm(c[ok], axis=1), 1.0, atol=1e-5)
    assert abs(np.nanmean(c[:100] @ c[100:].T)) < 0.05
