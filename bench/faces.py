"""Regenerate bench/results/faces.md: the face embedder on LFW (View 1, View 2 folds, end to end), ORL's
held-out subjects, and its speed on this machine.

    python bench/faces.py                                  # View 1: trains the run if missing, then reports
    python bench/faces.py --protocols view1,fold1,fold2    # any of view1, fold1..fold10
    python bench/faces.py --no-train                       # report the runs already in runs/
    python bench/faces.py --experiment experiments/faces_distill.toml      # the distilled student's runs
    python bench/faces.py --no-train --artifacts model/artifacts/faces-scratch,model/artifacts/faces --peer
    python bench/faces.py --experiment experiments/faces_distill.toml --protocols fold1,fold2 --steps 1500
                                                           # a shorter schedule: runs named <name>-<p>-1500steps
    python bench/faces.py --protocols "" --artifacts model/artifacts/faces-scratch,model/artifacts/faces --peer \
        --out bench/results/faces_side_by_side.md          # the shipped models beside the teacher, nothing trained
    python bench/faces.py --experiment experiments/faces_student96_grey.toml --protocols fold7,fold8 --train-only
                                                           # train the missing runs, measure nothing (on a GPU
                                                           # machine: tools/gpu_lease.sh); report them later

Each protocol p is the run `runs/<name>-<p>` of the experiment (default `experiments/faces.toml`, name
"faces") with `face_protocol = p`: it never
saw the LFW people it is scored on (View 1: peopleDevTest; View 2 fold k: fold k's people), and its decision
threshold is chosen on the training people's pairs, as LFW's protocol says. Rows are measured from the
run's best checkpoint with mirror averaging (the exported graph does the same; tests/test_artifact.py
proves ONNX = torch). Latency is measured on the ONNX graph through ONNX Runtime, batch 1, 2 threads.
`--artifacts` adds a side-by-side table of exported artifacts (their cards' metrics, measured on the ONNX
graph at export; their speed measured here) and, with `--peer`, the teacher.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from training import verification  # noqa: E402
from training.config import as_current, resolve  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("bench.faces")
EXPERIMENT = REPO / "experiments" / "faces.toml"
PROTOCOLS = ["view1"] + [f"fold{k}" for k in range(1, 11)]
DEFAULT_OUT = REPO / "bench" / "results" / "faces.md"
RECORDS = REPO / "bench" / "results" / "runs"  # measured_run's records: a report's runs, kept past runs/
CURVE_POINTS = 700  # per ROC in face_eval.json and the records: all of a 600-pair split, a thinned 200,000-pair one


def curves_to_json(curves: dict[str, verification.RocCurve]) -> dict[str, Any]:
    """Label -> ROC, JSON-ready, as face_eval.json and the records hold them."""
    return {k: c.to_dict() for k, c in curves.items()}


def curves_from_json(saved: dict[str, Any]) -> dict[str, verification.RocCurve]:
    """The inverse of `curves_to_json`."""
    return {k: verification.RocCurve.from_dict(c) for k, c in saved.items()}


def evaluate_run(run_dir: Path, data_root: Path) -> tuple[dict[str, Any], dict[str, verification.RocCurve]]:
    """Face metrics of `run_dir/best.pt` (mirror averaging on) and the ROC of each of its reports (thinned to
    about CURVE_POINTS, for plots), cached in face_eval.json beside it while the checkpoint is unchanged."""
    import torch

    from model.preprocess import PreprocessSpec
    from training.data.face_cache import load_face_crops, read_face_block
    from training.data.faces import load_lfw_protocol
    from training.export import load_checkpoint_embedder
    from training.face_eval import EVAL_SETS, face_metrics
    from training.trainer import torch_embed_fn

    best = run_dir / "best.pt"
    cache = run_dir / "face_eval.json"
    key = {"checkpoint_mtime_ns": best.stat().st_mtime_ns, "tta_flip": True, "curves": CURVE_POINTS}
    net, ckpt = load_checkpoint_embedder(best, tta_flip=True)
    cfg = ckpt["train_config"]
    if cache.is_file() and (cached := json.loads(cache.read_text())).get("key") == key:
        return cached["metrics"], curves_from_json(cached["curves"])
    crops = load_face_crops(data_root, REPO / ".cache", EVAL_SETS, read_face_block(run_dir), channels=cfg["channels"])
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    embed = torch_embed_fn(net.eval(), torch.device("cpu"))
    metrics, calibration, reports = face_metrics(
        embed, crops, load_lfw_protocol(data_root), cfg, spec, ckpt["distance"]
    )
    metrics["calibration"] = calibration.to_dict() if calibration else None
    curves = {k: r.curve.thinned(CURVE_POINTS) for k, r in reports.items() if r.curve is not None}
    saved = {"key": key, "metrics": metrics, "curves": curves_to_json(curves)}
    cache.write_text(json.dumps(saved, indent=2))
    return metrics, curves


def latency(artifact_dir: Path, data_root: Path, repeats: int = 300) -> dict[str, float]:
    """Median ms to embed one aligned face with the artifact's ONNX graph (ONNX Runtime, batch 1, 2 threads),
    and to go from JPEG bytes to an embedding (decode + detection + alignment + embedding, with the card's
    own crop recipe) on LFW photos: what the service does per face."""
    from PIL import Image

    from model.artifact import load as load_artifact
    from model.faces import align_face, as_rgb_array, find_face
    from model.preprocess import decode, prepare
    from training.data.face_cache import recipe_parts
    from training.data.faces import iter_lfw_images

    art = load_artifact(artifact_dir, threads=2)
    align, detector, min_size = recipe_parts(art.card.face)
    c, (h, w) = art.spec.channels, art.spec.size
    x = np.random.default_rng(0).random((1, c, h, w), dtype=np.float32)
    for _ in range(30):
        art.embed(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        art.embed(x)
        times.append(1000 * (time.perf_counter() - t))
    photos = [img.data for _, img in zip(range(100), iter_lfw_images(data_root), strict=False)]
    e2e = []
    for data in photos:
        t = time.perf_counter()
        rgb = as_rgb_array(decode(data))
        try:
            face = find_face(rgb, detector, min_size=min_size, allow_multiple="largest")
        except ValueError:
            continue
        crop = align_face(rgb, face, align)
        art.embed(prepare(Image.fromarray(crop), art.spec)[None])
        e2e.append(1000 * (time.perf_counter() - t))
    return {
        "embed_ms_median": statistics.median(times),
        "embed_ms_p90": float(np.percentile(times, 90)),
        "photo_to_embedding_ms_median": statistics.median(e2e),
        "photos_timed": len(e2e),
    }


def run_latency(run_dir: Path, data_root: Path) -> dict[str, float]:
    """`latency` of a run's best checkpoint, exported (mirror averaging on) to a temporary artifact."""
    from training.data.face_cache import read_face_block
    from training.export import export_onnx, load_checkpoint_embedder

    net, ckpt = load_checkpoint_embedder(run_dir / "best.pt", tta_flip=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_onnx(net.eval(), folder / "model.onnx")
        card = {
            "name": "latency",
            "version": "0",
            "created": "",
            "embedding_dim": net.embedding_dim,
            "distance": ckpt["distance"],
            "preprocess": ckpt["preprocess"],
            "metrics": {},
            "data": {},
            "command": "",
            "face": read_face_block(run_dir),
        }
        (folder / "card.json").write_text(json.dumps(card))
        return latency(folder, data_root)


def side_by_side(artifacts: list[Path], data_root: Path, peer: bool) -> list[str]:
    """The shipped artifacts (metrics from their cards, measured on their ONNX graphs at export; speed measured
    here) and, with `peer`, the teacher (face_recognition / dlib's ResNet), on LFW View 1's test people."""
    from model.artifact import load as load_artifact

    lines = [
        "",
        "## Side by side: from scratch, distilled, teacher (LFW View 1 test people, never trained on)",
        "",
        "Accuracy: View 1's 1,000 test pairs, threshold chosen on the training people's pairs (the teacher: "
        "face_recognition's documented tolerance 0.6). TAR@FAR=1e-3: all same-person pairs and 200,000 seeded "
        "different-person pairs among the 1,711 test people (the same pairs for every row). Speed: one photo "
        "(JPEG bytes to embedding) on this CPU; ours with ONNX Runtime, 2 threads, the detector its card names; the "
        "teacher with dlib (HOG detection with one upsampling, 5 landmarks, ResNet), one core, its median over the "
        "photos it encoded for the accuracy columns (`bench/faces_peer.py`, cached in .cache/peer/, timed whenever "
        "they were encoded, possibly beside other jobs on the machine). ORL held-out EER: every pair of the 10 "
        "held-out subjects' 100 photos; for the teacher, its cached descriptors of those photos (its own "
        "detection and alignment, cosine). LFW View 2: the card's `lfw_view2_recipe` row, the mean ± std of the "
        "model's recipe trained once per fold (the folds recorded so far; not the shipped weights, which saw "
        "View 1's training people).",
        "",
        "| model | outside data | acc (aligned crops) | acc (end to end) | AUC (end to end) | TAR@FAR=1e-3 | "
        "ORL held-out EER | LFW View 2 of the recipe (folds) | ms per face (embedding) | ms per photo |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in artifacts:
        card = load_artifact(folder).card
        m = card.metrics
        lat = latency(folder, data_root)
        teacher = card.training.get("teacher")
        outside = f"yes: distilled from {teacher['name']} ({teacher['licence'].split(' (')[0]})" if teacher else "no"
        view2 = m.get("lfw_view2_recipe")
        folds = "—" if view2 is None else f"{mean_sd(list(view2['folds'].values()))} ({len(view2['folds'])} of 10)"
        lines.append(
            f"| `{folder.relative_to(REPO)}` {card.version} | {outside} | {pct(m['lfw_view1']['accuracy'])} | "
            f"{pct(m['lfw_view1_end_to_end']['accuracy'])} | {m['lfw_view1_end_to_end']['auc']:.4f} | "
            f"{pct(m['heldout_people']['tar_at_far'].get('1e-3'))} | {pct(m['orl_heldout']['eer'])} | {folds} | "
            f"{lat['embed_ms_median']:.2f} | "
            f"{lat['photo_to_embedding_ms_median']:.1f} |"
        )
    if peer:
        from bench.faces_peer import peer_report, teacher_heldout_report, teacher_orl_report
        from training.data.faces import load_lfw_protocol

        split = load_lfw_protocol(data_root).view1_split()
        rep, held = peer_report(split, data_root), teacher_heldout_report(split, data_root)
        orl = teacher_orl_report(data_root)
        lines.append(
            f"| teacher: face_recognition (dlib ResNet) | yes: ~3 M faces of 7,485 people | — | "
            f"{pct(rep['accuracy'])} | {rep['auc']:.4f} | {pct(held['tar_at_far'].get('1e-3'))} | "
            f"{pct(orl['eer'])} | — | — | "
            f"{1000 * rep['seconds_per_photo_median']:.0f} |"
        )
    return lines


def finished_run(cfg: Any, no_train: bool, command: str) -> tuple[Path, dict[str, Any]] | None:
    """(run folder, its metrics.json) of the run `cfg` describes, training it first (resumable, recorded as
    `command`) when it has not finished; None, logged, when it has not and `no_train` forbids training."""
    run_dir = REPO / cfg.out_dir / cfg.name
    if not (run_dir / "metrics.json").is_file():
        if no_train:
            LOG.info("skipping %s: no finished run at %s", cfg.name, run_dir)
            return None
        from training.trainer import train

        train(cfg, command=command)
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


@dataclass
class Measured:
    """A finished run's figures: `run` is its metrics.json without the learning curve, `metrics` its face
    metrics and `curves` the ROC of each of its reports, thinned, for plots (evaluate_run), `extras` what the
    report asked for besides; `run_dir` None when read from its record."""

    run: dict[str, Any]
    metrics: dict[str, Any]
    extras: dict[str, Any]
    curves: dict[str, verification.RocCurve] = field(default_factory=dict)
    run_dir: Path | None = None


def recorded_config(cfg: Any) -> dict[str, Any]:
    """`cfg` as a record holds it (JSON: tuples become lists), so that a record's config compares equal."""
    return as_current(cfg.to_dict())


def read_record(cfg: Any, records: Path = RECORDS) -> dict[str, Any] | None:
    """The record `records/<name>.json` of the run `cfg` describes, or None when there is none or it was
    recorded for another config under the same name (logged)."""
    record = records / f"{cfg.name}.json"
    if not record.is_file():
        return None
    saved = json.loads(record.read_text())
    if as_current(saved["config"]) != recorded_config(cfg):  # a record made before a field was added counts
        LOG.warning("ignoring %s: recorded for another config than %s's", record, cfg.name)
        return None
    return saved


def measured_run(
    cfg: Any,
    no_train: bool,
    command: str,
    data_root: Path,
    extras: dict[str, Callable[[Path], Any]] | None = None,
    records: Path = RECORDS,
) -> Measured | None:
    """The figures of the run `cfg` describes, and where they come from.

    runs/ is git-ignored and a session's machine is not kept, while a report may need more training than one
    session holds (ten View 2 folds): so every run measured here leaves a record, `records/<name>.json` (its
    config, metrics.json without the learning curve, face metrics, ROC curves and `extras`: name -> function
    of the run folder),
    committed beside the reports. A finished run in runs/ is always measured afresh (and its record rewritten);
    without one, a record of the very same config is read; without either, the run is trained (finished_run),
    unless `no_train`, which gives None. A record of another config under the same name is ignored, logged.
    """
    record = records / f"{cfg.name}.json"
    if not (REPO / cfg.out_dir / cfg.name / "metrics.json").is_file():
        saved = read_record(cfg, records)
        if saved is not None:
            LOG.info("%s: no run in %s; reporting its record %s", cfg.name, cfg.out_dir, record)
            curves = curves_from_json(saved["curves"])
            return Measured(saved["run"], saved["metrics"], saved["extras"], curves)
    found = finished_run(cfg, no_train, command)
    if found is None:
        return None
    run_dir, run = found
    metrics, curves = evaluate_run(run_dir, data_root)
    summary = {k: v for k, v in run.items() if k != "history"}
    measured = Measured(summary, metrics, {k: f(run_dir) for k, f in (extras or {}).items()}, curves, run_dir)
    records.mkdir(parents=True, exist_ok=True)
    saved = {
        "name": cfg.name,
        "config": recorded_config(cfg),
        "run": summary,
        "metrics": metrics,
        "extras": measured.extras,
        "curves": curves_to_json(measured.curves),
    }
    record.write_text(json.dumps(saved, separators=(",", ":")) + "\n")
    return measured


def write_report(out: Path, lines: list[str]) -> None:
    """Write a report's markdown lines to `out` and print them."""
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def setup_logging() -> None:
    """INFO logs with timestamps for a face bench script, without the ONNX exporter's and matplotlib's chatter."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "matplotlib", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def comma_list(ap: argparse.ArgumentParser, value: str, known: list[str], what: str) -> list[str]:
    """The items of the comma list `value`, in its order; `ap.error` (exit 2) names any not in `known`."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(items) - set(known))
    if unknown:
        ap.error(f"unknown {what} {unknown}; expected some of {known}")
    return items


def detector_name(run_dir: Path) -> str:
    """The face detector a run's crops came from (its face block): "BlazeFace" or "Haar"."""
    from training.data.face_cache import read_face_block

    return {"blazeface": "BlazeFace", "haar": "Haar"}.get(read_face_block(run_dir)["detector"]["name"], "?")


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def mean_sd(xs: list[float]) -> str:
    """Mean ± sample standard deviation of fractions, in percent (one value: itself, there is no spread)."""
    if len(xs) == 1:
        return pct(xs[0])
    return f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.stdev(xs):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocols", default="view1", help=f"comma list of {PROTOCOLS[0]}, fold1..fold10")
    ap.add_argument("--experiment", type=Path, default=EXPERIMENT)
    ap.add_argument("--no-train", action="store_true", help="only report runs that exist")
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="train the runs that have neither a finished run nor a record, then stop: no measuring, no report",
    )
    ap.add_argument(
        "--steps", type=int, help="train this many steps instead of the experiment's (runs named <name>-<p>-<N>steps)"
    )
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--peer", action="store_true", help="add face_recognition's row on the same pairs (the teacher extra)"
    )
    ap.add_argument(
        "--no-speed",
        action="store_true",
        help="leave out the speed line (bench/batching.py and bench/service.py time the shipped model)",
    )
    ap.add_argument(
        "--artifacts",
        default="",
        help="comma list of exported face artifacts for the side-by-side table (with --peer: and the teacher)",
    )
    args = ap.parse_args()
    if args.train_only and (args.no_train or args.artifacts or args.peer):
        ap.error("--train-only trains and reports nothing: it takes no --no-train, --artifacts or --peer")
    setup_logging()
    protocols = comma_list(ap, args.protocols, list(PROTOCOLS), "protocols")

    rows, curves, folds, all_metrics = [], {}, [], {}
    peer_folds: list[float] = []  # the teacher's end-to-end accuracy per View 2 fold (--peer)
    base = resolve(args.experiment)
    shown = Path(args.experiment).resolve().relative_to(REPO)  # the experiment as the command line names it
    experiment = base.name  # runs are "<experiment name>-<protocol>[-<N>steps]"
    schedule = {} if args.steps is None else {"steps": args.steps}
    suffix = "" if args.steps is None else f"-{args.steps}steps"
    for p in protocols:
        cfg = resolve(args.experiment, {"face_protocol": p, "name": f"{experiment}-{p}{suffix}", **schedule})
        command = f"python bench/faces.py --experiment {shown} --protocols {p}" + (
            "" if args.steps is None else f" --steps {args.steps}"
        )
        if args.train_only:  # e.g. on a GPU machine, the runs brought back and measured where the caches are
            if read_record(cfg) is None:
                finished_run(cfg, False, command)
            continue
        measured = measured_run(cfg, args.no_train, command, args.data_root)
        if measured is None:
            continue
        run, metrics, run_dir = measured.run, measured.metrics, measured.run_dir
        all_metrics[p] = metrics
        split = "view1" if p == "view1" else f"view2-fold{int(p[4:]):02d}"
        if p == "view1":
            curves.update({f"{p}: {k}": v for k, v in measured.curves.items()})
        elif f"lfw_{split}" in measured.curves:  # ten folds × four reports would be forty lines: one a fold
            curves[f"{p}: LFW pairs, aligned"] = measured.curves[f"lfw_{split}"]
        aligned, e2e = metrics[f"lfw_{split}"], metrics[f"lfw_{split}_end_to_end"]
        orl = metrics.get("orl_heldout", {})
        rows.append((p, aligned, e2e, orl, run, run_dir))
        if p != "view1":
            folds.append((aligned, e2e))
    if args.train_only:
        return 0

    lines = [
        "# Face embedder: LFW, ORL, speed",
        "",
        f"Generated by `python bench/faces.py --experiment {shown} --protocols "
        + (",".join(protocols) or '""')
        + ("" if args.steps is None else f" --steps {args.steps}")
        + (" --no-train" if args.no_train else "")
        + (f" --artifacts {args.artifacts}" if args.artifacts else "")
        + (" --peer" if args.peer else "")
        + (" --no-speed" if args.no_speed else "")
        + ("" if args.out.resolve() == DEFAULT_OUT else f" --out {args.out}")  # as typed: rerunnable
        + f"` on {cpu_name()} ({platform.machine()}), Python {platform.python_version()}.",
    ]
    runs_table = [
        "",
        "Every LFW row is a model that never saw the people it is scored on ("
        + (
            "with outside data: a public-domain teacher, dlib's ResNet, whose embeddings of the training "
            + (
                "faces, of the very augmented views the student saw (distill_views = consistent), "
                if base.distill_views == "consistent"
                else "photos "
            )
            + "are the targets; by its README, trained on no LFW identity"
            if base.teacher
            else "no outside data"
        )
        + "); the threshold is chosen on the training people's pairs. *Aligned* scores the cached aligned "
        "crops; *end to end* "
        "scores the raw 250×250 photos through detection + alignment (largest face; a photo without a "
        "detected face makes its pair 'different'). ORL: 10 held-out subjects, every pair among their 100 "
        "images; one-shot identification over 20 seeded rounds. TAR@FAR needs n_impostor·FAR ≥ 1 "
        "(View 1's 500 impostor pairs support 1e-2 only).",
        "",
        "| protocol | LFW acc (aligned) | AUC | EER | TAR@FAR=1e-2 | LFW acc (end to end) | ORL EER | "
        "ORL 1-shot id | training | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if rows:  # `--protocols ""` with --artifacts: the side-by-side table alone
        lines += runs_table
    for p, aligned, e2e, orl, run, _ in rows:
        lines.append(
            f"| {p} | {pct(aligned['accuracy'])} | {aligned['auc']:.4f} | {pct(aligned['eer'])} | "
            f"{pct(aligned['tar_at_far'].get('1e-2'))} | {pct(e2e['accuracy'])} | {pct(orl.get('eer'))} | "
            f"{pct(orl.get('one_shot_identification'))} | {run.get('steps')} steps, "
            f"{run.get('train_time_s', 0) / 60:.0f} min | {run.get('hardware', '')} |"
        )
    if args.peer:
        from bench.faces_peer import TOLERANCE, model_dir, peer_report
        from training.data.faces import load_lfw_protocol

        if model_dir() is None:
            ap.error("--peer needs dlib and face_recognition_models: pip install -e '.[teacher]'")
        protocol = load_lfw_protocol(args.data_root)
        for p, *_ in rows:
            split = protocol.view1_split() if p == "view1" else protocol.view2_split(int(p[4:]) - 1)
            peer = peer_report(split, args.data_root)
            if p != "view1":
                peer_folds.append(peer["accuracy"])
            lines.append(
                f"| {p}: face_recognition (dlib ResNet, outside data: ~3 M faces), end to end, tolerance "
                f"{TOLERANCE} | — | {peer['auc']:.4f} | {pct(peer['eer'])} | {pct(peer['tar_at_far'].get('1e-2'))} | "
                f"{pct(peer['accuracy'])} | — | — | {peer['seconds_per_photo_median']:.2f} s per photo "
                f"({peer['no_face']} of {peer['photos']} photos without a face) | this CPU, one core per photo |"
            )
    if folds:
        acc = [a["accuracy"] for a, _ in folds]
        e2e_acc = [e["accuracy"] for _, e in folds]
        lines += [
            "",
            f"**LFW View 2, {len(folds)} of 10 folds**: aligned {mean_sd(acc)}, end to end {mean_sd(e2e_acc)} "
            "(mean ± std over folds)"
            + (f"; face_recognition on the same pairs, end to end: {mean_sd(peer_folds)}." if peer_folds else ".")
            + ("" if len(folds) == 10 else " The full protocol needs all ten folds; this is a partial result."),
        ]
    for p, *_ in rows:
        extra = all_metrics[p].get("heldout_people")
        if extra:
            lines += [
                "",
                f"{p}: all pairs among the held-out LFW people ({extra['n_genuine']} same-person, "
                f"{extra['n_impostor']} different-person pairs): AUC {extra['auc']:.4f}, EER {pct(extra['eer'])}, "
                + ", ".join(f"TAR@FAR={k} {pct(v)}" for k, v in extra["tar_at_far"].items()),
            ]
    timed = next((folder for *_, folder in rows if folder is not None), None)  # a run here, not a record
    if timed is not None and not args.no_speed:
        lat = run_latency(timed, args.data_root)
        lines += [
            "",
            f"**Speed** ({timed.name}, ONNX Runtime, batch 1, 2 threads, mirror averaging in the graph): "
            f"{lat['embed_ms_median']:.2f} ms median ({lat['embed_ms_p90']:.2f} ms p90) per aligned face; "
            f"{lat['photo_to_embedding_ms_median']:.1f} ms median from JPEG bytes to embedding "
            f"(decode + {detector_name(timed)} detection + alignment + embedding, {lat['photos_timed']} LFW "
            "photos).",
        ]
    if args.artifacts:
        lines += side_by_side([Path(a).resolve() for a in args.artifacts.split(",") if a], args.data_root, args.peer)
    if curves:
        plot = args.out.with_name(f"{args.out.stem}_roc.png")  # faces.md: faces_roc.png
        verification.plot_roc_det(curves, plot, title="Face embedder: ROC and DET")
        lines += ["", f"![ROC and DET]({plot.name})"]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
