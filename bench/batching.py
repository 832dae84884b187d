"""Regenerate bench/results/batching.md: would batching concurrent requests make the service faster?

    OMP_NUM_THREADS=1 python bench/batching.py          # ~1 min; run it on an otherwise idle machine

A photo goes through two networks: BlazeFace (one 128×128 letterboxed image) and the face embedder (one aligned
crop). The service runs each request's pipeline on its own, `SIAMFACE_EMBED_CONCURRENCY` (2) of them at once
in worker threads, each ONNX Runtime call on `SIAMFACE_ONNX_THREADS` (1) thread. The alternative would be to
gather the photos of concurrent requests and run each network once on the batch. This script measures, for
both networks, on real inputs (LFW photos letterboxed the detector's way, their crops aligned the service's
way, both through `model/`):

  1. one thread: milliseconds per image at batch sizes 1 to 16 (median of `--repeats` timed calls);
  2. both cores: images per second of the service's way (two threads, one image per call, one thread per
     session) against one batched call using both cores (one session with two intra-op threads), at the
     batch sizes that concurrent requests could fill.

Batching pays where a batch of n costs less than n single calls; on these small nets and this CPU it decides
whether the service should batch (see app/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from app.pipeline import FacePipeline  # noqa: E402
from model.artifact import load as load_artifact  # noqa: E402
from model.blazeface import BLAZEFACE_ONNX, BlazeFaceDetector  # noqa: E402
from model.faces import FaceError, as_rgb_array  # noqa: E402
from model.preprocess import decode, prepare_batch  # noqa: E402
from training.data.faces import iter_lfw_images  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("bench.batching")
DATA = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results" / "batching.md"
SIZES = (1, 2, 4, 8, 16)
PEOPLE = ["Colin_Powell", "Tony_Blair"]  # 16 photos are enough: the nets' cost does not depend on the content


def session(path: Path | str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def real_inputs(pipeline: FacePipeline, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n LFW photos as the detector's input (n×3×128×128) and their aligned crops as the embedder's (n×C×H×W)."""
    detector = BlazeFaceDetector()
    boxes, crops = [], []
    for img in iter_lfw_images(DATA, names=PEOPLE):
        rgb = as_rgb_array(decode(img.data))
        try:
            crops.append(pipeline.one(img.data).crop)
        except FaceError:
            continue
        boxes.append(detector._letterbox(rgb)[0])  # the detector's own letterbox: the exact input it runs on
        if len(crops) == n:
            break
    from PIL import Image

    return np.concatenate(boxes), prepare_batch([Image.fromarray(c) for c in crops], pipeline.artifact.spec)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of fn (after 20 untimed ones: the first calls of a session are slow)."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def per_image_ms(sess: ort.InferenceSession, x: np.ndarray, repeats: int) -> dict[int, float]:
    name = sess.get_inputs()[0].name
    return {n: 1000 * timed(lambda n=n: sess.run(None, {name: x[:n]}), repeats) / n for n in SIZES}


def two_threads_rate(path: Path | str, x: np.ndarray, seconds: float) -> float:
    """Images per second with two threads, each on its own one-thread session, one image per call."""
    sessions = [session(path, 1), session(path, 1)]
    name = sessions[0].get_inputs()[0].name
    counts = [0, 0]
    start = threading.Barrier(3)
    stop = time.perf_counter() + seconds + 0.5  # both threads start within the barrier; 0.5 s of warm-up margin

    def work(i: int) -> None:
        start.wait()
        j = 0
        while time.perf_counter() < stop:
            sessions[i].run(None, {name: x[j % len(x)][None]})
            counts[i] += 1
            j += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def batched_rate(path: Path | str, x: np.ndarray, n: int, repeats: int) -> float:
    """Images per second of one session with two intra-op threads running batches of n."""
    sess = session(path, 2)
    name = sess.get_inputs()[0].name
    return n / timed(lambda: sess.run(None, {name: x[:n]}), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=REPO / "model" / "artifacts" / "faces")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per batch size")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each two-thread run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    artifact = load_artifact(args.artifact, threads=1)
    pipeline = FacePipeline(artifact, max_pixels=40_000_000)
    boxes, crops = real_inputs(pipeline, max(SIZES))
    nets = [
        ("BlazeFace detector (3×128×128)", BLAZEFACE_ONNX, boxes),
        (f"face embedder `{artifact.card.name}` {artifact.card.version} ({'×'.join(map(str, crops.shape[1:]))})",
         artifact.path / "model.onnx", crops),
    ]  # fmt: skip
    load = os.getloadavg()
    lines = [
        "# Batching concurrent requests: measured",
        "",
        f"Command: `OMP_NUM_THREADS=1 python bench/batching.py`. Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} "
        f"UTC on {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}, ONNX Runtime "
        f"{ort.__version__}, load average at start {load[0]:.2f}. Inputs: {len(crops)} LFW photos of "
        f"{' and '.join(PEOPLE)}, letterboxed for the detector and aligned for the embedder as the service does.",
        "",
        "## One thread: milliseconds per image by batch size",
        "",
        "| network | " + " | ".join(f"batch {n}" for n in SIZES) + " | batch 16 vs 1 |",
        "|---|" + "---|" * (len(SIZES) + 1),
    ]
    rates = []
    for label, path, x in nets:
        LOG.info("timing %s", label)
        ms = per_image_ms(session(path, 1), x, args.repeats)
        lines.append(f"| {label} | " + " | ".join(f"{ms[n]:.3f}" for n in SIZES) + f" | {ms[SIZES[-1]] / ms[1]:.2f}× |")
        rates.append(
            (
                label,
                two_threads_rate(path, x, args.seconds),
                {n: batched_rate(path, x, n, args.repeats) for n in (2, 4, 8)},
            )
        )
    lines += [
        "",
        "## Both cores: images per second",
        "",
        "The service's way: two worker threads, one image per call, each session on one thread. Batched: one call "
        "on a batch of n, one session on two threads.",
        "",
        "| network | two threads, batch 1 (the service) | batched, n = 2 | n = 4 | n = 8 |",
        "|---|---|---|---|---|",
    ]
    for label, two, batched in rates:
        lines.append(f"| {label} | {two:.0f} | " + " | ".join(f"{batched[n]:.0f}" for n in (2, 4, 8)) + " |")
    lines.append("")
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
