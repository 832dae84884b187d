"""The student-input ablation of bench/results/faces_student.md: what the distilled face student gains from
colour and from a larger input, and what each costs per face.

    pip install -e '.[teacher]'                          # the teacher (dlib's ResNet; training only)
    python bench/faces_student.py --steps 6000           # trains the missing runs (resumable), then reports
    python bench/faces_student.py --steps 6000 --no-train --students rgb64,rgb80   # report finished runs only

Every row is `experiments/faces_distill.toml` with the winning mix of bench/results/faces_distill.md
(regression + relational), BlazeFace's crops (what the service detects with), and one input: grey or RGB,
64 to 96 pixels a side, all from the same 112×112 aligned crop (the net, its widths and the augmentation
unchanged; a larger input only makes the maps larger). Each is trained `--steps` steps on LFW View 1's training
people only (plus ORL minus its held-out subjects, and Yale B) and scored on people it never saw, mirror
averaging on, as the shipped artifact is. "Fit": the mean cosine between the student's embedding and the
teacher's centred target, on 1,500 training photos and on 1,500 photos of View 1's test people: how far the
student is from copying the teacher where it trained, and off it. Speed: `bench.faces.run_latency` (ONNX
Runtime, batch 1, 2 threads, mirror averaging in the graph), on this machine as it was when the report ran.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.faces import (  # noqa: E402
    comma_list,
    measured_run,
    pct,
    run_latency,
    setup_logging,
    write_report,
)
from training.config import TrainConfig, resolve  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("bench.faces_student")
EXPERIMENT = REPO / "experiments" / "faces_distill.toml"
MIX = {"distill_regression": 1.0, "distill_relational": 1.0, "face_detector": "blazeface"}
# slug -> (row label, config overrides on top of the experiment file and MIX)
STUDENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "grey64": ("grey, 64×64", {"channels": 1, "image_size": 64}),
    "rgb64": ("RGB, 64×64", {"channels": 3, "image_size": 64}),
    "rgb80": ("RGB, 80×80", {"channels": 3, "image_size": 80}),
    "rgb96": ("RGB, 96×96", {"channels": 3, "image_size": 96}),
}


def teacher_fit(run_dir: Path, n: int = 1500, seed: int = 0) -> dict[str, float]:
    """Mean cos(student, centred teacher target) on `n` seeded training photos of LFW and `n` photos of the
    people the run never saw (its protocol's test people). The targets are centred on the training photos'
    mean, as in training (training.teacher.centre). Cached in teacher_fit.json beside the checkpoint."""
    import torch

    from model.preprocess import PreprocessSpec
    from training.data.face_cache import load_face_crops, read_face_block, training_mask
    from training.export import load_checkpoint_embedder
    from training.teacher import teacher_targets

    best = run_dir / "best.pt"
    cache = run_dir / "teacher_fit.json"
    key = {"checkpoint_mtime_ns": best.stat().st_mtime_ns, "n": n, "seed": seed}
    if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
        return json.loads(cache.read_text())["fit"]
    net, ckpt = load_checkpoint_embedder(best)
    cfg = TrainConfig(**ckpt["train_config"])
    crops = load_face_crops(
        Path(cfg.data_root), Path(cfg.cache_dir), cfg.face_set_names, read_face_block(run_dir), channels=cfg.channels
    )
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    targets = teacher_targets(Path(cfg.data_root), Path(cfg.cache_dir), cfg.face_set_names).lookup(crops.keys)
    ok = ~np.isnan(targets).any(1)
    train = training_mask(crops, cfg)
    centred = targets - targets[train & ok].mean(0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    lfw = np.array([k.startswith("lfw/") for k in crops.keys])
    rng = np.random.default_rng(seed)
    fit = {}
    for name, mask in (("train", train & lfw & ok), ("unseen", ~train & lfw & ok)):
        rows = np.sort(rng.choice(np.flatnonzero(mask), min(n, int(mask.sum())), replace=False))
        with torch.no_grad():
            z = net(torch.from_numpy(crops.model_input(rows, spec))).numpy()
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        fit[name] = float((z * centred[rows]).sum(1).mean())
    cache.write_text(json.dumps({"key": key, "fit": fit}, indent=2))
    return fit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6000, help="training steps per student (equal budget)")
    ap.add_argument("--students", default=",".join(STUDENTS), help="comma list of " + ", ".join(STUDENTS))
    ap.add_argument("--no-train", action="store_true", help="only report runs that exist")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faces_student.md")
    args = ap.parse_args()
    setup_logging()
    wanted = comma_list(ap, args.students, list(STUDENTS), "students")

    rows = []
    for slug in wanted:
        label, overrides = STUDENTS[slug]
        name = f"faces-student-{slug}-{args.steps}"
        cfg = resolve(EXPERIMENT, {**MIX, **overrides, "steps": args.steps, "face_protocol": "view1", "name": name})
        measured = measured_run(
            cfg,
            args.no_train,
            f"python bench/faces_student.py --steps {args.steps} --students {slug}",
            args.data_root,
            extras={"fit": teacher_fit, "speed": lambda run_dir: run_latency(run_dir, args.data_root)},
        )
        if measured is not None:
            rows.append((label, measured.metrics, measured.run, measured.extras["fit"], measured.extras["speed"]))

    lines = [
        "# Student input: colour and size",
        "",
        f"Generated by `python bench/faces_student.py --steps {args.steps}"
        + (f" --students {args.students}" if args.students != ",".join(STUDENTS) else "")
        + f"` on {cpu_name()} ({platform.machine()}), Python {platform.python_version()}.",
        "",
        f"Each row: `experiments/faces_distill.toml` (regression + relational distillation from dlib's public-domain "
        f"ResNet: *with outside data*), BlazeFace's crops, trained {args.steps} steps on LFW View 1's training "
        "people (+ ORL training subjects, Yale B) with one input, scored on View 1's 1,000 test pairs (people it "
        "never saw; threshold chosen on the training people's pairs) and on all pairs among those 1,711 people "
        "(held-out TAR / EER); mirror averaging on. Fit: mean cosine to the teacher's centred target on training "
        "photos / on the unseen people's photos (1 would be a perfect copy). ms per face: ONNX Runtime, batch 1, "
        "2 threads, both views; ms per photo: JPEG bytes to embedding with BlazeFace, on 100 LFW photos.",
        "",
        "| input | LFW View 1 acc (aligned) | acc (end to end) | AUC (end to end) | held-out EER | held-out "
        "TAR@FAR=1e-3 | ORL EER | ORL 1-shot id | fit train / unseen | validation | ms per face | ms per photo "
        "| training |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m, run, fit, speed in rows:
        a, e = m["lfw_view1"], m["lfw_view1_end_to_end"]
        held, orl = m.get("heldout_people", {}), m.get("orl_heldout", {})
        lines.append(
            f"| {label} | {pct(a['accuracy'])} | {pct(e['accuracy'])} | {e['auc']:.4f} | {pct(held.get('eer'))} | "
            f"{pct(held.get('tar_at_far', {}).get('1e-3'))} | {pct(orl.get('eer'))} | "
            f"{pct(orl.get('one_shot_identification'))} | {fit['train']:.3f} / {fit['unseen']:.3f} | "
            f"{pct(run.get('best_val_acc'))} | {speed['embed_ms_median']:.2f} | "
            f"{speed['photo_to_embedding_ms_median']:.1f} | {run.get('steps')} steps, "
            f"{run.get('train_time_s', 0) / 60:.0f} min, {run.get('hardware', '')} |"
        )
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
