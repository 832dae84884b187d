"""The peer row of bench/results/faces.md: face_recognition's model (dlib's ResNet, 128-d; 99.38% claimed on
LFW) on the very same LFW pairs and photos as our end-to-end row, on this machine.

    pip install -e '.[teacher]'                      # dlib-bin + face_recognition_models (optional extra)
    python bench/faces_peer.py --protocol view1      # prints the row; bench/faces.py --peer puts it in the table

It runs what `face_recognition.face_encodings(face_recognition.load_image_file(path))` runs with its defaults,
called through dlib directly (the `face_recognition` wrapper needs a source build of dlib, and
face_recognition_models imports pkg_resources, which recent setuptools no longer ship; only the model files
are read): HOG detection with one upsampling, the 5-point shape predictor, one jitter, 128-d descriptors,
Euclidean distance. Decision: face_recognition's documented tolerance 0.6 (distance ≤ 0.6 = same person), so
no LFW pair tunes it. Photos are decoded by our `model.preprocess.decode`; of several faces the largest is
encoded (as our end-to-end row does); a photo without a face makes its pairs "different". Encodings are cached
per image in .cache/peer/ (resumable; the bench reuses them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from training import verification  # noqa: E402
from training.data.faces import LFWSplit, Pair, iter_lfw_images, load_lfw_protocol  # noqa: E402
from training.teacher import model_dir  # noqa: E402

LOG = logging.getLogger("bench.faces_peer")


def photo_key(name: str, index: int) -> str:
    """ "<Name>/<Name>_NNNN.jpg": an LFW photo, as `iter_lfw_images` names it (identity / file name)."""
    return f"{name}/{name}_{index:04d}.jpg"


TOLERANCE = 0.6  # face_recognition's default `tolerance` in compare_faces
CACHE = REPO / ".cache" / "peer"


_TEACHER: Any = None


def _encode(item: tuple[str, bytes]) -> tuple[str, list[float] | None, float]:
    """(key, 128-d descriptor of the largest face or None, seconds for detect + encode) in a worker."""
    global _TEACHER
    from model.faces import as_rgb_array
    from model.preprocess import decode
    from training.teacher import DlibTeacher

    if _TEACHER is None:
        _TEACHER = DlibTeacher()
    key, data = item
    d = _TEACHER.describe(as_rgb_array(decode(data)), pick="largest", upsample=1)
    return key, None if d.vector is None else d.vector.tolist(), d.seconds


def encode_pairs(pairs: tuple[Pair, ...], data_root: Path, workers: int) -> dict[str, dict[str, Any]]:
    """Descriptors of every photo in `pairs`, keyed by `photo_key`; cached in .cache/peer/."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cache_file = CACHE / "lfw.json"
    done: dict[str, dict[str, Any]] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    wanted = {photo_key(p.name_a, p.index_a) for p in pairs} | {photo_key(p.name_b, p.index_b) for p in pairs}
    names = {m.split("/")[0] for m in wanted - set(done)}
    todo = [
        (f"{img.identity}/{img.filename}", img.data)
        for img in iter_lfw_images(data_root, names)
        if f"{img.identity}/{img.filename}" in wanted and f"{img.identity}/{img.filename}" not in done
    ]
    LOG.info("face_recognition: %d photos cached, %d to encode with %d workers", len(done), len(todo), workers)
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, (key, desc, secs) in enumerate(
            tqdm(pool.map(_encode, todo, chunksize=8), total=len(todo), desc="face_recognition", unit="img")
        ):
            done[key] = {"descriptor": desc, "seconds": secs}
            if (i + 1) % 200 == 0 or i + 1 == len(todo):
                tmp = cache_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(done))
                tmp.replace(cache_file)  # resumable, never half-written
    return {k: done[k] for k in wanted}


def peer_report(split: LFWSplit, data_root: Path, workers: int = 2) -> dict[str, Any]:
    """face_recognition on `split.test_pairs`: accuracy at tolerance 0.6, AUC, EER, TAR@FAR, seconds/photo."""
    enc = encode_pairs(split.test_pairs, data_root, workers)
    same, values = [], []
    for p in split.test_pairs:
        a, b = enc[photo_key(p.name_a, p.index_a)], enc[photo_key(p.name_b, p.index_b)]
        same.append(p.same)
        if a["descriptor"] is None or b["descriptor"] is None:
            values.append(np.inf)  # no face: decided "different", as for our end-to-end row
        else:
            values.append(float(np.linalg.norm(np.subtract(a["descriptor"], b["descriptor"]))))
    v = np.array(values)
    finite = np.isfinite(v)
    v[~finite] = v[finite].max() + 1.0  # rejected at every threshold
    report = verification.verification_report(np.array(same), v, higher_is_closer=False, threshold=TOLERANCE)
    secs = [e["seconds"] for e in enc.values()]
    return {
        "accuracy": report.accuracy,
        "auc": report.auc,
        "eer": report.eer,
        "tar_at_far": report.to_dict()["tar_at_far"],
        "photos": len(enc),
        "no_face": int(sum(e["descriptor"] is None for e in enc.values())),
        "seconds_per_photo_median": float(np.median(secs)),
        "protocol": f"LFW {split.name} test pairs from the photos; face_recognition defaults, tolerance 0.6",
    }


def teacher_heldout_report(split: LFWSplit, data_root: Path) -> dict[str, Any]:
    """The teacher on the face rows' held-out-people pairs (`training.face_eval.heldout_pairs`: the very same
    images, order and seeded pairs): its cached targets (`training.teacher`: the central face of each photo, a
    centred box where HOG finds none), cosine similarity. Threshold-free figures: AUC, EER, TAR at FAR."""
    from training.data.face_cache import default_face_block, load_face_crops
    from training.face_eval import EVAL_SETS, heldout_pairs, heldout_rows
    from training.teacher import teacher_targets

    crops = load_face_crops(data_root, REPO / ".cache", EVAL_SETS, default_face_block(), channels=1)
    rows = heldout_rows(crops, [f"lfw/{p}" for p in split.test_people])
    vectors = teacher_targets(data_root, REPO / ".cache", ("lfw",)).lookup([crops.keys[r] for r in rows])
    ia, ib, same = heldout_pairs(np.array([crops.identity[r] for r in rows]), 200_000, 0)
    values = np.nan_to_num((vectors[ia] * vectors[ib]).sum(1), nan=-2.0)  # no descriptor: never a match
    report = verification.verification_report(same, values, higher_is_closer=True, fars=verification.CARD_FARS)
    return {**report.to_dict(), "n_genuine": int(same.sum()), "n_impostor": int((~same).sum())}


def teacher_orl_report(data_root: Path, holdout_subjects: int = 10, seed: int = 0) -> dict[str, Any]:
    """The teacher on the face rows' ORL held-out subjects (`training.data.face_cache.orl_heldout`, the
    TrainConfig defaults every face experiment keeps): its cached targets of their 100 photos, every pair, cosine
    similarity; EER with an oracle threshold as for our rows, and one-shot identification over 20 seeded rounds."""
    from training.data.face_cache import orl_heldout
    from training.teacher import teacher_targets

    subjects = set(orl_heldout(holdout_subjects, seed))
    targets = teacher_targets(data_root, REPO / ".cache", ("orl",))
    rows = [i for i, k in enumerate(targets.keys) if k.rsplit("/", 1)[0] in subjects]  # keys: orl/<subject>/<file>
    labels = np.array([targets.keys[i].rsplit("/", 1)[0] for i in rows])
    same, values = verification.all_pairs(targets.vectors[rows], labels, "cosine")
    report = verification.verification_report(same, values.astype(np.float64), higher_is_closer=True)
    ident = verification.one_shot_rounds(targets.vectors[rows], labels, "cosine", rounds=20, seed=seed)
    return {**report.to_dict(), "one_shot_identification": ident.mean, "images": len(rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="view1", help="view1 or fold1..fold10")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if model_dir() is None:
        print("face_recognition's model is not installed: pip install -e '.[teacher]'", file=sys.stderr)
        return 2
    protocol = load_lfw_protocol(args.data_root)
    split = protocol.view1_split() if args.protocol == "view1" else protocol.view2_split(int(args.protocol[4:]) - 1)
    print(json.dumps(peer_report(split, args.data_root, args.workers), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
