"""Regenerate bench/results/omniglot.md: every objective × net on Lake's runs and N-way K-shot episodes.

    python bench/omniglot.py              # trains missing runs (resumable; hours on a 2-core CPU), then evaluates
    python bench/omniglot.py --no-train   # evaluates the runs already in runs/ (skips absent ones)

Each row is measured from the run's best checkpoint (torch), except the shipped artifact's row, which is
measured from ONNX through `model.artifact` (what serving runs). Training time and hardware come from
the run's metrics.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.benchmark import evaluate_artifact, evaluate_checkpoint, evaluate_pixels  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

# (experiment file, row label, the paper's figure on Lake's 400 trials where the paper reports one, test-time
# shift radius: chosen on the run's validation alphabets with `python -m training evaluate --validation`)
EXPERIMENTS = [
    ("omniglot_koch.toml", "Koch Siamese (L1 + sigmoid, BCE), Koch net 35×35 (reduced)", "92.0 (Koch 2015, 105×105)"),
    (
        "omniglot_koch.toml",
        "Koch Siamese, Koch net 35×35 (reduced), + test-time shifts ±2 px",
        "92.0 (Koch 2015, 105×105)",
        2,
    ),
    ("omniglot_contrastive.toml", "Contrastive, Conv-4 28×28", "—"),
    ("omniglot_triplet.toml", "Triplet, semi-hard mining, Conv-4 28×28", "—"),
    ("omniglot_proto.toml", "Prototypical (60-way episodes), Conv-4 28×28", "—"),
    ("omniglot_normsoftmax.toml", "Normalised softmax (cosine classifier), Conv-4 28×28", "—"),
    (
        "omniglot_best.toml",
        "Prototypical, half the episodes within one alphabet, 7000 steps, Conv-4 28×28 (shipped weights, no TTA)",
        "—",
    ),
]
REFERENCE = "People 95.5, BPL 96.7 (Lake et al. 2015); Koch et al. 2015: 92.0"
PROTOCOLS = ("lake_runs", "5way_1shot", "5way_5shot", "20way_1shot", "20way_5shot")


def run_name(exp: Path) -> str:
    import tomllib

    return tomllib.loads(exp.read_text())["name"]


def cached_results(checkpoint: Path, args: argparse.Namespace, tta_shift: int) -> dict:
    """The suite's results for a checkpoint, reused from `bench[-ttaN].json` beside it while the checkpoint
    and the episode count are unchanged (evaluating one checkpoint takes minutes on a CPU)."""
    cache = checkpoint.with_name(f"bench-tta{tta_shift}.json" if tta_shift else "bench.json")
    key = {"checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns, "episodes": args.episodes}
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["results"]
    results = evaluate_checkpoint(checkpoint, args.data_root, args.episodes, tta_shift)
    cache.write_text(json.dumps({"key": key, "results": results}, indent=2))
    return results


def cell(r: dict) -> str:
    return f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-train", action="store_true", help="only evaluate runs that exist")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--artifact", type=Path, default=REPO / "model" / "artifacts" / "omniglot")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "omniglot.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = []
    pixels = evaluate_pixels(args.data_root, args.episodes)
    rows.append(("Pixels, 1-nearest-neighbour (Euclidean, 28×28)", pixels, "—", "—", "21.7 (1-NN, Lake 2015)"))
    for exp_file, label, paper, *tta in EXPERIMENTS:
        exp = REPO / "experiments" / exp_file
        run = args.runs / run_name(exp)
        if not args.no_train:
            # Resumes an interrupted run; a finished run returns at once.
            subprocess.run(
                [sys.executable, "-m", "training", "train", "--config", str(exp), "--out-dir", str(args.runs)],
                check=True,
                cwd=REPO,
            )
        if not (run / "best.pt").is_file() or not (run / "metrics.json").is_file():
            print(
                f"skipping {label}: {run} has no best.pt or metrics.json (never run, or still training)",
                file=sys.stderr,
            )
            continue
        m = json.loads((run / "metrics.json").read_text())
        total = json.loads((run / "config.json").read_text())["steps"]
        done = "" if m["finished"] else f", **unfinished: stopped at {m['steps']} of {total}**"
        train_time = f"{m['train_time_s'] / 60:.0f} min ({m['steps']} steps{done})"
        results = cached_results(run / "best.pt", args, tta[0] if tta else 0)
        rows.append((label, results, train_time, m["hardware"], paper))
        print(f"{label}: Lake {cell(results['lake_runs'])}", file=sys.stderr)
    if (args.artifact / "card.json").is_file():
        from model.artifact import load

        art = load(args.artifact)
        results = evaluate_artifact(art, args.data_root, args.episodes)
        t = art.card.training
        rows.append(
            (
                f"**Shipped artifact `{art.card.name}` {art.card.version}** (ONNX Runtime, {t['objective']})",
                results,
                f"{t['train_time_s'] / 60:.0f} min",
                t["hardware"],
                "—",
            )
        )

    lines = [
        "# Omniglot benchmark",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `python bench/omniglot.py"
        f"{' --no-train' if args.no_train else ''}` on {cpu_name()} ({os.cpu_count()} cores) / "
        f"Python {platform.python_version()}.",
        "All networks are trained on `images_background` only (30 alphabets); 4 of them are held out for",
        "validation / early stopping. Accuracy in % ± the 95% confidence interval (over the 20 runs for Lake's",
        f"runs, over episodes otherwise). Episodes: `images_evaluation`, classes across alphabets, 5 queries per "
        f"class, {args.episodes} episodes, seed 0. Reference points: {REFERENCE}.",
        "",
        "| method | Lake's 400 trials (20-way 1-shot, within alphabet) | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot "
        "| 20-way 5-shot | training time | hardware | paper (Lake's runs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r, train_time, hw, paper in rows:
        lines.append(
            f"| {label} | " + " | ".join(cell(r[p]) for p in PROTOCOLS) + f" | {train_time} | {hw} | {paper} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
