"""Transductive support-set fine-tuning of the shipped Omniglot model's classifier: chosen on validation
alphabets, then measured once on Lake's 400 trials. Writes bench/results/omniglot_finetune.md.

    OMP_NUM_THREADS=1 python bench/omniglot_finetune.py

The embedder is frozen (the shipped artifact is ONNX; its torch weights are not in the repo): every image is
embedded once through `model.artifact` (cached under `.cache/omniglot_finetune/`), and each episode's
classifier is fine-tuned on those embeddings by `training.finetune.finetune` (Dhillon et al. 2020: weights
initialised at the class prototypes, Adam on CE(support) + entropy_weight · H(query predictions)). The
head is the card's distance (Euclidean for this model: logits −‖z − w‖², as its prototypical training),
so that 0 steps is exactly the plain evaluation.

1. Validation: the 4 background alphabets the shipped run held out (rebuilt from its card: `seed`,
   `val_groups`, through `training.data.base.split_by_group`), 20-way 1-shot within-alphabet episodes with 1
   query per class (Lake's layout), `--episodes` of them with `--seed`, for every (steps, lr, entropy) of
   the grid. The best mean wins (ties: fewer steps, then grid order).
2. Lake's 400 trials, plain and with the chosen setting only: each run's 20 queries are classified
   together (transductive). The CI is over the 20 runs, as in `training.evaluate.one_shot_runs`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.artifact import Artifact  # noqa: E402
from model.artifact import load as load_artifact  # noqa: E402
from training import evaluate  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data.base import split_by_group  # noqa: E402
from training.data.omniglot import OneShotRun, load_lake_runs, load_omniglot  # noqa: E402
from training.finetune import embedding_classifier, finetune_classify_path  # noqa: E402
from training.trainer import cpu_name  # noqa: E402

LOG = logging.getLogger("omniglot_finetune")


@dataclass(frozen=True)
class Setting:
    """One point of the grid. steps = 0 is the plain nearest-prototype classifier (lr, entropy unused)."""

    steps: int
    lr: float
    entropy_weight: float

    def label(self) -> str:
        if self.steps == 0:
            return "0 steps (plain nearest prototype)"
        return f"{self.steps} steps, lr {self.lr:g}, entropy {self.entropy_weight:g}"


@dataclass(frozen=True)
class Embedded:
    """Frozen embeddings of everything the bench reads.

    val: V×D validation embeddings with their labels (V) and groups (V, alphabets); lake: one OneShotRun
    per run whose support (20×D) and queries (20×D) are embeddings, answers as in `load_lake_runs`.
    """

    val: np.ndarray
    val_labels: np.ndarray
    val_groups: np.ndarray
    val_group_names: list[str]
    lake: list[OneShotRun]


def grid(steps: list[int], lrs: list[float], entropies: list[float]) -> list[Setting]:
    """Every (steps, lr, entropy), with the hyperparameter-free steps = 0 once, first."""
    out = [Setting(0, 0.0, 0.0)] if 0 in steps else []
    out += [Setting(s, lr, e) for s in steps if s > 0 for lr in lrs for e in entropies]
    return out


def embed_everything(artifact: Artifact, cfg: TrainConfig, data_root: Path, cache: Path) -> Embedded:
    """Embed the held-out validation alphabets and Lake's runs once (cached by the ONNX file's hash)."""
    digest = hashlib.sha1((artifact.path / "model.onnx").read_bytes()).hexdigest()[:12]
    path = cache / "omniglot_finetune" / f"{artifact.card.name}-{digest}-val{cfg.val_groups}-seed{cfg.seed}.npz"
    background = load_omniglot(data_root, "background", artifact.spec, cache)
    _, val = split_by_group(background, cfg.val_groups, cfg.seed)
    held = [str(val.group_names[g]) for g in np.unique(val.groups)]
    runs = load_lake_runs(data_root, artifact.spec)
    if path.is_file():
        z = np.load(path)
        lake_s, lake_q, emb = z["lake_support"], z["lake_queries"], z["val"]
    else:
        t0 = time.time()
        emb = evaluate.embed_all(artifact.embed, val.images)
        lake_s = np.stack([artifact.embed(r.support) for r in runs])
        lake_q = np.stack([artifact.embed(r.queries) for r in runs])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, val=emb, lake_support=lake_s, lake_queries=lake_q)
        LOG.info(
            "embedded %d validation images and %d runs in %.0f s -> %s", len(emb), len(runs), time.time() - t0, path
        )
    lake = [OneShotRun(support=s, queries=q, answers=r.answers) for s, q, r in zip(lake_s, lake_q, runs, strict=True)]
    return Embedded(emb, val.labels, val.groups, held, lake)


def per_episode(
    data: Embedded, lr: float, entropy_weight: float, steps: list[int], metric: str, n_way: int, n_episodes: int,
    seed: int,
) -> dict[int, np.ndarray]:  # fmt: skip
    """Accuracy of each validation episode (n_episodes) after each step count of `steps` at (lr, entropy):
    one Adam run per episode read at every count (`finetune_classify_path`), on the episodes of
    `evaluate.episodes(..., seed, groups)` (n_way-way 1-shot, 1 query per class, within alphabet)."""
    accs: dict[int, list[float]] = {t: [] for t in steps}
    draws = evaluate.draw_episodes(data.val_labels, n_way, 1, 1, n_episodes, seed, data.val_groups)
    for s, s_lab, q, q_lab in draws:
        preds = finetune_classify_path(data.val[s], s_lab, data.val[q], steps, lr, entropy_weight, metric)
        for t, pred in zip(steps, preds, strict=True):
            accs[t].append(float((pred == q_lab).mean()))
    return {t: np.array(a) for t, a in accs.items()}


def lake_predictions(data: Embedded, setting: Setting | None, metric: str, artifact: Artifact) -> list[np.ndarray]:
    """Each run's 20 predicted answers: plain `evaluate.classify` by the card's distance (setting None), or
    the fine-tuned classifier of `setting`, all 20 queries of a run at once."""
    out = []
    for run in data.lake:
        labels = np.arange(len(run.support))
        if setting is None:
            out.append(evaluate.classify(run.support, labels, run.queries, artifact.distance))
        else:
            classify = embedding_classifier(setting.steps, setting.lr, setting.entropy_weight, metric)
            out.append(classify(run.support, labels, run.queries))
    return out


def lake_accuracy(data: Embedded, preds: list[np.ndarray]) -> evaluate.Accuracy:
    """Accuracy over the 400 trials, CI over the 20 runs (as `evaluate.one_shot_runs`)."""
    hits = [(p == r.answers) for p, r in zip(preds, data.lake, strict=True)]
    _, ci = evaluate.mean_ci95([h.mean() for h in hits])
    total = sum(len(h) for h in hits)
    return evaluate.Accuracy(mean=sum(int(h.sum()) for h in hits) / total, ci95=ci, trials=total)


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """b − a, mean ± 95% CI over paired samples, in percentage points."""
    mean, ci = evaluate.mean_ci95(np.asarray(b) - np.asarray(a))
    return f"{100 * mean:+.2f} ± {100 * ci:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path, default=REPO / "model/artifacts/omniglot")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--cache", type=Path, default=REPO / ".cache")
    p.add_argument("--episodes", type=int, default=1000, help="validation episodes per setting")
    p.add_argument("--seed", type=int, default=99, help="validation episode seed (as `evaluate --validation`)")
    p.add_argument("--steps", default="0,10,25,50")
    p.add_argument("--lrs", default="1e-3,1e-2,5e-2")
    p.add_argument("--entropies", default="0,0.1,1")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/omniglot_finetune.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "OMP_NUM_THREADS=1 python bench/omniglot_finetune.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )

    t_start = time.time()
    artifact = load_artifact(args.artifact)
    cfg = TrainConfig.from_saved(artifact.card.training["config"])
    metric = artifact.card.distance
    data = embed_everything(artifact, cfg, args.data_root, args.cache)
    n_way = cfg.val_way
    settings = grid(
        [int(s) for s in args.steps.split(",")],
        [float(v) for v in args.lrs.split(",")],
        [float(v) for v in args.entropies.split(",")],
    )
    LOG.info("validation alphabets %s, %d classes; %d settings × %d episodes", data.val_group_names,
             len(np.unique(data.val_labels)), len(settings), args.episodes)  # fmt: skip

    # The plain figure on the same episodes, through the library's own protocol function.
    plain_val = evaluate.episodes(
        data.val, data.val_labels, n_way, 1, 1, args.episodes, artifact.distance, args.seed, data.val_groups
    )
    results: dict[Setting, np.ndarray] = {}
    for lr, ent in dict.fromkeys((s.lr, s.entropy_weight) for s in settings if s.steps > 0):
        counts = sorted({s.steps for s in settings if (s.lr, s.entropy_weight) == (lr, ent)})
        t0 = time.time()
        for t, accs in per_episode(data, lr, ent, counts, metric, n_way, args.episodes, args.seed).items():
            results[Setting(t, lr, ent)] = accs
            LOG.info("%-40s %6.2f%%", Setting(t, lr, ent).label(), 100 * accs.mean())
        LOG.info("(lr %g, entropy %g: %.0f s)", lr, ent, time.time() - t0)
    if settings[0].steps == 0:
        results[settings[0]] = per_episode(data, 0.0, 0.0, [0], metric, n_way, args.episodes, args.seed)[0]
    base = results[settings[0]] if settings[0].steps == 0 else None
    if base is not None and base.mean() != plain_val.mean:
        raise AssertionError(f"0 steps gives {base.mean()} on validation, the plain classifier {plain_val.mean}")
    order = {s: i for i, s in enumerate(settings)}
    best = max(settings, key=lambda s: (round(float(results[s].mean()), 10), -s.steps, -order[s]))

    plain_preds = lake_predictions(data, None, metric, artifact)
    zero_preds = lake_predictions(data, Setting(0, 0.0, 0.0), metric, artifact)
    best_preds = lake_predictions(data, best, metric, artifact)
    plain, zero, tuned = (lake_accuracy(data, x) for x in (plain_preds, zero_preds, best_preds))
    if zero.mean != plain.mean:
        raise AssertionError(f"0 steps gives {zero.mean} on Lake's runs, the plain classifier {plain.mean}")
    right_before = np.concatenate([p == r.answers for p, r in zip(plain_preds, data.lake, strict=True)])
    right_after = np.concatenate([p == r.answers for p, r in zip(best_preds, data.lake, strict=True)])
    gained, lost = int((~right_before & right_after).sum()), int((right_before & ~right_after).sum())
    run_plain = [float((p == r.answers).mean()) for p, r in zip(plain_preds, data.lake, strict=True)]
    run_tuned = [float((p == r.answers).mean()) for p, r in zip(best_preds, data.lake, strict=True)]
    minutes = (time.time() - t_start) / 60

    def pct(a: np.ndarray) -> str:
        m, ci = evaluate.mean_ci95(a)
        return f"{100 * m:.2f} ± {100 * ci:.2f}"

    rows = [
        f"| {s.label()}{' (**chosen**)' if s == best else ''} | {pct(results[s])} | "
        + (f"{paired(results[settings[0]], results[s])} |" if base is not None else "— |")
        for s in settings
    ]
    print("\nvalidation (held-out alphabets, 20-way 1-shot, 1 query/class)")
    print("\n".join(rows))
    print(f"\nchosen on validation: {best.label()}")
    print(f"Lake's 400 trials, plain ({artifact.distance.name} nearest prototype): {plain.percent()}")
    print(f"Lake's 400 trials, 0 fine-tuning steps: {zero.percent()}")
    print(f"Lake's 400 trials, fine-tuned ({best.label()}), transductive: {tuned.percent()}  "
          f"(+{gained} / −{lost} trials)")  # fmt: skip

    if best.steps == 0:
        verdict = (
            "No fine-tuning setting beat the plain classifier on the validation alphabets, so the setting "
            "chosen there is 0 steps and Lake's figure is unchanged: fine-tuning the classifier alone does "
            "not lift this model."
        )
    elif tuned.mean > plain.mean:
        verdict = (
            f"The setting chosen on validation lifts Lake's 400 trials from {100 * plain.mean:.2f}% to "
            f"{100 * tuned.mean:.2f}% (transductive: each run's 20 unlabelled queries are read together); "
            f"per run the change is {paired(np.array(run_plain), np.array(run_tuned))} points."
        )
    else:
        verdict = (
            f"The setting chosen on validation does not improve Lake's 400 trials: {100 * plain.mean:.2f}% "
            f"plain, {100 * tuned.mean:.2f}% fine-tuned (transductive). Fine-tuning the classifier alone on "
            "frozen embeddings does not lift this model on Lake's runs."
        )
    head = "logits −‖z − w_c‖², the model's training logits" if metric == "euclidean" else "logits 10 · cos(z, w_c)"
    cli = (
        "python -m training evaluate --artifact model/artifacts/omniglot --finetune "
        f"--finetune-steps {best.steps} --finetune-lr {best.lr:g} --finetune-entropy {best.entropy_weight:g}"
    )
    md = f"""# Omniglot: transductive support-set fine-tuning of the shipped model's classifier

Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{command}` on {cpu_name()} / Python
{platform.python_version()} in {minutes:.0f} min (one thread, beside a training job on the other cores).

Model: `{artifact.path.relative_to(REPO) if artifact.path.is_relative_to(REPO) else artifact.path}`
{artifact.card.version} ({artifact.card.distance}, {artifact.card.embedding_dim}-d), embedder frozen (ONNX; the
torch weights are not shipped), every image embedded once through `model.artifact`. Per episode,
`training.finetune.finetune` (Dhillon et al. 2020, classifier only) starts a {metric} head at the class
prototypes ({head}) and takes Adam steps on CE(support) +
entropy weight · mean entropy of the query predictions. All queries of an episode are classified together:
**transductive (uses the run's 20 unlabelled queries)**. 0 steps is the plain nearest-prototype classifier
(checked: identical accuracy on validation and on Lake's runs).

## 1. Choice on validation alphabets (never on Lake's runs)

The {cfg.val_groups} background alphabets held out by the shipped run (card: seed {cfg.seed}, val_groups
{cfg.val_groups}, rebuilt with `split_by_group`): {", ".join(data.val_group_names)}. {n_way}-way 1-shot
episodes within one alphabet, 1 query per class (Lake's layout), {args.episodes} episodes, seed {args.seed};
the plain classifier scores {plain_val.percent()} on them through `evaluate.episodes`. Accuracy in % ± 95% CI
over episodes; the last column is the paired difference from 0 steps on the same episodes.

| setting | validation accuracy % | vs 0 steps (points) |
|---|---|---|
{chr(10).join(rows)}

Chosen: **{best.label()}** (best validation mean; ties go to fewer steps).

## 2. Lake's 400 trials (20 runs × 20-way 1-shot, within alphabet), measured once with that choice

| classifier | accuracy % (± 95% CI over runs) |
|---|---|
| plain: nearest prototype by {artifact.distance.name} distance (`evaluate --artifact`) | {plain.percent()} |
| fine-tuning, 0 steps (must equal plain) | {zero.percent()} |
| fine-tuning, {best.label()}, transductive | **{tuned.percent()}** |

Trials changed by fine-tuning: {gained} wrong → right, {lost} right → wrong; per-run change
{paired(np.array(run_plain), np.array(run_tuned))} points.

{verdict}

The same classifier on every protocol of the artifact:
`{cli}`.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    (args.out.with_suffix(".json")).write_text(
        json.dumps(
            {
                "chosen": best.__dict__,
                "validation": {s.label(): float(results[s].mean()) for s in settings},
                "lake_plain": plain.__dict__,
                "lake_zero_steps": zero.__dict__,
                "lake_finetuned": tuned.__dict__,
                "gained": gained,
                "lost": lost,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
