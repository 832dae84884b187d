"""Regenerate bench/results/gallery_match.md: how should a subject with several enrolled faces meet a probe?

    python bench/gallery_match.py                 # the shipped model; ~3 min on 2 cores
    python bench/gallery_match.py --draws 2 --out /tmp/m.md   # a quicker look

The service's setting `SIAMFACE_MATCH` compares a probe with a subject's closest enrolled face (`faces`), with
the subject's mean embedding (`mean`), or with the closer of the two (`both`). This script measures the three
through the service's own parts: every photo goes once through `app.pipeline.FacePipeline` (decode, detect,
align, embed: what /enroll and /identify do), the faces are enrolled in an `app.gallery.Gallery` over a real
SQLite store (a temp dir) with the exact FAISS index, and each probe is answered by `Gallery.search` (what
/identify ranks) and `Gallery.compare` (what /verify with a `subject_id` decides on).

People the shipped model never trained on (its card: LFW View 1 training people, ORL minus 10 subjects, Yale B):
  - ORL: the 10 held-out subjects, 10 photos each; k photos of each enrolled, the other 10 - k probed.
  - LFW: the View 1 test people (peopleDevTest.txt). Those with at least 6 usable photos are the subjects: k of
    their photos enrolled, up to 10 of the rest probed. Then again with every other View 1 test person enrolled
    too, from one photo, as a distractor (never probed), so that a probe is ranked against ~1,700 people: the
    realistic gallery, where subjects have different numbers of faces. Only the first compares the modes on
    equal terms: with one face, a subject's closest face and its mean are the same vector, so `both` (the better
    of two values) and `faces` (the best of k) favour the subjects with more faces over the distractors.
For each k, `--draws` seeded draws of which photos are enrolled; figures are over all probes of all draws
(± the standard deviation over draws). Top-1: the right subject ranked first. EER: /verify's decision, every
probe against its own subject (genuine) and against `IMPOSTORS` other multi-photo subjects drawn at random
(impostor; all of them on ORL).
Photos in which the pipeline finds no face, or several, are left out (counted in the report).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.gallery import Gallery  # noqa: E402
from app.index import IndexParams  # noqa: E402
from app.pipeline import FacePipeline  # noqa: E402
from app.store import NewFace, SQLiteStore  # noqa: E402
from model.artifact import load as load_artifact  # noqa: E402
from model.faces import FaceError  # noqa: E402
from model.preprocess import ImageDecodeError  # noqa: E402
from training import verification  # noqa: E402
from training.data.face_cache import orl_heldout  # noqa: E402
from training.data.faces import iter_lfw_images, iter_orl_images, load_lfw_protocol  # noqa: E402

LOG = logging.getLogger("bench.gallery_match")
DATA = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results" / "gallery_match.md"
MODES = ("faces", "mean", "both")
KS = (1, 2, 3, 5)
LFW_MIN_PHOTOS = 6  # subjects need max(KS) enrolled + at least one probe
MAX_PROBES = 10  # per subject and draw, so that LFW's most photographed people do not weigh for the rest
IMPOSTORS = 20  # impostor subjects per probe for the EER (Gallery.compare is one call per pair)
ORL_HOLDOUT, ORL_SEED = 10, 0  # the shipped card's held-out ORL subjects: s1, s2, s3, s7, s10, s11, s17, s21, s27, s33


@dataclasses.dataclass
class PersonPhotos:
    """One person's usable photos, embedded: `vectors` N×D float32 (N ≥ 1)."""

    person: str
    vectors: np.ndarray


@dataclasses.dataclass
class Dataset:
    name: str
    subjects: list[PersonPhotos]  # enrolled k at a time and probed
    distractors: list[PersonPhotos]  # enrolled from one photo, never probed
    photos: int
    unusable: int
    verify: bool = True  # measure /verify's EER too (it does not depend on the distractors)


def embed_all(pipeline: FacePipeline, photos: list[tuple[str, bytes]], label: str) -> tuple[dict[str, list], int]:
    """person -> list of embeddings (D) of the photos with one usable face; and how many were unusable."""
    out: dict[str, list[np.ndarray]] = {}
    unusable = 0
    for person, data in tqdm(photos, desc=f"embed {label}", unit="photo"):
        try:
            vector = pipeline.one(data).embedding
        except (FaceError, ImageDecodeError):
            unusable += 1
            continue
        out.setdefault(person, []).append(vector)
    return out, unusable


def orl_dataset(pipeline: FacePipeline) -> Dataset:
    held = {s.split("/", 1)[1] for s in orl_heldout(ORL_HOLDOUT, ORL_SEED)}
    photos = [(img.identity, img.data) for img in iter_orl_images(DATA) if img.identity in held]
    by_person, unusable = embed_all(pipeline, photos, "ORL")
    subjects = [PersonPhotos(p, np.stack(v)) for p, v in sorted(by_person.items())]
    return Dataset(f"ORL, {len(held)} held-out subjects ({', '.join(sorted(held, key=lambda s: int(s[1:])))})",
                   subjects, [], len(photos), unusable)  # fmt: skip


def lfw_dataset(pipeline: FacePipeline) -> Dataset:
    people = load_lfw_protocol(DATA).dev_test_people
    photos = [(img.identity, img.data) for img in iter_lfw_images(DATA, names=people)]
    by_person, unusable = embed_all(pipeline, photos, "LFW")
    subjects, distractors = [], []
    for person, vectors in sorted(by_person.items()):
        (subjects if len(vectors) >= LFW_MIN_PHOTOS else distractors).append(PersonPhotos(person, np.stack(vectors)))
    return Dataset(
        f"LFW View 1 test people: the {len(subjects)} with ≥ {LFW_MIN_PHOTOS} usable photos",
        subjects,
        distractors,
        len(photos),
        unusable,
    )


@dataclasses.dataclass
class Score:
    top1: list[float] = dataclasses.field(default_factory=list)  # per draw
    eer: list[float] = dataclasses.field(default_factory=list)
    probes: int = 0


Draw = dict[str, tuple[float, float, int]]  # mode -> (top-1 accuracy, EER or NaN, probes)


def run_draw(ds: Dataset, k: int, draw: int, pipeline: FacePipeline, scratch: Path) -> Draw:
    """One enrolment draw: mode -> (top-1 accuracy, EER or NaN when `ds.verify` is off, probes)."""
    rng = np.random.default_rng([k, draw])  # the same draw of each subject's photos with or without distractors
    store = SQLiteStore(scratch / f"{len(list(scratch.iterdir()))}.sqlite3")
    probes: list[tuple[str, np.ndarray]] = []
    try:
        for s in ds.subjects:
            order = rng.permutation(len(s.vectors))
            enrolled, rest = order[:k], order[k:][:MAX_PROBES]
            store.add_faces(s.person, [NewFace(s.vectors[i], pipeline.model_id) for i in enrolled])
            probes += [(s.person, s.vectors[i]) for i in rest]
        for d in ds.distractors:
            store.add_faces(d.person, [NewFace(d.vectors[int(rng.integers(len(d.vectors)))], pipeline.model_id)])
        out = {}
        names = [s.person for s in ds.subjects]
        for mode in MODES:
            gallery = Gallery(store, pipeline.dim, pipeline.distance.name, mode, IndexParams("flat"), pipeline.model_id)
            gallery.load()
            hits, labels, values = 0, [], []
            pick = np.random.default_rng([k, draw, 1])  # the same impostors in every mode
            for person, probe in probes:
                hits += gallery.search(probe, 1)[0].subject_id == person
                if not ds.verify:
                    continue
                others = [n for n in names if n != person]
                impostors = pick.choice(others, size=min(IMPOSTORS, len(others)), replace=False).tolist()
                for other in [person, *impostors]:
                    labels.append(other == person)
                    values.append(gallery.compare(probe, other).value)
            eer = float("nan")
            if ds.verify:
                higher = pipeline.distance.higher_is_closer
                curve = verification.roc_curve(np.array(labels), np.array(values), higher_is_closer=higher)
                eer = verification.eer(curve).eer
            out[mode] = (hits / len(probes), eer, len(probes))
        return out
    finally:
        store.close()


def measure(ds: Dataset, draws: int, pipeline: FacePipeline, scratch: Path) -> dict[int, dict[str, Score]]:
    results: dict[int, dict[str, Score]] = {}
    for k in tqdm(KS, desc=ds.name[:3], unit="k"):
        results[k] = {m: Score() for m in MODES}
        for draw in range(draws):
            for mode, (top1, eer, n) in run_draw(ds, k, draw, pipeline, scratch).items():
                sc = results[k][mode]
                sc.top1.append(top1)
                sc.eer.append(eer)
                sc.probes += n
    return results


def cell(values: list[float]) -> str:
    return "—" if np.isnan(values).any() else f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != "—" else text


def render(datasets: list[tuple[Dataset, dict[int, dict[str, Score]]]], args: argparse.Namespace, meta: str) -> str:
    lines = [
        "# Several faces per subject: closest face, mean embedding, or both",
        "",
        f"Command: `{args.command}`",
        "",
        meta,
        "",
        "Each photo went through the service's pipeline once; each enrolment draw is a fresh SQLite gallery searched "
        "by `app.gallery.Gallery` with each `SIAMFACE_MATCH` mode (exact index). Top-1: the probe's subject ranked "
        "first by `search` (/identify). EER: `compare` (/verify with a `subject_id`), each probe against its own "
        f"subject and {IMPOSTORS} others drawn at random (all others on ORL). Figures: % over all probes, ± the "
        f"standard deviation over {args.draws} seeded draws of the enrolled photos. k = 1: the three modes are the "
        "same comparison.",
        "",
    ]
    for ds, res in datasets:
        lines += [
            f"## {ds.name}",
            "",
            f"{ds.photos} photos, {ds.unusable} without one usable face (left out). Best of each row in bold.",
            "",
            "| k enrolled | probes | top-1 faces | top-1 mean | top-1 both | EER faces | EER mean | EER both |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for k, scores in res.items():
            top = [float(np.mean(scores[m].top1)) for m in MODES]
            eer = [float(np.mean(scores[m].eer)) for m in MODES]
            cells = [bold(cell(scores[m].top1), k > 1 and top[i] == max(top)) for i, m in enumerate(MODES)]
            cells += [bold(cell(scores[m].eer), k > 1 and eer[i] == min(eer)) for i, m in enumerate(MODES)]
            lines.append(f"| {k} | {scores['faces'].probes} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=REPO / "model" / "artifacts" / "faces")
    parser.add_argument("--draws", type=int, default=5, help="seeded enrolment draws per k")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.command = f"python bench/gallery_match.py {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(logging.WARNING)  # one "store opened" line per draw otherwise
    artifact = load_artifact(args.artifact, threads=1)
    pipeline = FacePipeline(artifact, max_pixels=40_000_000)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        results = []
        orl, lfw = orl_dataset(pipeline), lfw_dataset(pipeline)
        with_distractors = dataclasses.replace(
            lfw,
            name=f"{lfw.name}, + {len(lfw.distractors)} enrolled from one photo as distractors",
            verify=False,
        )
        for ds in (orl, dataclasses.replace(lfw, distractors=[]), with_distractors):
            results.append((ds, measure(ds, args.draws, pipeline, Path(tmp))))
    shown = args.artifact.resolve().relative_to(REPO) if args.artifact.resolve().is_relative_to(REPO) else args.artifact
    meta = (
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {(time.perf_counter() - t0) / 60:.1f} min on "
        f"{platform.machine()} / Python {platform.python_version()}; model `{pipeline.model_id}` ({shown})."
    )
    text = render(results, args, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
