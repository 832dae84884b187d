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
import importlib.util
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from training import verification  # noqa: E402
from training.data.faces import LFWSplit, Pair, iter_lfw_images, load_lfw_protocol  # noqa: E402

LOG = logging.getLogger("bench.faces_peer")


def photo_key(name: str, index: int) -> str:
    """ "<Name>/<Name>_NNNN.jpg": an LFW photo, as `iter_lfw_images` names it (identity / file name)."""
    return f"{name}/{name}_{index:04d}.jpg"


TOLERANCE = 0.6  # face_recognition's default `tolerance` in compare_faces
CACHE = REPO / ".cache" / "peer"


def model_dir() -> Path | None:
    """face_recognition_models' folder of .dat files, found without importing the package (see docstring)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None or importlib.util.find_spec("dlib") is None:
        return None
    return Path(spec.origin).parent / "models"


_MODELS: tuple[Any, Any, Any] | None = None


def _encode(item: tuple[str, bytes]) -> tuple[str, list[float] | None, float]:
    """(key, 128-d descriptor of the largest face or None, seconds for detect + encode) in a worker."""
    global _MODELS
    import dlib

    from model.faces import as_rgb_array
    from model.preprocess import decode

    if _MODELS is None:
        folder = model_dir()
        assert folder is not None
        _MODELS = (
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")),
        )
    detector, predictor, encoder = _MODELS
    key, data = item
    rgb = np.ascontiguousarray(as_rgb_array(decode(data)))
    t = time.perf_counter()
    faces = detector(rgb, 1)
    if len(faces) == 0:
        return key, None, time.perf_counter() - t
    face = max(faces, key=lambda r: r.width() * r.height())
    desc = encoder.compute_face_descriptor(rgb, predictor(rgb, face), 1)
    return key, list(desc), time.perf_counter() - t


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
