"""The teacher's PyTorch port (training/teacher_net.py) and consistent teaching (training/consistent.py):
the port gives dlib's numbers, both crops of one view show the same face, the pool resumes from its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.faces import LEFT_EYE, RIGHT_EYE, AlignSpec, Face, align_face
from training import teacher as teacher_mod
from training.augment import AffineAugment, FaceAugment, warp
from training.config import TrainConfig
from training.consistent import ConsistentTeacher, frame_map, teacher_chip_block
from training.data.face_cache import default_face_block
from training.teacher_net import CHIP, DlibFaceNet, _add_prev, load_teacher_net

needs_dlib = pytest.mark.skipif(
    teacher_mod.model_dir() is None, reason="the face teacher is an optional extra: pip install -e '.[teacher]'"
)


def _photo(seed: int, height: int = 240, width: int = 220) -> np.ndarray:
    """A smooth random RGB texture (uint8 H×W×3): every region looks different, so misplaced pixels show."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 12, width // 12, generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    return (smooth[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@needs_dlib
def test_the_port_gives_dlibs_descriptors(tmp_path: Path) -> None:
    import dlib

    net = load_teacher_net(tmp_path)
    assert (tmp_path / "teacher" / f"{teacher_mod.NAME}.pt").is_file()
    chips = np.stack([_photo(s, CHIP, CHIP) for s in range(3)])
    encoder = dlib.face_recognition_model_v1(str(teacher_mod.require_teacher() / f"{teacher_mod.NAME}.dat"))
    want = np.array([encoder.compute_face_descriptor(np.ascontiguousarray(c)) for c in chips])
    with torch.no_grad():
        got = net(torch.from_numpy(chips).permute(0, 3, 1, 2)).numpy()
        again = load_teacher_net(tmp_path)(torch.from_numpy(chips).permute(0, 3, 1, 2)).numpy()  # from the .pt
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(again, got)
    assert not any(p.requires_grad for p in net.parameters())


def test_add_prev_zero_extends_the_smaller_tensor() -> None:
    a = torch.ones(2, 4, 3, 3)
    b = torch.full((2, 2, 4, 4), 2.0)
    out = _add_prev(a, b)
    assert out.shape == (2, 4, 4, 4)
    assert out[0, 0, 0, 0] == 3.0  # both
    assert out[0, 3, 0, 0] == 1.0  # a's channel only
    assert out[0, 0, 3, 3] == 2.0  # b's position only
    assert out[0, 3, 3, 3] == 0.0  # neither


def test_the_net_takes_chips_and_refuses_other_shapes() -> None:
    net = DlibFaceNet().eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, CHIP, CHIP, dtype=torch.uint8)).shape == (2, 128)
        with pytest.raises(ValueError, match="RGB chips"):
            net(torch.zeros(2, 1, CHIP, CHIP))


def test_a_mirrored_draw_is_the_mirror_image() -> None:
    aug = FaceAugment(affine=AffineAugment(p=0.0), flip=True, brightness=0.0, contrast=0.0, gamma=0.0)
    x = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    view = aug.draw(32, 3, torch.Generator().manual_seed(1))
    mirrored = view.sample[:, 0, 0] < 0
    assert 0 < int(mirrored.sum()) < 32
    out = aug.apply(x, view)
    torch.testing.assert_close(out[mirrored], x[mirrored].flip(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~mirrored], x[~mirrored], atol=1e-5, rtol=0)


def _crops(n: int) -> tuple[torch.Tensor, torch.Tensor, AlignSpec, AlignSpec]:
    """n synthetic photos, each cut twice from the same eyes: the student's crop (float N×3×112×112 in
    [0, 1]) and the master chip (uint8 N×3×M×M)."""
    face_block = default_face_block()
    student, master = (
        AlignSpec.from_dict(face_block["align"]),
        AlignSpec.from_dict(teacher_chip_block(face_block)["align"]),
    )
    s, m = [], []
    for i in range(n):
        photo = _photo(i)
        eyes = {LEFT_EYE: (80.0 + i, 100.0), RIGHT_EYE: (130.0 + i, 96.0 + i)}
        face = Face((60, 60, 100, 110), 1.0, eyes, (photo.shape[1], photo.shape[0]))
        s.append(align_face(photo, face, student))
        m.append(align_face(photo, face, master))
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(s).float() / 255.0, to_t(m), student, master


def test_both_views_of_a_draw_show_the_same_face() -> None:
    """The teacher's view, mapped back into the student's frame, matches the student's view pixel for pixel
    (up to interpolation), for strong rotations, zooms, shifts, mirrors and greying; another draw does not."""
    x, chips, student, master = _crops(6)
    aug = FaceAugment(
        affine=AffineAugment(rotation_deg=20, shear=0.05, scale=(0.8, 1.2), translate=0.1, p=1.0, padding="border"),
        grey=0.5,
        contrast=0.0,  # about each view's own mean, which differs between the two crops
    )
    teacher = ConsistentTeacher(DlibFaceNet().eval(), chips, aug, student, master)
    view = aug.draw(6, 3, torch.Generator().manual_seed(0))
    seen = aug.apply(x, view)
    taught = aug.apply(chips.float() / 255.0, teacher.teacher_view(view), size=CHIP)
    # student pixel u shows master point P·G·u; teacher pixel v shows P·G·P⁻¹·C·v: the same point at v = C⁻¹·P·u
    back = (torch.linalg.inv(teacher._chip_to_master) @ torch.tensor(frame_map(student, master)).float())[:2]
    back = back.expand(6, 2, 3)
    mapped = warp(taught, back, "zeros", size=student.size)
    # Compare where both views show the photo, not their padding (each crop's edge, repeated).
    covered = warp(torch.ones_like(taught), back, "zeros", size=student.size) > 0.99
    covered &= warp(torch.ones_like(x), view.sample, "zeros") > 0.99
    assert covered.float().mean() > 0.5
    assert (mapped - seen).abs()[covered].mean() < 0.01
    other = aug.apply(x, aug.draw(6, 3, torch.Generator().manual_seed(1)))
    assert (other - seen).abs().mean() > 0.05


def test_the_pool_matches_its_views_and_resumes_from_its_file(tmp_path: Path) -> None:
    x, chips, student, master = _crops(5)
    aug = FaceAugment()
    torch.manual_seed(0)
    teacher = ConsistentTeacher(DlibFaceNet().eval(), chips, aug, student, master, batch=2)
    path = tmp_path / "pool.pt"
    teacher.build_pool(3, seed=7, channels=3, path=path)
    assert teacher.pool is not None
    pooled, desc = teacher.pool
    assert desc.shape == (5, 3, 128)
    rows = torch.tensor([4, 0, 2])
    gen = torch.Generator().manual_seed(3)
    seen, targets = teacher.views(rows, x[rows], gen)
    pick = torch.randint(3, (3,), generator=torch.Generator().manual_seed(3))  # the draw views() made
    view = pooled[rows, pick]
    torch.testing.assert_close(seen, aug.apply(x[rows], view))
    want = F.normalize(teacher.describe(rows, view) - teacher.mean, dim=1)
    torch.testing.assert_close(targets, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(targets.norm(dim=1), torch.ones(3))
    # Another teacher reading the same file takes its descriptors instead of computing its own.
    torch.manual_seed(1)
    other = ConsistentTeacher(DlibFaceNet().eval(), chips, aug, student, master)
    other.build_pool(3, seed=7, channels=3, path=path)
    assert other.pool is not None
    torch.testing.assert_close(other.pool[1], desc)
    torch.testing.assert_close(other.mean, teacher.mean)  # the centre too: its own net would give another
    other.build_pool(2, seed=7, channels=3, path=path)  # another pool: recomputed with its own net
    assert other.pool[1].shape == (5, 2, 128)
    assert not torch.allclose(other.pool[1], desc[:, :2])


def test_online_views_run_the_teacher_on_each_draw() -> None:
    x, chips, student, master = _crops(4)
    aug = FaceAugment()
    teacher = ConsistentTeacher(DlibFaceNet().eval(), chips, aug, student, master)
    rows = torch.arange(4)
    a_x, a_t = teacher.views(rows, x, torch.Generator().manual_seed(0))
    b_x, b_t = teacher.views(rows, x, torch.Generator().manual_seed(0))
    _, c_t = teacher.views(rows, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a_t, b_t)
    torch.testing.assert_close(a_x, b_x)
    assert not torch.allclose(a_t, c_t)
    assert a_x.shape == x.shape
    assert a_t.shape == (4, 128)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"distill_views": "sometimes"}, "distill_views must be"),
        ({"distill_views": "consistent", "teacher": "", "distill_regression": 0.0}, "needs a teacher"),
        ({"distill_views": "consistent", "augment": False}, "needs a teacher and augment"),
        ({"teacher_pool": 4}, "teacher_pool"),
        ({"distill_views": "consistent", "teacher_pool": -1}, "teacher_pool"),
    ],
)
def test_config_refuses_inconsistent_teaching(overrides: dict[str, object], message: str) -> None:
    base = {
        "data": "faces",
        "objective": "distill",
        "teacher": "dlib",
        "distill_regression": 1.0,
        "sampler": "m_per_class",
    }
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**base, **overrides})


def test_the_card_says_which_views_the_teacher_described() -> None:
    fixed = teacher_mod.teacher_card(("lfw", "orl"))
    consistent = teacher_mod.teacher_card(("lfw", "orl"), "consistent")
    assert "original photo of lfw, orl" in fixed["targets"]
    assert "augmented view" in consistent["targets"]
    assert fixed["licence"] == consistent["licence"] == teacher_mod.LICENCE


@pytest.mark.data
def test_a_consistent_training_set_pairs_each_crop_with_its_master_chip(data_root: Path, tmp_path: Path) -> None:
    """ORL through face_training_set: each training image comes with the master chip of the same photo, and the
    student's 96×96 input, mapped into the master's frame, lands on the same pixels."""
    from training.data.face_cache import face_training_set
    from training.trainer import preprocess_spec

    cfg = TrainConfig(
        data="faces",
        data_root=str(data_root),
        cache_dir=str(tmp_path),
        face_sets="orl",
        face_detector="blazeface",
        channels=3,
        image_size=96,
        objective="distill",
        teacher="dlib",
        distill_regression=1.0,
        distill_views="consistent",
        sampler="m_per_class",
    )
    face = default_face_block(detector="blazeface")
    train = face_training_set(cfg, preprocess_spec(cfg), face)
    assert train.targets is None
    assert train.teacher_inputs is not None
    master = AlignSpec.from_dict(teacher_chip_block(face)["align"])
    assert train.teacher_inputs.shape == (len(train), 3, master.size, master.size)
    assert len(train) == 300  # 30 subjects (10 held out) × 10 photos
    student = AlignSpec.from_dict(face["align"])
    chips = torch.from_numpy(train.teacher_inputs[:8]).float() / 255.0
    seen = torch.from_numpy(train.images[:8]).float() / 255.0
    into = torch.tensor(frame_map(student, master), dtype=torch.float32)[:2].expand(8, 2, 3)
    mapped = warp(chips, into, "border", size=96)  # the master resampled onto the student's frame
    assert (mapped - seen).abs().mean() < 0.03
    assert (mapped - seen.roll(1, 0)).abs().mean() > 0.05  # another photo's chip does not fit
