"""From archives to protocol numbers: the aligned-crop cache, the training mask, and LFW pair scoring."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.preprocess import PreprocessSpec
from training.config import TrainConfig
from training.data.face_cache import (
    FaceCrops,
    _build_set,
    default_face_block,
    orl_heldout,
    recipe_parts,
    training_mask,
)
from training.data.faces import FaceImage, LFWSplit, Pair, iter_orl_images, load_lfw_protocol
from training.face_eval import lfw_key, lfw_split_report, score_pairs

SPEC = PreprocessSpec(size=(16, 16), channels=1, invert=False, resample="bilinear")


def pixels(x: np.ndarray) -> np.ndarray:
    """The raw-pixel embedding: an EmbedFn whose distances are known from the images alone."""
    return x.reshape(len(x), -1)


def crops_for(keys: list[str], images: np.ndarray, e2e_ok: np.ndarray | None = None) -> FaceCrops:
    n = len(keys)
    return FaceCrops(
        keys=keys,
        identity=[k.rsplit("/", 1)[0] for k in keys],
        crops=images,
        method=np.array(["landmarks"] * n),
        e2e=images.copy(),
        e2e_ok=np.ones(n, bool) if e2e_ok is None else e2e_ok,
    )


@pytest.mark.data
@pytest.mark.parametrize("detector", ["haar", "blazeface"])
def test_orl_images_become_aligned_crops(data_root: Path, detector: str) -> None:
    images = list(itertools.islice(iter_orl_images(data_root), 4))
    blank = io.BytesIO()
    Image.new("L", (92, 112), 128).save(blank, format="PNG")
    images.append(FaceImage("s1", "blank.png", blank.getvalue()))  # nothing to detect
    cfg = TrainConfig(data="faces", face_detector=detector)
    align, det, _ = recipe_parts(default_face_block(detector=cfg.face_detector))  # as a training run makes it
    assert det.name == detector
    part = _build_set("orl", iter(images), det, align, channels=1, min_size=20)
    assert part.crops.shape == (5, 112, 112, 1)
    assert part.keys[0] == "orl/s1/1.pgm"
    assert set(part.identity) == {"orl/s1"}
    # Every real ORL portrait has a detected face; BlazeFace always gives its eyes.
    assert set(part.method[:4]) <= ({"landmarks"} if detector == "blazeface" else {"landmarks", "box"})
    assert part.method[4] == "default-box"  # the set's median box stands in
    assert not part.e2e_ok.any()  # end to end is an LFW protocol only
    assert part.crops[:4].std() > 20  # real faces, not fill


@pytest.mark.data
def test_training_mask_keeps_scored_people_out(data_root: Path) -> None:
    if not (data_root / "lfw" / "people.txt").is_file():
        pytest.skip("needs LFW's protocol files in the shared data")
    protocol = load_lfw_protocol(data_root)
    fold1 = sorted(protocol.folds_people[0])[:3]
    fold2 = sorted(protocol.folds_people[1])[:3]
    dev_test = sorted(protocol.dev_test_people)[:3]
    keys = [f"lfw/{n}/{n}_0001.jpg" for n in fold1 + fold2 + dev_test] + [f"orl/s{i}/1.pgm" for i in range(1, 41)]
    crops = crops_for(keys, np.zeros((len(keys), 4, 4, 1), np.uint8))
    ident = np.array(crops.identity)

    def kept(**over: object) -> set[str]:
        cfg = TrainConfig(data="faces", data_root=str(data_root), **over)  # type: ignore[arg-type]
        return set(ident[training_mask(crops, cfg)])

    fold1_run = kept(face_protocol="fold1", holdout_subjects=10)
    assert not fold1_run & {f"lfw/{n}" for n in fold1}
    assert {f"lfw/{n}" for n in fold2} <= fold1_run
    assert not fold1_run & set(orl_heldout(10, 0))
    assert len([i for i in fold1_run if i.startswith("orl/")]) == 30
    assert not kept(face_protocol="view1") & {f"lfw/{n}" for n in dev_test}
    assert len(kept(face_protocol="all", holdout_subjects=0)) == len(set(ident))
    assert not any(i.startswith("lfw/") for i in kept(face_sets="orl,yaleb"))


def test_end_to_end_pairs_without_a_face_are_decided_different() -> None:
    rng = np.random.default_rng(0)
    people = ["Ann", "Bob", "Cid", "Dee"]
    keys, images = [], []
    for p in people:
        base = rng.integers(0, 255, size=(16, 16, 1))
        for i in (1, 2):
            keys.append(lfw_key(p, i))
            images.append(np.clip(base + rng.integers(-5, 6, size=base.shape), 0, 255))
    arr = np.stack(images).astype(np.uint8)
    no_face = np.array([k != lfw_key("Bob", 2) for k in keys])  # the service finds no face in one photo
    crops = crops_for(keys, arr, e2e_ok=no_face)
    same = tuple(Pair(p, 1, p, 2) for p in people)
    diff = tuple(Pair(a, 1, b, 1) for a, b in itertools.pairwise(people))
    aligned = score_pairs(pixels, crops, same + diff, SPEC, "euclidean")
    e2e = score_pairs(pixels, crops, same + diff, SPEC, "euclidean", e2e=True)
    assert aligned.usable.all()
    assert e2e.usable.tolist() == [True, False, True, True, True, True, True]

    split = LFWSplit("toy", frozenset(), frozenset(people), same + diff, same + diff)
    report, cal = lfw_split_report(pixels, crops, split, SPEC, "euclidean")
    assert report.threshold_source == "given"
    assert report.accuracy == 1.0  # near-copies vs independent noise: separable at the fitted threshold
    e2e_report, _ = lfw_split_report(pixels, crops, split, SPEC, "euclidean", e2e=True)
    assert e2e_report.accuracy == pytest.approx(6 / 7)  # Bob's pair is lost to detection, as for a user
    assert cal.matches(np.array([0.0]))[0]


def test_face_evaluation_feeds_the_model_what_serving_feeds_it() -> None:
    """Crops reach the embedder as prepared floats in [0, 1], once scaled (a second /255 once made every face
    look alike: cosine ≈ 1 for all pairs)."""
    keys = [lfw_key("Ann", 1), lfw_key("Ann", 2)]
    arr = np.stack([np.full((16, 16, 1), 200, np.uint8), np.full((16, 16, 1), 40, np.uint8)])
    seen: list[np.ndarray] = []

    def embed(x: np.ndarray) -> np.ndarray:
        seen.append(x)
        return pixels(x)

    score_pairs(embed, crops_for(keys, arr), (Pair("Ann", 1, "Ann", 2),), SPEC, "euclidean")
    x = np.concatenate(seen)
    assert x.dtype == np.float32
    assert x.max() == pytest.approx(200 / 255, abs=0.01)
    assert x.min() == pytest.approx(40 / 255, abs=0.01)
