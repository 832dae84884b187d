"""Regenerate bench/results/face_detection.md: face detection and eye landmarks per backend on LFW and ORL.

    OMP_NUM_THREADS=1 python bench/face_detection.py                       # all 13,233 LFW images + all 400 ORL
    OMP_NUM_THREADS=1 python bench/face_detection.py --lfw-sample 2000     # a seeded sample of LFW
    python bench/face_detection.py --out -                                 # print only

Images are read straight from the archives (`lfw/lfw-deepfunneled.tgz` with tarfile, `orl_faces/orl_faces.zip`),
decoded by `model.preprocess.decode` as serving decodes them, and passed to each available backend
(`blazeface` and `haar` always; `dlib` where dlib and its 5-point model are installed). Timings are of
`detector.detect` only (faces + eyes), one thread (OpenCV's pool and BlazeFace's ONNX Runtime session at 1
thread), mean over the images.

Besides the detection table the script measures what the alignment fallback needs: where the Haar eye search
puts the eyes inside a Haar face box (the `HAAR_BOX_*_EYE` constants of model/faces.py), how far that fallback
is from the eyes it stands in for, and how close each backend's eyes are to dlib's (error and bias).
`--ablation-sample` images of LFW (seeded) plus ORL are run through variants of the BlazeFace and the Haar
parameters to show why the defaults are what they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import platform
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
from PIL import __version__ as PILLOW_VERSION  # noqa: E402

from model.faces import (  # noqa: E402
    DEFAULT_EYE_CASCADES,
    DEFAULT_EYE_FALLBACK,
    Face,
    FaceDetector,
    FaceError,
    HaarFaceDetector,
    HaarParams,
    as_rgb_array,
    dlib_available,
    find_face,
)
from model.preprocess import decode  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("bench.face_detection")


def lfw_images(root: Path, sample: int | None, seed: int) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of LFW's JPEGs, in archive order; a seeded sample of `sample` of them if given."""
    path = root / "lfw" / "lfw-deepfunneled.tgz"
    with tarfile.open(path, "r:gz") as tf:
        members = [m for m in tf if m.isfile() and m.name.endswith(".jpg")]
        keep = range(len(members))
        if sample is not None and sample < len(members):
            keep = sorted(np.random.default_rng(seed).choice(len(members), sample, replace=False).tolist())
        for i in keep:
            f = tf.extractfile(members[i])
            assert f is not None
            yield members[i].name, f.read()


def orl_images(root: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(root / "orl_faces" / "orl_faces.zip") as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".pgm")):
            yield name, z.read(name)


def load(images: Iterator[tuple[str, bytes]]) -> list[tuple[str, np.ndarray]]:
    return [(name, as_rgb_array(decode(data))) for name, data in images]


class _Fixed:
    """A detector that returns faces already found: runs `find_face`'s decision on cached results."""

    name = "cached"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.faces


@dataclass
class Run:
    """One backend on one dataset: per image, the faces and the seconds `detect` took."""

    backend: str
    dataset: str
    faces: list[list[Face]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    shapes: list[tuple[int, int]] = field(default_factory=list)


def run(detector: FaceDetector, backend: str, dataset: str, images: list[tuple[str, np.ndarray]]) -> Run:
    r = Run(backend, dataset)
    t_log = time.perf_counter()
    for i, (_, img) in enumerate(images):
        t0 = time.perf_counter()
        faces = detector.detect(img)
        r.seconds.append(time.perf_counter() - t0)
        r.faces.append(faces)
        r.shapes.append(img.shape[:2])
        if time.perf_counter() - t_log > 60:
            LOG.info("%s on %s: %d/%d", backend, dataset, i + 1, len(images))
            t_log = time.perf_counter()
    return r


def largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.area) if faces else None


def covers_centre(face: Face, shape: tuple[int, int]) -> bool:
    x, y, w, h = face.box
    return x <= shape[1] / 2 <= x + w and y <= shape[0] / 2 <= y + h


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}" if total else "—"


def summary_row(r: Run) -> list[str]:
    n = len(r.faces)
    counts = [len(f) for f in r.faces]
    one = sum(c == 1 for c in counts)
    some = sum(c >= 1 for c in counts)
    centre = sum(any(covers_centre(f, s) for f in fs) for fs, s in zip(r.faces, r.shapes, strict=True))
    eyes = sum((lf := largest(fs)) is not None and lf.eyes is not None for fs in r.faces)
    ms = 1000 * np.asarray(r.seconds)
    outcomes: dict[str, int] = {}
    for fs, s in zip(r.faces, r.shapes, strict=True):
        try:
            find_face(np.zeros((*s, 3), np.uint8), _Fixed(fs))
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except FaceError as e:
            outcomes[e.code] = outcomes.get(e.code, 0) + 1
    return [
        r.backend,
        r.dataset,
        f"{n:,}",
        pct(one, n),
        pct(some, n),
        pct(n - some, n),
        pct(centre, n) if r.dataset.startswith("LFW") else "—",
        pct(eyes, n),
        pct(outcomes.get("ok", 0), n),
        ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "ok") or "—",
        f"{ms.mean():.1f}",
        f"{np.percentile(ms, 95):.1f}",
    ]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def iod(eyes: tuple[tuple[float, float], tuple[float, float]]) -> float:
    return math.dist(eyes[0], eyes[1])


def box_relative(face: Face) -> np.ndarray:
    """[lx, ly, rx, ry] of the face's eyes as fractions of its box."""
    x, y, w, h = face.box
    (lx, ly), (rx, ry) = face.eyes  # type: ignore[misc]
    return np.array([(lx - x) / w, (ly - y) / h, (rx - x) / w, (ry - y) / h])


def fallback_eyes(face: Face, rel: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    x, y, w, h = face.box
    return (x + rel[0] * w, y + rel[1] * h), (x + rel[2] * w, y + rel[3] * h)


def eye_error(a: Face | tuple, b: tuple) -> float:
    """The larger of the two eye distances between `a`'s eyes and `b` (eye pair), in `b`'s interocular units."""
    ea = a.eyes if isinstance(a, Face) else a
    return max(math.dist(ea[0], b[0]), math.dist(ea[1], b[1])) / iod(b)


def same_face(a: Face, b: Face) -> bool:
    """Boxes overlap with intersection over union >= 0.3."""
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (a.area + b.area - inter) >= 0.3


def fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in v) + ")"


def fallback_section(haar: list[Run], dlib_runs: dict[str, Run]) -> tuple[list[str], np.ndarray]:
    """Box-relative eye positions over faces with Haar eyes; the fallback's error against Haar's and dlib's eyes."""
    lines = [
        "## Fallback eye positions (where the eyes sit in a Haar face box)",
        "",
        "For every image whose largest Haar face has an eye pair: the eyes' positions as fractions of the box",
        "(x of its width, y of its height). The pooled mean is `HAAR_BOX_LEFT_EYE` / `HAAR_BOX_RIGHT_EYE` in",
        "model/faces.py, which `AlignSpec`'s fallback uses when no eyes are found. Error columns: how far the",
        "fallback (the pooled mean placed on the box) lands from the eyes it replaces, as the larger of the two",
        "eye distances in interocular distances (IOD): against Haar's own eyes on the same faces, and against",
        "dlib's 5-point eyes (mean of the two corners) on the same face where dlib ran.",
        "",
    ]
    rel_by_set = {
        r.dataset: np.array([box_relative(f) for fs in r.faces if (f := largest(fs)) and f.eyes]) for r in haar
    }
    pooled = np.concatenate([v for v in rel_by_set.values() if len(v)])
    mean = pooled.mean(0)
    rows = []
    for r in haar:
        rel = rel_by_set[r.dataset]
        err_haar, err_dlib = [], []
        d = dlib_runs.get(r.dataset)
        for i, fs in enumerate(r.faces):
            f = largest(fs)
            if f is None:
                continue
            fb = fallback_eyes(f, mean)
            if f.eyes:
                err_haar.append(eye_error(fb, f.eyes))
            if d is not None and (g := largest(d.faces[i])) is not None and same_face(f, g):
                err_dlib.append(eye_error(fb, g.eyes))
        rows.append(
            [
                r.dataset,
                f"{len(rel):,}",
                fmt(rel.mean(0)),
                fmt(rel.std(0)),
                f"{np.median(err_haar):.3f} / {np.percentile(err_haar, 90):.3f}" if err_haar else "—",
                f"{np.median(err_dlib):.3f} / {np.percentile(err_dlib, 90):.3f}" if err_dlib else "—",
            ]
        )
    rows.append(["**pooled** (all faces above)", f"{len(pooled):,}", f"**{fmt(mean)}**", fmt(pooled.std(0)), "", ""])
    header = [
        "dataset",
        "faces with Haar eyes",
        "mean (lx, ly, rx, ry)",
        "std",
        "fallback vs Haar eyes, median / p90 IOD",
        "fallback vs dlib eyes (all Haar faces), median / p90 IOD",
    ]
    lines += table(header, rows)
    return lines, mean


def eye_bias(f: Face, g: Face) -> tuple[float, float]:
    """(interocular distance ratio f / g, midpoint offset along g's downward eye-line normal in g's IODs)."""
    (l1, r1), (l2, r2) = np.asarray(f.eyes), np.asarray(g.eyes)
    d = r2 - l2
    iod2 = float(np.hypot(*d))
    normal = np.array([-d[1], d[0]]) / iod2
    return float(np.hypot(*(r1 - l1))) / iod2, float(((l1 + r1) / 2 - (l2 + r2) / 2) @ normal) / iod2


def landmark_section(runs: list[Run], dlib_runs: dict[str, Run]) -> list[str]:
    if not dlib_runs:
        return []
    lines = [
        "## Eyes against dlib's 5-point eyes",
        "",
        "Largest face of each image, where both backends found it (boxes IoU ≥ 0.3) and the backend found eyes.",
        "Error: the larger of the two eye distances, in dlib interocular distances (IOD). Bias: the median ratio",
        "of the backend's IOD to dlib's, and the median offset of the eyes' midpoint along the downward normal",
        "of dlib's eye line, in dlib IODs (positive: lower). dlib's eye centre is the mean of the eye's two",
        "corners; the Haar eye offsets and BlazeFace's `eye_spread` / `eye_drop` are fitted to that convention,",
        "which the face models were trained with.",
        "",
    ]
    rows = []
    for r in runs:
        d = dlib_runs.get(r.dataset)
        if d is None or r.backend == "dlib":
            continue
        errs, ratio, drop = [], [], []
        for fs, gs in zip(r.faces, d.faces, strict=True):
            f, g = largest(fs), largest(gs)
            if f is not None and g is not None and f.eyes and same_face(f, g):
                errs.append(eye_error(f, g.eyes))
                a, b = eye_bias(f, g)
                ratio.append(a)
                drop.append(b)
        e = np.asarray(errs)
        rows.append(
            [
                r.backend,
                r.dataset,
                f"{len(e):,}",
                f"{np.median(e):.3f}",
                f"{np.percentile(e, 90):.3f}",
                pct(int((e > 0.25).sum()), len(e)),
                f"{np.median(ratio):.3f}",
                f"{np.median(drop):+.3f}",
            ]
        )
    header = ["backend", "dataset", "faces compared", "median", "p90", "% over 0.25 IOD", "IOD ratio", "midpoint drop"]
    return [*lines, *table(header, rows)]


ABLATIONS: list[tuple[str, dict]] = [
    (
        "defaults (alt2, scaleFactor 1.1, minNeighbors 4, minSize 40 searched at 24 px, pad retry 0.15, "
        "eyes at 120 px: 2splits, then haarcascade_eye when no pair)",
        {},
    ),
    ("search at full resolution (search_face 0; the defaults before 2.1.0)", {"search_face": 0}),
    ("search_face 20", {"search_face": 20}),
    ("minSize 24", {"min_face": 24}),
    ("no padded retry", {"pad_retry": 0.0}),
    ("padded retry 0.3", {"pad_retry": 0.3}),
    ("minNeighbors 3", {"min_neighbors": 3}),
    ("minNeighbors 6", {"min_neighbors": 6}),
    ("scaleFactor 1.2", {"scale_factor": 1.2}),
    ("frontalface_default cascade", {"face_cascade": "haarcascade_frontalface_default.xml"}),
    ("no histogram equalisation", {"equalize": False}),
    (
        "eyes: haarcascade_eye only, no centre offsets",
        {
            "eye_cascades": (("haarcascade_eye.xml", "left", 0.0, 0.0), ("haarcascade_eye.xml", "right", 0.0, 0.0)),
            "eye_fallback": (),
        },
    ),
    ("eyes: 2splits only (no fallback)", {"eye_fallback": ()}),
    (
        "eyes: all four cascades in one stage (the defaults before 2.1.0)",
        {"eye_cascades": DEFAULT_EYE_CASCADES + DEFAULT_EYE_FALLBACK, "eye_fallback": ()},
    ),
    ("eyes: minNeighbors 2", {"eye_min_neighbors": 2}),
    ("eyes: face resized to 160 px", {"eye_width": 160}),
]


BLAZEFACE_ABLATIONS: list[tuple[str, dict]] = [
    ("defaults (one pass, eyes moved onto dlib's convention, extra faces from 0.75, Haar fallback)", {}),
    ("mirror averaging (a second pass on the mirror image; the default before 2.3.0)", {"flip_average": True}),
    (
        "BlazeFace's own eye points (eye_spread 1, eye_drop 0: the network's raw output, as MediaPipe decodes it)",
        {"eye_spread": 1.0, "eye_drop": 0.0},
    ),
    ("extra_face_score 0.5 (every face at MediaPipe's min_score)", {"extra_face_score": 0.5}),
    ("min_score 0.75 (for every face)", {"min_score": 0.75}),
]


def variant_rows(
    backend: str,
    make: Callable[[dict], FaceDetector],
    variants: list[tuple[str, dict]],
    sets: list[tuple[str, list[tuple[str, np.ndarray]]]],
    reference: dict[str, Run],
) -> list[list[str]]:
    """One table row per (variant, dataset): `make(change)`'s detector run over the set, as the first table's
    columns plus the eye error against `reference` (dlib's runs, by dataset name) where there is one."""
    rows = []
    for label, change in variants:
        det = make(change)
        for name, images in sets:
            LOG.info("%s variant %s on %s", backend, label, name)
            r = run(det, backend, name, images)
            errs = eye_errors(r, reference[name]) if name in reference else np.zeros(0)
            err = f"{np.median(errs):.3f} / {np.percentile(errs, 90):.3f}" if len(errs) else "—"
            rows.append([label, *summary_row(r)[1:], err])
    return rows


def eye_errors(found: Run, reference: Run) -> np.ndarray:
    """Per image where both runs' largest faces match and both have eyes: the eye error against `reference`."""
    errs = []
    for fs, gs in zip(found.faces, reference.faces, strict=True):
        f, g = largest(fs), largest(gs)
        if f is not None and g is not None and f.eyes and g.eyes and same_face(f, g):
            errs.append(eye_error(f, g.eyes))
    return np.asarray(errs)


def ablation_sections(
    lfw: list[tuple[str, np.ndarray]], orl: list[tuple[str, np.ndarray]], seed: int, reference: dict[str, Run]
) -> list[str]:
    """The BlazeFace and the Haar variant tables."""
    from model.blazeface import BlazeFaceDetector, BlazeFaceParams

    sets = [(f"LFW ({len(lfw):,})", lfw), ("ORL", orl)]
    what = f"(LFW: seeded sample of {len(lfw):,} images, seed {seed}; ORL: all {len(orl)})"
    header = [*HEADER_ABLATION, "eye error vs dlib, median / p90 IOD"]
    blazeface = variant_rows(
        "blazeface", lambda c: BlazeFaceDetector(replace(BlazeFaceParams(), **c)), BLAZEFACE_ABLATIONS, sets, reference
    )
    haar = variant_rows("haar", lambda c: HaarFaceDetector(replace(HaarParams(), **c)), ABLATIONS, sets, reference)
    return [
        f"## BlazeFace variants {what}",
        "",
        "Each row changes the defaults of `BlazeFaceParams` as named; columns as in the Haar table below.",
        "",
        *table(header, blazeface),
        "",
        f"## Haar parameter variants {what}",
        "",
        "Each row changes one parameter of the defaults. Columns as in the first table, plus the Haar eyes' error",
        "against dlib's (as in the previous section) where dlib ran. Timings in this table are noisier than in the",
        "first (other load on the shared machine changes between rows).",
        "",
        *table(header, haar),
    ]


HEADER = [
    "backend",
    "dataset",
    "images",
    "exactly one face %",
    "at least one %",
    "none %",
    "labelled face found % (box covers the centre)",
    "eyes found % (largest face)",
    "`find_face` ok %",
    "`find_face` errors",
    "mean ms/image",
    "p95 ms",
]
HEADER_ABLATION = ["variant", *HEADER[1:]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared datasets folder")
    ap.add_argument("--lfw-sample", type=int, default=None, help="a seeded sample of LFW (default: all images)")
    ap.add_argument("--ablation-sample", type=int, default=2000, help="LFW images for the variants table (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--backends",
        default="blazeface,haar,dlib",
        help="comma-separated: blazeface, haar, dlib (skipped if unavailable)",
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "face_detection.md"), help="'-': stdout only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cv2.setNumThreads(1)
    if not (args.data / "lfw" / "lfw-deepfunneled.tgz").is_file():
        print(f"needs {args.data}/lfw/lfw-deepfunneled.tgz and orl_faces/orl_faces.zip", file=sys.stderr)
        return 2

    t_start = time.perf_counter()
    LOG.info("reading LFW and ORL")
    lfw = load(lfw_images(args.data, args.lfw_sample, args.seed))
    orl = load(orl_images(args.data))
    lfw_label = f"LFW ({len(lfw):,})" if args.lfw_sample else "LFW (all)"
    datasets = [(lfw_label, lfw), ("ORL", orl)]

    backends: list[tuple[str, FaceDetector]] = []
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    skipped = []
    if "blazeface" in wanted:
        from model.blazeface import BlazeFaceDetector

        backends.append(("blazeface", BlazeFaceDetector()))
    if "haar" in wanted:
        backends.append(("haar", HaarFaceDetector()))
    if "dlib" in wanted:
        if dlib_available():
            from model.faces import DlibFaceDetector

            backends.append(("dlib", DlibFaceDetector()))
        else:
            skipped.append("dlib (not installed: `pip install dlib-bin face_recognition_models`)")

    runs: list[Run] = []
    for bname, det in backends:
        for dname, images in datasets:
            LOG.info("%s on %s (%d images)", bname, dname, len(images))
            runs.append(run(det, bname, dname, images))

    haar_runs = [r for r in runs if r.backend == "haar"]
    dlib_runs = {r.dataset: r for r in runs if r.backend == "dlib"}
    fallback_lines, mean = fallback_section(haar_runs, dlib_runs) if haar_runs else ([], None)

    ablation_lines: list[str] = []
    if args.ablation_sample:
        if args.lfw_sample is None or args.ablation_sample < len(lfw):
            pick = np.random.default_rng(args.seed + 1).choice(
                len(lfw), min(args.ablation_sample, len(lfw)), replace=False
            )
            sample = [lfw[i] for i in sorted(pick.tolist())]
        else:
            sample = lfw
        dlib_detector = next((d for b, d in backends if b == "dlib"), None)
        sets = [(f"LFW ({len(sample):,})", sample), ("ORL", orl)]
        reference = {n: run(dlib_detector, "dlib", n, imgs) for n, imgs in sets} if dlib_detector else {}
        ablation_lines = ablation_sections(sample, orl, args.seed + 1, reference)

    versions = f"OpenCV {cv2.__version__}, Pillow {PILLOW_VERSION}"
    if dlib_runs:
        import dlib

        versions += f", dlib {dlib.__version__}"
    command = "OMP_NUM_THREADS=1 python bench/face_detection.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    lines = [
        "# Face detection benchmark",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{command}` on {cpu_name()} / Python "
        f"{platform.python_version()}, {versions}; took {(time.perf_counter() - t_start) / 60:.0f} min.",
        "One thread (`OMP_NUM_THREADS=1`, `cv2.setNumThreads(1)`; dlib's HOG is single-threaded). Timings are of",
        "`detector.detect` (faces and eyes) per image, wall-clock on a shared 2-core virtual machine:",
        "compare rows with each other, not with other machines.",
        f"LFW: deep-funneled, 250×250 JPEGs read from the tgz ({'all' if not args.lfw_sample else 'seeded sample of'}"
        f" {len(lfw):,} images{'' if not args.lfw_sample else f', seed {args.seed}'}); ORL: all 400 92×112 PGMs.",
        "Images are decoded by `model.preprocess.decode`, as serving decodes them.",
        "",
        'LFW images are centred on the labelled person but often show other people too, so "exactly one face"',
        'is below "at least one" for good reasons; "labelled face found" counts images where some box covers',
        "the image centre. `find_face` columns: the decision serving makes with its defaults (min_size 40 px,",
        "several faces an error), and how many images got each error code.",
        "",
    ]
    if skipped:
        lines += [f"Skipped backends: {', '.join(skipped)}.", ""]
    lines += table(HEADER, [summary_row(r) for r in runs])
    lines += [""]
    if fallback_lines:
        lines += [*fallback_lines, ""]
    landmark = landmark_section(runs, dlib_runs)
    if landmark:
        lines += [*landmark, ""]
    if ablation_lines:
        lines += [*ablation_lines, ""]
    text = "\n".join(lines)
    print(text)
    if mean is not None:
        LOG.info("fallback constants: left %s right %s", fmt(mean[:2]), fmt(mean[2:]))
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        LOG.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
