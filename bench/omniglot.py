"""Regenerate bench/results/omniglot.md from the measurements kept in bench/results/omniglot.json.

    python bench/omniglot.py              # embedding table: trains missing runs (hours on a 2-core CPU), evaluates
    python bench/omniglot.py --no-train   # embedding table: evaluates the runs already in runs/
    OMP_NUM_THREADS=1 python bench/omniglot.py --fewshot --budget-minutes 6 --jobs 2
                                          # few-shot table: every method on both protocols at an equal budget
    python bench/omniglot.py --render     # rewrite the .md from the JSON alone (measures nothing)

The JSON is committed; runs/ is not. A row whose run is in runs/ is (re)measured and its entry replaced;
a row whose run is absent keeps the entry measured earlier (each entry records when and by which command).

Embedding table: each experiment file's run, measured from its best checkpoint (torch), plus the raw-pixel
baseline and the shipped artifact (ONNX, through `model.artifact`, what serving runs).

Few-shot table (`--fewshot`): each method of FEWSHOT_RUNS trained twice, once per protocol, with the same
wall-clock budget (`--max-minutes`, one thread per training process, `--jobs` processes at a time), then evaluated:
- Lake's protocol: trained on `images_background` (4 alphabets held out for validation), scored on the 400
  trials of Lake's 20 within-alphabet runs (`all_runs.zip`);
- Vinyals' protocol: trained on `splits/vinyals/train.txt` (validated on val.txt), 28×28, rotations as
  classes, scored on test.txt in 5/20-way × 1/5-shot episodes (`--episodes` each, 95% CI over episodes).
A run that already spent its budget (or finished its steps) is not trained again. Support-set fine-tuning
(`training.finetune`) is measured on the prototypical runs' frozen embedders, beside their plain
nearest-prototype rows. Each budget keeps its own runs (runs/fewshot-<minutes>min/) and its own entries in the
JSON: the main table shows the largest budget at which every method was measured, and a second table and
bench/results/omniglot_budget.png show how far each method is from its paper at every budget measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.benchmark import (  # noqa: E402
    EPISODE_SETTINGS,
    evaluate_artifact,
    evaluate_checkpoint,
    evaluate_pixels,
)
from training.cli import FINETUNE_ENTROPY, FINETUNE_LR, FINETUNE_STEPS  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("bench.omniglot")
RESULTS = REPO / "bench" / "results"

# ---------------------------------------------------------------------------------------------------------
# The embedding table
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
    (
        "omniglot_koch_within.toml",
        "Koch Siamese, Koch net 35×35 (reduced), half the batches within one alphabet",
        "92.0 (Koch 2015, 105×105)",
    ),
    ("omniglot_contrastive.toml", "Contrastive, Conv-4 28×28", "—"),
    ("omniglot_triplet.toml", "Triplet, semi-hard mining, Conv-4 28×28", "—"),
    ("omniglot_proto.toml", "Prototypical (60-way episodes), Conv-4 28×28", "—"),
    ("omniglot_normsoftmax.toml", "Normalised softmax (cosine classifier), Conv-4 28×28", "—"),
    (
        "omniglot_best.toml",
        "Prototypical, half the episodes within one alphabet, Conv-4 28×28 (shipped recipe, no TTA)",
        "—",
    ),
]
PIXELS_LABEL = "Pixels, 1-nearest-neighbour (Euclidean, 28×28)"
REFERENCE = "People 95.5, BPL 96.7 (Lake et al. 2015); Koch et al. 2015: 92.0"
PROTOCOLS = ("lake_runs", "5way_1shot", "5way_5shot", "20way_1shot", "20way_5shot")
EPISODE_KEYS = PROTOCOLS[1:]

# ---------------------------------------------------------------------------------------------------------
# The few-shot table


@dataclass(frozen=True)
class Method:
    """A row: `key` names its runs; `paper` = the paper's Vinyals-split (5-way 1-shot, 20-way 1-shot) figures."""

    key: str
    label: str
    paper: tuple[float, float] | None
    source: str  # where `paper` comes from, or why there is none


@dataclass(frozen=True)
class FewShotRun:
    """One training run: `method` on `protocol` ("lake" | "vinyals") from an experiment file, with overrides.

    val_every: validation interval in steps, small enough that the budget (checked at validations) is kept
    to within ~30 s on the 2-core CPU. settings: the Vinyals (way, shot) settings this run fills (MAML's head
    is bound to its width; the Relation Network trains one model per shot, as the paper). suffix: tells
    apart the runs of one method and protocol ("-5way", "-5shot").
    """

    method: str
    protocol: str
    experiment: str
    val_every: int
    overrides: dict[str, Any] = field(default_factory=dict)
    suffix: str = ""
    settings: tuple[tuple[int, int], ...] = EPISODE_SETTINGS

    @property
    def name(self) -> str:
        return f"omni-{self.protocol}-{self.method}{self.suffix}"


METHODS = [
    Method("matching", "Matching Networks, cosine attention (no FCE)", (98.1, 93.8), "Vinyals 2016"),
    Method(
        "matching_fce",
        "Matching Networks with full context embeddings",
        (98.1, 93.8),
        "Vinyals 2016 (its Omniglot figures are without FCE)",
    ),
    Method("maml", "MAML, second order", (98.7, 95.8), "Finn 2017"),
    Method(
        "fomaml", "MAML, first order", None, "— (Finn 2017 gives first order on miniImageNet only; MAML: 98.7 / 95.8)"
    ),
    Method("relation", "Relation Network", (99.6, 97.6), "Sung 2018"),
    Method("proto", "Prototypical, frozen embedder, nearest prototype (60-way episodes)", (98.8, 96.0), "Snell 2017"),
    Method(
        "proto+finetune",
        "Prototypical embedder + support-set fine-tuning (transductive)",
        None,
        "— (Dhillon 2020 reports no Omniglot figure)",
    ),
    Method(
        "koch",
        "Siamese, Koch's objective (L1 + sigmoid, BCE), Conv-4",
        (96.7, 88.0),
        "Koch 2015 as run by Vinyals 2016",
    ),
    Method("contrastive", "Siamese, contrastive, Conv-4", None, "—"),
    Method("triplet", "Siamese, triplet (semi-hard), Conv-4", None, "—"),
    Method("normsoftmax", "Normalised softmax (cosine classifier), Conv-4", None, "—"),
]
MAML20 = {"n_way": 20, "val_way": 20, "inner_steps": 5, "inner_lr": 0.1, "episodes_per_batch": 16}
# Koch's objective on the Conv-4 at 28×28, so that every Siamese row compares objectives on one network.
KOCH_CONV4 = {"net": "convnet", "image_size": 28}
FEWSHOT_RUNS = [
    *(
        FewShotRun(m, p, "omniglot_matching.toml", 120, {"objective": m, "split": p})
        for m in ("matching", "matching_fce")
        for p in ("lake", "vinyals")
    ),
    # Lake's runs are 20-way, so MAML trains 20-way there; on the Vinyals split one run per width.
    *(
        FewShotRun(m, "lake", "omniglot_maml.toml", 15, {"objective": m, "split": "lake", **MAML20})
        for m in ("maml", "fomaml")
    ),
    FewShotRun("maml", "vinyals", "omniglot_maml.toml", 80, {"objective": "maml"}, "-5way", ((5, 1), (5, 5))),
    FewShotRun(
        "maml", "vinyals", "omniglot_maml.toml", 15, {"objective": "maml", **MAML20}, "-20way", ((20, 1), (20, 5))
    ),
    FewShotRun("fomaml", "vinyals", "omniglot_maml.toml", 150, {"objective": "fomaml"}, "-5way", ((5, 1), (5, 5))),
    FewShotRun(
        "fomaml", "vinyals", "omniglot_maml.toml", 40, {"objective": "fomaml", **MAML20}, "-20way", ((20, 1), (20, 5))
    ),
    # The Relation Network sums a class's support features, so a 1-shot model meets 5× its training scale at
    # 5 shots: the paper trains a 5-shot model (5-way, 15 queries per class here, as its code).
    FewShotRun("relation", "lake", "omniglot_relation.toml", 250, {"split": "lake"}),
    FewShotRun("relation", "vinyals", "omniglot_relation.toml", 250, {}, settings=((5, 1), (20, 1))),
    *(
        FewShotRun(m, p, f"omniglot_{m}.toml", every, {"split": p, **(KOCH_CONV4 if m == "koch" else {})})
        for m, every in (("proto", 50), ("koch", 120), ("contrastive", 60), ("triplet", 60), ("normsoftmax", 60))
        for p in ("lake", "vinyals")
    ),
]
# Appended last, so that runs measured before it existed keep their place in the queue.
FEWSHOT_RUNS.append(
    FewShotRun(
        "relation", "vinyals", "omniglot_relation.toml", 100, {"k_shot": 5, "q_query": 15}, "-5shot", ((5, 5), (20, 5))
    )
)
FINETUNE_BASE = "proto"  # the embedder that support-set fine-tuning starts from (its frozen row: "proto")
VAL_EPISODES = 100  # validation episodes during training (fewer than the default: validation counts in the budget)


def fewshot_train_command(run: FewShotRun, budget_minutes: float, runs_dir: Path) -> list[str]:
    flags = {**run.overrides, "name": run.name, "out_dir": str(runs_dir), "max_minutes": budget_minutes}
    flags |= {"val_every": run.val_every, "val_episodes": VAL_EPISODES, "patience": 0}
    cmd = [sys.executable, "-m", "training", "train", "--config", f"experiments/{run.experiment}"]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def needs_training(run_dir: Path, budget_minutes: float) -> float:
    """Minutes of budget the run still has (0: it spent its budget or finished its steps)."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return budget_minutes
    m = json.loads(metrics.read_text())
    if m["finished"]:
        return 0.0
    left = budget_minutes - m["train_time_s"] / 60
    return left if left > 0.05 * budget_minutes else 0.0


def budget_key(minutes: float) -> str:
    """The JSON key (and runs/ folder suffix) of a budget: "2", "6", "0.5"."""
    return f"{minutes:g}"


def measure_fewshot(args: argparse.Namespace, store: dict[str, Any]) -> None:
    """Train (unless --no-train) and evaluate every few-shot run at this budget, into
    store["fewshot"]["budgets"][budget]. Trainings run `--jobs` at a time (one thread each); evaluations one
    at a time, each as soon as its run is trained, so that their timings (eval_s) are not shared."""
    key_b = budget_key(args.budget_minutes)
    fs = store.setdefault("fewshot", {}).setdefault("budgets", {}).setdefault(key_b, {"runs": {}})
    runs_dir = args.runs / f"fewshot-{key_b}min"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    todo = [
        run
        for run in FEWSHOT_RUNS
        if (not args.only or run.method in args.only.split(",")) and run.protocol in args.protocols.split(",")
    ]
    lock = threading.Lock()  # one evaluation at a time; the store is written under it

    def one(run: FewShotRun) -> None:
        run_dir = runs_dir / run.name
        left = needs_training(run_dir, args.budget_minutes)
        if not args.no_train and left > 0:
            cmd = fewshot_train_command(run, round(left, 2), runs_dir)
            LOG.info("training %s for up to %.2f min: %s", run.name, left, shlex.join(cmd[1:]))
            if args.jobs == 1:
                subprocess.run(cmd, check=True, cwd=REPO, env=env)
            else:  # the trainers' progress bars would interleave: each one's output goes to its run folder
                run_dir.mkdir(parents=True, exist_ok=True)
                with open(run_dir / "bench-train.log", "ab") as log:
                    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        with lock:
            evaluate_fewshot_run(args, run, run_dir, fs, lambda: save_store(args.json, store))

    if args.jobs > 1:
        import torch

        torch.set_num_threads(1)  # the evaluations share the machine with the other jobs' trainings
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(one, todo))  # list(): re-raises a run's failure
    else:
        for run in todo:
            one(run)
    fs["budget_minutes"] = args.budget_minutes
    fs["episodes"] = args.episodes
    fs["jobs"] = args.jobs
    command = (
        f"OMP_NUM_THREADS=1 python bench/omniglot.py --fewshot --budget-minutes {args.budget_minutes:g}"
        + (f" --jobs {args.jobs}" if args.jobs != 1 else "")
        + (f" --episodes {args.episodes}" if args.episodes != 1000 else "")
        + (f" --only {args.only}" if args.only else "")
        + (f" --protocols {args.protocols}" if args.protocols != "lake,vinyals" else "")
    )
    # A partial invocation (--only, --protocols) adds to the budget's commands; a whole one replaces them.
    partial = bool(args.only) or args.protocols != "lake,vinyals"
    earlier = fs.get("command", "").split(" and ") if partial and fs.get("command") else []
    fs["command"] = " and ".join(dict.fromkeys([*earlier, command]))
    fs["platform"] = f"{cpu_name()} ({os.cpu_count()} cores) / Python {platform.python_version()}"


def evaluate_fewshot_run(
    args: argparse.Namespace, run: FewShotRun, run_dir: Path, fs: dict[str, Any], save: Callable[[], None]
) -> None:
    """Measure one trained run (and its fine-tuning variant) into fs["runs"], unless this checkpoint is
    measured already; `save()` after each entry."""
    best, metrics = run_dir / "best.pt", run_dir / "metrics.json"
    if not best.is_file() or not metrics.is_file():
        LOG.warning(
            "skipping %s: no best.pt or metrics.json in %s (kept: the entry measured earlier)", run.name, run_dir
        )
        return
    bases = [(run.name, None)]
    if run.method == FINETUNE_BASE:
        from training.finetune import embedding_classifier

        distance = json.loads(metrics.read_text())["distance"]
        bases.append(
            (run.name + "+finetune", embedding_classifier(FINETUNE_STEPS, FINETUNE_LR, FINETUNE_ENTROPY, distance))
        )
    for entry_name, classifier in bases:
        key = {"checkpoint_mtime_ns": best.stat().st_mtime_ns, "episodes": args.episodes}
        old = fs["runs"].get(entry_name)
        if old and old.get("key") == key:
            continue  # this checkpoint is measured already
        m = json.loads(metrics.read_text())
        cfg = json.loads((run_dir / "config.json").read_text())
        settings = () if run.protocol == "lake" else run.settings  # Lake's protocol: its 400 trials alone
        started = time.time()
        LOG.info("evaluating %s", entry_name)
        results = evaluate_checkpoint(best, args.data_root, args.episodes, settings=settings, classifier=classifier)
        fs["runs"][entry_name] = {
            "method": run.method + ("+finetune" if classifier else ""),
            "protocol": run.protocol,
            "key": key,
            "results": results,
            "eval_s": round(time.time() - started, 1),
            "train_command": m["command"],
            "train_minutes": m["train_time_s"] / 60,
            "steps": m["steps"],
            "steps_planned": cfg["steps"],
            "finished": m["finished"],
            "best_step": m["best_step"],
            "hardware": m["hardware"],
            "n_way": cfg["n_way"] if run.method in ("maml", "fomaml") else None,
            "finetune": (
                {"steps": FINETUNE_STEPS, "lr": FINETUNE_LR, "entropy_weight": FINETUNE_ENTROPY} if classifier else None
            ),
            "measured": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        }
        save()


# ---------------------------------------------------------------------------------------------------------
# The embedding table's measurement (unchanged protocol; entries kept by row label)


def run_name(exp: Path) -> str:
    return tomllib.loads(exp.read_text())["name"]


def measure_embedders(args: argparse.Namespace, store: dict[str, Any]) -> None:
    emb = store.setdefault("embedders", {"rows": []})
    rows = {r["label"]: r for r in emb["rows"]}
    order = [PIXELS_LABEL] + [e[1] for e in EXPERIMENTS]
    now = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    command = f"python bench/omniglot.py{' --no-train' if args.no_train else ''}"

    def put(label: str, results: dict, train_time: str, hw: str, paper: str, key: dict | None = None) -> None:
        rows[label] = {
            "label": label,
            "results": results,
            "train_time": train_time,
            "hardware": hw,
            "paper": paper,
            "measured": now,
            "command": command,
            **({"key": key} if key else {}),
        }

    put(PIXELS_LABEL, evaluate_pixels(args.data_root, args.episodes), "—", "—", "21.7 (1-NN, Lake 2015)")
    for exp_file, label, paper, *tta in EXPERIMENTS:
        exp = REPO / "experiments" / exp_file
        run = args.runs / run_name(exp)
        if not args.no_train:  # resumes an interrupted run; a finished run returns at once
            train = [sys.executable, "-m", "training", "train", "--config", str(exp), "--out-dir", str(args.runs)]
            subprocess.run(train, check=True, cwd=REPO)
        if not (run / "best.pt").is_file() or not (run / "metrics.json").is_file():
            LOG.warning("%s: %s has no best.pt or metrics.json; keeping the entry measured earlier, if any", label, run)
            continue
        # Evaluating a checkpoint takes minutes on a CPU: an unchanged one keeps the entry measured earlier.
        key = {"checkpoint_mtime_ns": (run / "best.pt").stat().st_mtime_ns, "episodes": args.episodes}
        if rows.get(label, {}).get("key") == key:
            continue
        m = json.loads((run / "metrics.json").read_text())
        total = json.loads((run / "config.json").read_text())["steps"]
        done = "" if m["finished"] else f", **unfinished: stopped at {m['steps']} of {total}**"
        results = evaluate_checkpoint(run / "best.pt", args.data_root, args.episodes, tta[0] if tta else 0)
        train_time = f"{m['train_time_s'] / 60:.0f} min ({m['steps']} steps{done})"
        put(label, results, train_time, m["hardware"], paper, key)
    if (args.artifact / "card.json").is_file():
        from model.artifact import load

        art = load(args.artifact)
        t = art.card.training
        label = f"**Shipped artifact `{art.card.name}` {art.card.version}** (ONNX Runtime, {t['objective']})"
        results = evaluate_artifact(art, args.data_root, args.episodes)
        put(label, results, f"{t['train_time_s'] / 60:.0f} min", t["hardware"], "—")
        order.append(label)
    emb["rows"] = [rows[k] for k in order if k in rows] + [r for k, r in rows.items() if k not in order]
    emb["episodes"] = args.episodes
    emb["platform"] = f"{cpu_name()} ({os.cpu_count()} cores) / Python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------------------
# Rendering


def cell(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}"


def embedders_section(emb: dict[str, Any]) -> list[str]:
    measured = sorted({f"{r['measured']} by `{r['command']}`" for r in emb["rows"]})
    lines = [
        "# Omniglot benchmark",
        "",
        "## Embedding models",
        "",
        f"Measured {'; '.join(measured)} on {emb['platform']}.",
        "All networks are trained on `images_background` only (30 alphabets); 4 of them are held out for",
        "validation / early stopping. Accuracy in % ± the 95% confidence interval (over the 20 runs for Lake's",
        f"runs, over episodes otherwise). Episodes: `images_evaluation`, classes across alphabets, 5 queries per "
        f"class, {emb['episodes']} episodes, seed 0. Reference points: {REFERENCE}.",
        "",
        "| method | Lake's 400 trials (20-way 1-shot, within alphabet) | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot "
        "| 20-way 5-shot | training time | hardware | paper (Lake's runs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in emb["rows"]:
        cells = " | ".join(cell(r["results"].get(p)) for p in PROTOCOLS)
        lines.append(f"| {r['label']} | {cells} | {r['train_time']} | {r['hardware']} | {r['paper']} |")
    return lines


def fewshot_run(entry_name: str) -> FewShotRun | None:
    """The FEWSHOT_RUNS run behind an entry of the JSON (fine-tuning entries: their base run)."""
    return next((r for r in FEWSHOT_RUNS if r.name == entry_name.removesuffix("+finetune")), None)


def entries_of(fs: dict[str, Any], method: str, protocol: str) -> dict[str, dict[str, Any]]:
    return {n: e for n, e in fs["runs"].items() if e["method"] == method and e["protocol"] == protocol}


def merged(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row's results from its runs: each run gives Lake's trials and the Vinyals settings it fills."""
    out: dict[str, Any] = {}
    for name, e in entries.items():
        run = fewshot_run(name)
        fills = {"lake_runs"} | {f"{w}way_{k}shot" for w, k in (run.settings if run else EPISODE_SETTINGS)}
        out.update({k: v for k, v in e["results"].items() if k in fills})
    return out


def budget_cell(entries: dict[str, dict[str, Any]]) -> str:
    """Minutes and steps of each run behind a row (several: "5-way: ...; 20-way: ...")."""
    parts = []
    for name, e in entries.items():
        run = fewshot_run(name)
        tag = run.suffix.lstrip("-").replace("way", "-way").replace("shot", "-shot") if run else ""
        done = ", finished" if e["finished"] else ""
        text = f"{e['train_minutes']:.1f} min, {e['steps']} of {e['steps_planned']} steps{done}"
        parts.append(f"{tag}: {text}" if tag else text)
    return "; ".join(sorted(parts, key=lambda t: (len(t.split(":")[0]), t)))


def commands(fs: dict[str, Any]) -> str:
    """The commands that measured a budget, each as code (partial invocations are joined by " and ")."""
    return " and ".join(f"`{c}`" for c in fs["command"].split(" and "))


def fewshot_section(fs: dict[str, Any]) -> list[str]:
    by = {(m.key, p): entries_of(fs, m.key, p) for m in METHODS for p in ("lake", "vinyals")}
    hardware = sorted({e["hardware"] for e in fs["runs"].values()})
    lines = [
        "",
        "## Few-shot methods at an equal CPU budget, both protocols",
        "",
        f"Measured by {commands(fs)} on {fs['platform']}: every run trained for a wall-clock budget of "
        f"**{fs['budget_minutes']:g} minutes** (`--max-minutes`; validation time included, checked at each "
        "validation, so a run may overshoot by up to ~half a minute), "
        + (
            f"{fs['jobs']} training processes at a time, one thread each ({', '.join(hardware)}), sharing the "
            "machine's cores with each other's evaluations and other short jobs. "
            if fs.get("jobs", 1) > 1
            else f"one training process at a time with one thread ({', '.join(hardware)}), beside other jobs on "
            "the machine's other core. "
        )
        + "Each run keeps its best validation checkpoint.",
        "",
        "- **Lake's protocol**: trained on `images_background` (4 alphabets held out for validation); scored on "
        "the 400 trials of Lake's 20 within-alphabet 20-way 1-shot runs (± 95% CI over the 20 runs).",
        "- **Vinyals' protocol**: trained on `splits/vinyals/train.txt` (validated on `val.txt`), 28×28, every "
        f"rotation a class; scored on `test.txt` in {fs['episodes']} episodes per setting, 5 queries per class, "
        "seed 0 (± 95% CI over episodes). MAML's head is bound to its training width: a 5-way run fills the "
        "5-way columns, a 20-way run the 20-way ones.",
        f"- **Support-set fine-tuning**: the prototypical runs' embedders, frozen; per episode "
        f"`training.finetune` starts a classifier at the class prototypes and takes {FINETUNE_STEPS} Adam steps "
        f"(lr {FINETUNE_LR:g}, query-entropy weight {FINETUNE_ENTROPY:g}: `python -m training evaluate "
        "--finetune`'s defaults, chosen on validation alphabets in omniglot_finetune.md), all queries of an "
        "episode classified together (transductive). Its training budget is the prototypical run's.",
        "- **Training episodes** are each experiment file's (`experiments/omniglot_{matching,maml,relation,proto,"
        "koch,contrastive,triplet,normsoftmax}.toml`; Koch's objective on the Conv-4 at 28×28 here), 1-shot: "
        "a 5-shot column is the 1-shot model given 5 shots, except the Relation Network's, which comes from a "
        "5-shot model (it sums a class's support features, as the paper, which trains one model per shot).",
        *eval_time_note(fs),
        "",
        "| method | Lake's 400 trials | Vinyals 5-way 1-shot | 5-way 5-shot | 20-way 1-shot | 20-way 5-shot "
        "| paper, Vinyals 5-way / 20-way 1-shot | vs paper (points) | training: Lake's protocol "
        "| training: Vinyals' | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        lake, vin = by[(m.key, "lake")], by[(m.key, "vinyals")]
        if not lake and not vin:
            continue
        lr, vr = merged(lake), merged(vin)
        paper = f"{m.paper[0]} / {m.paper[1]} ({m.source})" if m.paper else m.source
        gap = gap_text(vinyals_gaps(fs, m))
        cells = " | ".join(cell(vr.get(k)) for k in EPISODE_KEYS)
        lines.append(
            f"| {m.label} | {cell(lr.get('lake_runs'))} | {cells} | {paper} | {gap} | {budget_cell(lake) or '—'} "
            f"| {budget_cell(vin) or '—'} | {', '.join(sorted({e['hardware'] for e in (lake | vin).values()}))} |"
        )
    return [*lines, "", *budget_note(fs)]


def eval_time_note(fs: dict[str, Any]) -> list[str]:
    """How long MAML's evaluation took (it adapts on every episode's support set): the reason its
    episode count is what it is."""
    maml = {n: e for n, e in fs["runs"].items() if e["method"] in ("maml", "fomaml") and e["protocol"] == "vinyals"}
    if not maml:
        return []
    times = ", ".join(f"{n} {e['eval_s'] / 60:.1f} min" for n, e in sorted(maml.items()))
    return [
        f"- **MAML's evaluation** adapts for `inner_steps_eval` steps on each episode's support set; "
        f"{fs['episodes']} episodes per setting (both settings of its width) took: {times}, so every MAML "
        f"setting is measured on the full {fs['episodes']} episodes."
    ]


def budget_note(fs: dict[str, Any]) -> list[str]:
    """The note under the few-shot table, from the measurements: how short the budgets are and how far
    each row is from its paper."""
    entries = [e for e in fs["runs"].values() if not e["method"].endswith("+finetune")]
    share = sorted(100 * e["steps"] / e["steps_planned"] for e in entries)
    misses = [f"{m.label}: {gap_text(g)}" for m in METHODS if (g := vinyals_gaps(fs, m)) is not None]
    return [
        f"**Read these rows as a {fs['budget_minutes']:g}-minute CPU budget, not as reproductions.** Every run "
        f"trained for {fs['budget_minutes']:g} minutes on one CPU thread, far below the papers' training (GPU "
        "runs of tens of thousands of episodes or more): the runs reached "
        f"{share[0]:.1f}–{share[-1]:.1f}% of the steps of their experiment files' own schedules (column "
        '"training": steps reached of steps planned), so no row is within 1.5 points of its paper on the Vinyals '
        'split unless the column "vs paper" says so. Points from the paper on Vinyals 5-way / 20-way 1-shot: '
        + "; ".join(misses)
        + ". The methods differ in cost per step (MAML's second-order 20-way meta-batch is the most expensive), so "
        "at an equal wall-clock budget the cheap methods get many more updates, and in how fast they start: "
        "Matching Networks' attention is a softmax over cosine similarities, bounded in [−1, 1] with no "
        "temperature (as in the paper), so the probability it gives the right class of a 20-way 1-shot episode "
        "is at most e/(e + 19/e) = 0.28 however well the embedding separates the classes, and its gradients "
        "stay soft. How each gap moves with the budget is in the next table. The full runs are the experiment files "
        "without `--max-minutes` (hours to days on this CPU; a GPU for MAML and the Relation Network).",
    ]


def vinyals_gaps(fs: dict[str, Any], m: Method) -> tuple[float, float] | None:
    """Points from the paper on Vinyals 5-way / 20-way 1-shot at one budget (None: no paper or no runs)."""
    vr = merged(entries_of(fs, m.key, "vinyals"))
    if not m.paper or "5way_1shot" not in vr or "20way_1shot" not in vr:
        return None
    a, b = (100 * vr[k]["accuracy"] for k in ("5way_1shot", "20way_1shot"))
    return a - m.paper[0], b - m.paper[1]


def gap_text(gaps: tuple[float, float] | None) -> str:
    """ "-1.5 / -4.2" (points from the paper, 5-way / 20-way 1-shot), "—" without a paper figure."""
    return " / ".join(f"{g:+.1f}" for g in gaps) if gaps else "—"


def budget_section(budgets: dict[str, dict[str, Any]], plot: Path | None) -> list[str]:
    """Every budget measured, side by side: how each method's distance from its paper moves with the budget
    (and a plot of it, written to `plot`)."""
    keys = sorted(budgets, key=float)
    lines = [
        "",
        "## The same methods at each budget measured",
        "",
        "Each budget's runs are trained from scratch (runs/fewshot-<minutes>min/), scored as above. "
        + "; ".join(f"{k} min: {commands(budgets[k])}" for k in keys)
        + ".",
        "",
        "| method | budget | Lake's 400 trials | Vinyals 5-way 1-shot | 20-way 1-shot | vs paper (points) "
        "| training: Vinyals' |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        for k in keys:
            fs = budgets[k]
            lake, vin = entries_of(fs, m.key, "lake"), entries_of(fs, m.key, "vinyals")
            if not lake and not vin:
                continue
            lr, vr = merged(lake), merged(vin)
            gap = gap_text(vinyals_gaps(fs, m))
            lines.append(
                f"| {m.label} | {k} min | {cell(lr.get('lake_runs'))} | {cell(vr.get('5way_1shot'))} "
                f"| {cell(vr.get('20way_1shot'))} | {gap} | {budget_cell(vin) or '—'} |"
            )
    if plot is not None and plot_budgets(budgets, plot):
        lines += ["", f"![Points from the paper against the training budget]({plot.name})"]
    return lines


def plot_budgets(budgets: dict[str, dict[str, Any]], path: Path) -> bool:
    """Points from the paper (Vinyals 5-way and 20-way 1-shot) against the budget, one line per method with a
    paper figure; False when fewer than two budgets give such a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(budgets, key=float)
    series = {}
    for m in METHODS:
        points = [(float(k), g) for k in keys if (g := vinyals_gaps(budgets[k], m)) is not None]
        if len(points) > 1:
            series[m.label] = points
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True)
    for i, (ax, title) in enumerate(zip(axes, ("Vinyals 5-way 1-shot", "Vinyals 20-way 1-shot"), strict=True)):
        for label, points in series.items():
            ax.plot([x for x, _ in points], [g[i] for _, g in points], marker="o", label=label.split(" (")[0])
        ax.axhline(0, color="black", lw=1)
        ax.axhspan(-1.5, 0, color="tab:green", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xticks([float(k) for k in keys], labels=[f"{k} min" for k in keys])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("training budget per run (one CPU thread)")
        ax.set_ylabel("accuracy − paper (points)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Omniglot few-shot methods: distance from each paper's figure (green: within 1.5 points)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main_budget(budgets: dict[str, dict[str, Any]]) -> str:
    """The budget of the main table: the largest at which every method was measured on both protocols (a
    longer budget given to a few methods only shows in the budget table), else the largest."""

    def complete(fs: dict[str, Any]) -> bool:
        return all(entries_of(fs, r.method, r.protocol) for r in FEWSHOT_RUNS)

    return max([k for k, fs in budgets.items() if complete(fs)] or budgets, key=float)


def render(store: dict[str, Any], plot: Path | None = None) -> str:
    """The Markdown report from the JSON; `plot`: where the budget plot goes (None: no plot)."""
    lines = embedders_section(store["embedders"]) if "embedders" in store else ["# Omniglot benchmark"]
    budgets = store.get("fewshot", {}).get("budgets", {})
    if budgets:
        lines += fewshot_section(budgets[main_budget(budgets)])
    if len(budgets) > 1:
        lines += budget_section(budgets, plot)
    return "\n".join(lines) + "\n"


def save_store(path: Path, store: dict[str, Any]) -> None:
    path.write_text(json.dumps(store, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-train", action="store_true", help="only evaluate runs that exist")
    ap.add_argument(
        "--fewshot", action="store_true", help="the few-shot table (FEWSHOT_RUNS) instead of the embedding one"
    )
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the JSON")
    ap.add_argument("--budget-minutes", type=float, default=2.0, help="--fewshot: wall-clock training budget per run")
    ap.add_argument("--only", help="--fewshot: a comma list of method keys (default: every method)")
    ap.add_argument("--jobs", type=int, default=1, help="--fewshot: training processes at a time (one thread each)")
    ap.add_argument(
        "--protocols", default="lake,vinyals", help="--fewshot: a comma list of protocols (default: lake,vinyals)"
    )
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--artifact", type=Path, default=REPO / "model" / "artifacts" / "omniglot")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=RESULTS / "omniglot.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "omniglot.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    store: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if not args.render:
        (measure_fewshot if args.fewshot else measure_embedders)(args, store)
        save_store(args.json, store)
    args.out.write_text(render(store, args.out.with_name(args.out.stem + "_budget.png")))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
