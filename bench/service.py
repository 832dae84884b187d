"""Regenerate bench/results/service.md: the live service over HTTP, and the gallery index at scale.

    python bench/service.py                         # the shipped model (model/artifacts/faces); writes the report
    python bench/service.py --artifact DIR          # another face artifact
    python bench/service.py --quick                 # small sizes (a smoke run); report to /tmp, never to results/

What it measures:
  1. HTTP: a real `siamface serve` (uvicorn) in its own process on 127.0.0.1, auth on with a generated key, its
     gallery in a fresh temporary data dir. This process is the client (httpx, threads): latency p50/p99 of
     /verify (two 250×250 LFW JPEGs: `image` + `reference`) and /identify (one LFW JPEG against a gallery of
     10,000 faces) one request at a time, then throughput with 8 requests in flight.
     The gallery: a few LFW subjects enrolled for real (through the service's own enroll: detect, align, embed,
     store), then padded to the gallery size with synthetic faces written straight into the store
     (`SQLiteStore.add_faces`, one subject with one face each, before the server starts: the server rebuilds
     its index from the store at start, as it always does). Synthetic embeddings are drawn from a Gaussian fitted
     to the real ones (then L2-normalised for a cosine model), so they lie where faces lie. The data dir is on
     tmpfs (/dev/shm) when there is one: the padding's one-transaction-per-subject fsyncs would otherwise take
     ~40 s per 10k, and the measured requests never touch the disk (enroll is not measured here).
  2. The index alone (`app.index.VectorIndex`, the service's own class and defaults): build time, per-query
     search time (one query at a time, k = 20 = the 4 × top_k the gallery fetches for top_k = 5) and recall@1
     of the approximate kinds (hnsw, ivf) against exact search (flat), on 10k / 100k / 1M random unit vectors of
     the artifact's embedding size. Two query sets: "near" (a gallery vector plus noise, cosine ≈ 0.7 to it,
     like a genuine probe) and "random" (uniform, the worst case for an approximate index). "rescored" is what
     the service answers: the gallery re-scores the 20 fetched candidates exactly, so its top 1 is right
     whenever the true nearest is among them.
  3. face_recognition's model (dlib; the `teacher` extra), when installed: seconds per image on the same JPEGs.

Without model/artifacts/faces (and no --artifact), a temporary random-weight artifact is built the way
tests/test_app.py builds its fixture (needs torch: the train extra); the report says so in its title and is
never written to bench/results/. Run it on an otherwise idle machine: every number is wall-clock.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
import logging
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

LOG = logging.getLogger("bench.service")
DEFAULT_ARTIFACT = REPO / "model" / "artifacts" / "faces"
DATA = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))
LFW = DATA / "lfw" / "lfw-deepfunneled.tgz"
RESULTS = REPO / "bench" / "results" / "service.md"
SCRATCH = Path(tempfile.gettempdir()) / "siamface-bench"
# LFW's most photographed people (hundreds to ~50 images each): enough images per subject in every mode.
LFW_SUBJECTS = ["George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
                "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien", "John_Ashcroft"]  # fmt: skip
SEARCH_K = 20  # the gallery fetches 4 × top_k faces; top_k = 5 by default
NEAR_COSINE = 0.7  # "near" ANN queries: this cosine to the gallery vector they were made from


@dataclass(frozen=True)
class Sizes:
    subjects: int  # real LFW subjects enrolled
    per_subject: int  # images enrolled per subject (one more is kept as its probe)
    gallery: int  # faces in the served gallery, padding included
    requests: int  # measured requests per endpoint at concurrency 1
    warmup: int
    load_requests: int  # requests per endpoint at concurrency `concurrency`
    concurrency: int
    ann_sizes: tuple[int, ...]
    ann_queries: int
    face_recognition_reps: int


FULL = Sizes(10, 5, 10_000, 200, 10, 400, 8, (10_000, 100_000, 1_000_000), 500, 5)
QUICK = Sizes(3, 3, 1_000, 20, 3, 40, 8, (1_000, 10_000), 100, 2)


# ------------------------------------------------------------------------------------------------ helpers
def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64) * 1000.0
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "max": float(a.max())}  # fmt: skip


def fmt_ms(stats: dict[str, float]) -> str:
    return f"{stats['p50']:.1f} | {stats['p99']:.1f} | {stats['mean']:.1f} | {int(stats['n'])}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temp_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# ------------------------------------------------------------------------------------------------ LFW
@dataclass
class Images:
    by_subject: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)


def read_lfw(subjects: list[str], per_subject: int) -> Images:
    """The first `per_subject` JPEGs (archive order) of each subject, in one streaming pass over the .tgz."""
    if not LFW.is_file():
        sys.exit(f"bench/service.py: needs LFW at {LFW} (set SIAMFACE_DATA to the folder holding lfw/)")
    wanted = set(subjects)
    out = Images({s: [] for s in subjects})
    pattern = re.compile(r"^lfw-deepfunneled/([^/]+)/\1_\d{4}\.jpg$")
    with tarfile.open(LFW, mode="r|gz") as tf:
        for member in tf:
            m = pattern.match(member.name)
            if m is None or m.group(1) not in wanted or len(out.by_subject[m.group(1)]) >= per_subject:
                continue
            f = tf.extractfile(member)
            if f is not None:
                out.by_subject[m.group(1)].append((member.name.rsplit("/", 1)[1], f.read()))
            if all(len(v) >= per_subject for v in out.by_subject.values()):
                break
    short = {s: len(v) for s, v in out.by_subject.items() if len(v) < per_subject}
    if short:
        sys.exit(f"bench/service.py: too few LFW images for {short}")
    return out


# --------------------------------------------------------------------------------------------- artifact
def resolve_artifact(given: str | None, scratch: Path) -> tuple[Path, str | None]:
    """(artifact folder, None) or, without the shipped model, (a temporary test artifact, a warning label)."""
    if given is not None:
        path = Path(given)
        if not (path / "card.json").is_file():
            sys.exit(f"bench/service.py: {path} is not an artifact (no card.json)")
        return path, None
    if (DEFAULT_ARTIFACT / "card.json").is_file():
        return DEFAULT_ARTIFACT, None
    LOG.warning("%s does not exist: building a temporary random-weight artifact (tests/test_app.py)", DEFAULT_ARTIFACT)
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_app import build_test_artifact, orl_images  # needs torch (the train extra)
    except ImportError as e:
        sys.exit(f"bench/service.py: no {DEFAULT_ARTIFACT} and cannot build a temporary one ({e}); pass --artifact")
    dest = scratch / "temporary-artifact"
    build_test_artifact(dest, orl_images())
    label = (
        "TEMPORARY ARTIFACT: model/artifacts/faces does not exist yet, so this ran on the random-weight test "
        "artifact of tests/test_app.py (64×64 grey ResNet, 32-d). Its speed is not the shipped model's and its "
        "identification answers mean nothing."
    )
    return dest, label


# ------------------------------------------------------------------------------------------ the gallery
@dataclass
class Prepared:
    model: str
    dim: int
    distance: str
    verify_pair: tuple[tuple[str, bytes], tuple[str, bytes]]
    probes: dict[str, tuple[str, bytes]]  # subject -> an image of it that was not enrolled
    real_faces: int
    padded: int
    pad_seconds: float
    pipeline_ms: dict[str, float]  # in-process decode → detect → align → embed, per image


def prepare_gallery(artifact: Path, data_dir: Path, images: Images, sizes: Sizes, key: str) -> Prepared:
    """Enroll the real subjects through the service, pad the store to `sizes.gallery` faces, close it."""
    from pydantic import SecretStr

    from app.service import Upload, load_resources
    from app.settings import Settings
    from app.store import NewFace

    settings = Settings(_env_file=None, data_dir=data_dir, artifact=artifact, api_keys=SecretStr(key))
    res = load_resources(settings)
    try:
        pipeline = res.pipeline
        usable: dict[str, list[tuple[str, bytes]]] = {}
        timings: list[float] = []
        for subject, files in images.by_subject.items():
            for name, data in files:
                t = time.perf_counter()
                try:
                    pipeline.one(data, allow_multiple="largest")
                except Exception as e:  # no face, too small: LFW has a few such crops for the Haar detector
                    LOG.info("skipping %s: %s", name, e)
                    continue
                timings.append(time.perf_counter() - t)
                usable.setdefault(subject, []).append((name, data))
        subjects = [s for s, files in usable.items() if len(files) >= 2]
        if not subjects:
            sys.exit("bench/service.py: no LFW subject has two images with a detectable face")
        probes = {s: usable[s][-1] for s in subjects}
        real = 0
        for s in subjects:
            uploads = [Upload(name, data) for name, data in usable[s][:-1]]
            real += res.service.enroll(s, uploads, largest=True).enrolled
        first = subjects[0]
        verify_pair = (usable[first][0], probes[first])

        vectors = np.stack([e.vector for batch in res.store.iter_embeddings() for e in batch]).astype(np.float64)
        mean = vectors.mean(axis=0)
        std = vectors.std(axis=0) if len(vectors) > 1 else np.ones_like(mean)
        rng = np.random.default_rng(0)
        pad = max(0, sizes.gallery - real)
        t0 = time.perf_counter()
        for i in range(pad):
            v = mean + std * rng.standard_normal(len(mean))
            if pipeline.distance.name == "cosine":
                v /= np.linalg.norm(v)
            res.store.add_faces(f"synthetic-{i:07d}", [NewFace(v.astype(np.float32), pipeline.model_id)])
        pad_seconds = time.perf_counter() - t0
        return Prepared(
            model=pipeline.model_id,
            dim=pipeline.dim,
            distance=pipeline.distance.name,
            verify_pair=verify_pair,
            probes=probes,
            real_faces=real,
            padded=pad,
            pad_seconds=pad_seconds,
            pipeline_ms=percentiles(timings),
        )
    finally:
        res.close()


# ------------------------------------------------------------------------------------------- the server
@contextlib.contextmanager
def live_server(artifact: Path, data_dir: Path, key: str, index: str, log_path: Path) -> Iterator[tuple[str, float]]:
    """`siamface serve` in its own process on a free loopback port; yields (base URL, seconds to /ready)."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAMFACE_")}  # nothing of the caller's
    env.update(
        PYTHONPATH=str(REPO),
        SIAMFACE_ARTIFACT=str(artifact.resolve()),
        SIAMFACE_DATA_DIR=str(data_dir),
        SIAMFACE_API_KEYS=key,
        SIAMFACE_INDEX=index,
        SIAMFACE_LOG_LEVEL="warning",
    )
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        # cwd: the data dir's parent, so that no .env of the repository is read.
        proc = subprocess.Popen(cmd, cwd=data_dir.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the server exited with {proc.returncode}:\n{tail}")
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError("the server was not ready after 600 s")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            yield base, time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


Request = Callable[[Any], Any]


def timed(client: Any, request: Request, n: int, concurrency: int) -> tuple[list[float], float, int]:
    """`n` requests, `concurrency` in flight: (latencies in s, wall seconds, non-200 answers)."""

    def one(_: int) -> tuple[float, int]:
        t = time.perf_counter()
        r = request(client)
        return time.perf_counter() - t, r.status_code

    t0 = time.perf_counter()
    if concurrency == 1:
        results = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return [t for t, _ in results], wall, sum(code != 200 for _, code in results)


def http_bench(base: str, key: str, prep: Prepared, sizes: Sizes) -> dict[str, Any]:
    import httpx

    (a_name, a), (b_name, b) = prep.verify_pair
    probe_subject = next(iter(prep.probes))
    p_name, p = prep.probes[probe_subject]

    def verify(c: httpx.Client) -> httpx.Response:
        files = {"image": (a_name, a, "image/jpeg"), "reference": (b_name, b, "image/jpeg")}
        return c.post("/verify", files=files)

    def identify(c: httpx.Client) -> httpx.Response:
        return c.post("/identify", files={"image": (p_name, p, "image/jpeg")}, data={"top_k": "5"})

    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=sizes.concurrency, max_keepalive_connections=sizes.concurrency)
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120, limits=limits) as client:
        for name, request in (("verify", verify), ("identify", identify)):
            r = request(client)
            if r.status_code != 200:
                raise RuntimeError(f"/{name} answered {r.status_code}: {r.text[:500]}")
            out[f"{name}_example"] = r.json()
            timed(client, request, sizes.warmup, 1)
            lat, wall, errors = timed(client, request, sizes.requests, 1)
            out[f"{name}_c1"] = {**percentiles(lat), "errors": errors, "rps": sizes.requests / wall}
            lat, wall, errors = timed(client, request, sizes.load_requests, sizes.concurrency)
            out[f"{name}_load"] = {**percentiles(lat), "errors": errors, "rps": sizes.load_requests / wall}
        correct = 0
        for subject, (name, data) in prep.probes.items():
            r = client.post("/identify", files={"image": (name, data, "image/jpeg")}, data={"top_k": "5"})
            cands = r.json().get("candidates") or [{}]
            correct += int(r.status_code == 200 and cands[0].get("subject_id") == subject)
        out["identify_top1"] = (correct, len(prep.probes))
        ready = client.get("/ready").json()
        out["ready"] = ready
    return out


# --------------------------------------------------------------------------------------------- the index
def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def ann_bench(dim: int, distance: str, sizes: Sizes) -> list[dict[str, Any]]:
    from app.index import IndexParams, VectorIndex
    from app.settings import Settings

    s = Settings(_env_file=None)
    rows = []
    for n in sizes.ann_sizes:
        rng = np.random.default_rng(n)
        x = unit(rng, n, dim)
        ids = np.arange(n, dtype=np.int64)
        targets = rng.integers(0, n, sizes.ann_queries)
        noise = unit(rng, sizes.ann_queries, dim)
        sin = float(np.sqrt(1 - NEAR_COSINE**2))
        near = x[targets] * NEAR_COSINE + noise * sin  # noise is nearly orthogonal to x in high dimension
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        queries = {"near": near, "random": unit(rng, sizes.ann_queries, dim)}
        exact: dict[str, np.ndarray] = {}
        for kind in ("flat", "hnsw", "ivf"):
            if kind == "ivf" and distance == "l1":
                rows.append({"n": n, "kind": kind, "skipped": "FAISS's IVF has no L1"})
                continue
            params = IndexParams(
                kind=kind,
                hnsw_m=s.hnsw_m,
                hnsw_ef_construction=s.hnsw_ef_construction,
                hnsw_ef_search=s.hnsw_ef_search,
                ivf_nlist=s.ivf_nlist,
                ivf_nprobe=s.ivf_nprobe,
            )
            index = VectorIndex(dim, distance, params)
            t0 = time.perf_counter()
            index.build(ids, x)
            build = time.perf_counter() - t0
            row: dict[str, Any] = {"n": n, "kind": index.kind, "build_s": build}
            if index.kind == "ivf":
                row["kind"] = f"ivf (nlist {index._nlist(n)}, nprobe {index.nprobe(index._nlist(n))})"
            elif index.kind == "hnsw":
                row["kind"] = f"hnsw (M {s.hnsw_m}, efC {s.hnsw_ef_construction}, efS {s.hnsw_ef_search})"
            for qname, q in queries.items():
                found = np.empty((len(q), SEARCH_K), np.int64)
                times = []
                for i in range(len(q)):
                    t = time.perf_counter()
                    _, found[i] = index.search(q[i : i + 1], SEARCH_K)
                    times.append(time.perf_counter() - t)
                if kind == "flat":
                    exact[qname] = found[:, 0]
                row[f"{qname}_ms"] = percentiles(times)
                row[f"{qname}_recall1"] = float(np.mean(found[:, 0] == exact[qname]))
                row[f"{qname}_rescored"] = float(np.mean([exact[qname][i] in found[i] for i in range(len(q))]))
            rows.append(row)
            LOG.info("ann n=%d %s: build %.1fs", n, row["kind"], build)
            del index
    return rows


# ------------------------------------------------------------------------------------- face_recognition
def face_recognition_bench(images: list[tuple[str, bytes]], reps: int) -> dict[str, float] | None:
    """face_recognition's model on the same JPEGs: what `face_encodings(load_image_file(f))` runs with its
    defaults (HOG detection with one upsampling, 5 landmarks, ResNet, one jitter), called through dlib directly
    (`training.teacher`; the wrapper package needs a source build of dlib), one core. Seconds per image
    (`p50_s`, over `n` timings), and in how many of them a face was found; None when it is not installed."""
    from PIL import Image

    from training.teacher import DlibTeacher, model_dir

    if model_dir() is None:
        return None
    teacher = DlibTeacher()
    times = []
    found = 0
    for _ in range(reps):
        for _, data in images:
            t = time.perf_counter()
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # as load_image_file does
            found += int(teacher.describe(rgb, pick="largest", upsample=1).vector is not None)
            times.append(time.perf_counter() - t)
    st = percentiles(times)
    return {"p50_s": st["p50"] / 1000, "n": st["n"], "found": found}


def face_recognition_section(fr: dict[str, float] | None, http: dict[str, Any], pipeline_ms: dict[str, float]) -> str:
    """The peer's time per photo, and how many times it is ours: per request (the whole /verify, two photos,
    and /identify, one, one at a time) and per photo in process (decode to embedding, one thread each)."""
    if fr is None:
        return "face_recognition's model is not installed (pip install -e '.[teacher]'): no comparison."
    verify, identify = http["verify_c1"]["p50"] / 1000, http["identify_c1"]["p50"] / 1000
    return (
        "face_recognition's model (dlib HOG detector with one upsampling, 5-point landmarks, ResNet encoder; "
        f"through dlib, one core), decode + detect + encode, same JPEGs: {fr['p50_s']:.3f} s per image "
        f"(median of {int(fr['n'])}; a face found in {fr['found']} of {int(fr['n'])}). The same work for a "
        f"request: /verify's two photos {2 * fr['p50_s']:.3f} s, {2 * fr['p50_s'] / verify:.1f} times our whole "
        f"/verify (p50 {1000 * verify:.1f} ms, its two photos worked on at once, one core each); /identify's "
        f"photo {fr['p50_s']:.3f} s, {fr['p50_s'] / identify:.1f} times our /identify (p50 {1000 * identify:.1f} "
        f"ms). Per photo on one core, in process (no HTTP): {fr['p50_s'] * 1000 / pipeline_ms['p50']:.1f} times "
        f"ours ({pipeline_ms['p50']:.1f} ms)."
    )


# ----------------------------------------------------------------------------------------------- report
def report(
    args: argparse.Namespace,
    sizes: Sizes,
    artifact: Path,
    label: str | None,
    prep: Prepared,
    startup_s: float,
    http: dict[str, Any],
    ann: list[dict[str, Any]],
    ann_dim: int,
    fr: dict[str, float] | None,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    import faiss
    import onnxruntime

    from app.settings import Settings

    s = Settings(_env_file=None)
    command = shlex.join(["python", "bench/service.py", *sys.argv[1:]])
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = "# Service benchmark" + (" (quick smoke run)" if args.quick else "")
    lines = [title, "", f"Command: `{command}`", ""]
    if label:
        lines += [f"> **{label}**", ""]
    lines += [
        f"Generated {when} on {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"ONNX Runtime {onnxruntime.__version__}, FAISS {faiss.__version__}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}. Load average (1, 5, 15 min) at start "
        f"{', '.join(f'{v:.2f}' for v in load[0])}, at end {', '.join(f'{v:.2f}' for v in load[1])}: other work "
        "on the machine shows up in every number.",
        "",
        f"Model `{prep.model}` ({artifact.relative_to(REPO) if artifact.is_relative_to(REPO) else artifact.name}; "
        f"{prep.dim}-d, {prep.distance}). Server: `siamface serve` (uvicorn, one process) on 127.0.0.1, auth on, "
        f"index `{args.index}`, match `{s.match}`, SIAMFACE_EMBED_CONCURRENCY {s.embed_concurrency}, "
        f"SIAMFACE_ONNX_THREADS {s.onnx_threads}; client: httpx from another process, keep-alive connections.",
        "",
        "## HTTP",
        "",
        f"Gallery: {prep.real_faces + prep.padded:,} faces = {prep.real_faces} real (LFW: "
        f"{', '.join(prep.probes)}, enrolled through the service) + {prep.padded:,} synthetic (straight into the "
        f"store in {prep.pad_seconds:.1f} s; the server's /ready counts {http['ready']['faces']:,} faces, index "
        f"{http['ready']['index']}). Server start to `/ready` (model load + index build from the store): "
        f"{startup_s:.1f} s. In-process pipeline per LFW image (decode, detect, align, embed; no HTTP): median "
        f"{prep.pipeline_ms['p50']:.1f} ms over {int(prep.pipeline_ms['n'])} images.",
        "",
        "| request | concurrency | p50 ms | p99 ms | mean ms | requests | throughput req/s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, what in (("verify", "/verify (image + reference, 2 faces)"), ("identify", "/identify (top_k 5)")):
        for suffix, conc in (("c1", 1), ("load", sizes.concurrency)):
            st = http[f"{name}_{suffix}"]
            lines.append(f"| {what} | {conc} | {fmt_ms(st)} | {st['rps']:.1f} | {st['errors']} |")
    ok, total = http["identify_top1"]
    lines += [
        "",
        f"p99 over {sizes.requests} requests is close to the maximum. /identify top-1 on the real subjects' "
        f"unenrolled probes: {ok}/{total}" + (" (meaningless on the temporary artifact)." if label else "."),
        "",
        "## Gallery index (app.index.VectorIndex alone)",
        "",
        f"Random unit vectors, {ann_dim}-d, {prep.distance}; {sizes.ann_queries} queries per set, one at a time, "
        f"k = {SEARCH_K}. recall@1: the index's top 1 is the exact nearest; rescored: the exact nearest is among "
        f"the {SEARCH_K} fetched (what the service answers after its exact re-scoring). near: cosine "
        f"{NEAR_COSINE} to a gallery vector; random: uniform queries (worst case).",
        "",
        "| gallery | index | build s | near p50 ms | near p99 ms | near recall@1 | near rescored | random p50 ms | "
        "random recall@1 | random rescored |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ann:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['kind']} | {r['skipped']} |||||||")
            continue
        lines.append(
            f"| {r['n']:,} | {r['kind']} | {r['build_s']:.2f} | {r['near_ms']['p50']:.3f} | "
            f"{r['near_ms']['p99']:.3f} | {r['near_recall1']:.3f} | {r['near_rescored']:.3f} | "
            f"{r['random_ms']['p50']:.3f} | {r['random_recall1']:.3f} | {r['random_rescored']:.3f} |"
        )
    lines += ["", "## face_recognition", "", face_recognition_section(fr, http, prep.pipeline_ms), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", help=f"face artifact folder (default {DEFAULT_ARTIFACT.relative_to(REPO)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: a 1k gallery, 1k/10k index, few requests")
    parser.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"], help="the server's index")
    parser.add_argument("--ann-sizes", help="comma-separated gallery sizes for the index section (overrides)")
    parser.add_argument("--ann-dim", type=int, help="vector size for the index section (default: the artifact's)")
    parser.add_argument("--out", help=f"report path (default {RESULTS.relative_to(REPO)}; quick runs: {SCRATCH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    sizes = QUICK if args.quick else FULL
    if args.ann_sizes:
        sizes = dataclasses.replace(sizes, ann_sizes=tuple(int(v) for v in args.ann_sizes.split(",")))
    load_start = os.getloadavg()
    SCRATCH.mkdir(parents=True, exist_ok=True)

    temporary = args.artifact is None and not (DEFAULT_ARTIFACT / "card.json").is_file()
    out = Path(args.out) if args.out else (SCRATCH / "service-quick.md" if args.quick or temporary else RESULTS)
    if (args.quick or temporary) and out.resolve() == RESULTS.resolve():
        sys.exit(f"bench/service.py: a quick run or a temporary artifact never writes {RESULTS}")
    with tempfile.TemporaryDirectory(prefix="siamface-bench-", dir=temp_root()) as tmp:
        work = Path(tmp)
        artifact, label = resolve_artifact(args.artifact, work)
        images = read_lfw(LFW_SUBJECTS[: sizes.subjects], sizes.per_subject + 1)
        key = secrets.token_urlsafe(32)
        data_dir = work / "data"
        LOG.info("preparing the gallery: %d subjects, %d faces in all", sizes.subjects, sizes.gallery)
        prep = prepare_gallery(artifact, data_dir, images, sizes, key)
        LOG.info("starting the server (%d faces)", prep.real_faces + prep.padded)
        with live_server(artifact, data_dir, key, args.index, SCRATCH / "server.log") as (base, startup_s):
            LOG.info("server ready in %.1f s at %s; measuring", startup_s, base)
            http = http_bench(base, key, prep, sizes)
    LOG.info("index section: %s", ", ".join(f"{n:,}" for n in sizes.ann_sizes))
    ann_dim = args.ann_dim or prep.dim
    ann = ann_bench(ann_dim, prep.distance, sizes)
    fr_images = [prep.verify_pair[0], prep.verify_pair[1], *prep.probes.values()]
    fr = face_recognition_bench(fr_images, sizes.face_recognition_reps)
    load = (load_start, os.getloadavg())
    text = report(args, sizes, artifact, label, prep, startup_s, http, ann, ann_dim, fr, load)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    LOG.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
