"""Command line: `python -m training {train,evaluate,export,recard} ...`.

python -m training train --config experiments/omniglot_proto.toml [--steps 2000 --lr 3e-4 ...]
torchrun --nproc_per_node 2 -m training train --config ...      # data-parallel
python -m training evaluate --checkpoint runs/omniglot-proto/best.pt
python -m training evaluate --artifact model/artifacts/omniglot
python -m training evaluate --artifact model/artifacts/omniglot --finetune     # transductive fine-tuning
python -m training export --run runs/omniglot-proto --name omniglot
python -m training recard --artifact model/artifacts/faces --version 2.1.0   # same weights, current detector
python -m training recard --artifact model/artifacts/faces --version 2.2.0 --detector blazeface
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from training.config import add_override_flags, overrides_from_args, resolve

# `evaluate --finetune` defaults: of the grid's settings with steps > 0, the best on the shipped Omniglot
# model's validation alphabets (bench/results/omniglot_finetune.md; 75.26% vs 75.33% for 0 steps, 500
# episodes: no setting beat the plain classifier there). Never chosen on Lake's runs.
FINETUNE_STEPS, FINETUNE_LR, FINETUNE_ENTROPY = 10, 1e-3, 0.0
# Where bench/faces.py records every run it measured (the View 2 folds of a recipe among them), committed.
FOLD_RECORDS = Path("bench/results/runs")
FOLD_RECORDS_HELP = "bench/faces.py's run records: a face card gains the LFW View 2 rows of its recipe found there"


def is_face_model(checkpoint: Path | None, artifact: Path | None) -> bool:
    """Whether the model to evaluate is a face model (its card has a face block, or it trained on faces)."""
    if artifact is not None:
        card = artifact / "card.json"
        return card.is_file() and bool(json.loads(card.read_text()).get("face"))
    if checkpoint is not None and checkpoint.is_file():
        import torch

        return torch.load(checkpoint, map_location="cpu", weights_only=False)["train_config"].get("data") == "faces"
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train (or resume) a run")
    p_train.add_argument("--config", type=Path, help="experiment file (TOML, flat keys of TrainConfig)")
    add_override_flags(p_train)

    p_eval = sub.add_parser("evaluate", help="Lake's runs and N-way K-shot episodes")
    src = p_eval.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a run's best.pt (torch)")
    src.add_argument("--artifact", type=Path, help="an exported artifact folder (ONNX Runtime, no torch)")
    src.add_argument("--pixels", action="store_true", help="the raw-pixel 1-NN baseline")
    p_eval.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p_eval.add_argument("--episodes", type=int, default=1000)
    p_eval.add_argument("--json", type=Path, help="also write the results here")
    p_eval.add_argument("--tta-shift", type=int, default=0, help="with --checkpoint: test-time shift averaging")
    p_eval.add_argument("--tta-flip", action="store_true", help="with --checkpoint: test-time mirror averaging")
    p_eval.add_argument(
        "--validation",
        action="store_true",
        help="with --checkpoint: score the run's held-out validation groups instead "
        "(within-group 20-way 1-shot, 2,000 episodes): where inference options are chosen",
    )
    p_eval.add_argument(
        "--finetune",
        action="store_true",
        help="with --artifact: support-set fine-tuning of a classifier on the frozen embeddings of each "
        "run/episode (Dhillon et al. 2020, classifier only); transductive: it reads the episode's unlabelled "
        "queries. Defaults were chosen on the shipped model's validation alphabets (bench/omniglot_finetune.py)",
    )
    p_eval.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS, help="Adam steps (0 = plain)")
    p_eval.add_argument("--finetune-lr", type=float, default=FINETUNE_LR, help="the classifier's Adam rate")
    p_eval.add_argument(
        "--finetune-entropy",
        type=float,
        default=FINETUNE_ENTROPY,
        help="weight of the queries' mean prediction entropy",
    )
    p_eval.add_argument(
        "--finetune-metric",
        choices=("cosine", "euclidean"),
        help="the classifier's head (default: the card's distance, so that 0 steps is the plain evaluation)",
    )

    p_exp = sub.add_parser("export", help="write model/artifacts/<name>/{model.onnx, card.json}")
    p_exp.add_argument("--run", type=Path, required=True, help="run folder holding best.pt")
    p_exp.add_argument("--name", required=True)
    p_exp.add_argument("--version", default="1.0.0")
    p_exp.add_argument("--out", type=Path, default=Path("model/artifacts"))
    p_exp.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p_exp.add_argument("--episodes", type=int, default=1000)
    p_exp.add_argument("--tta-shift", type=int, default=0, help="test-time shift averaging in the graph (±px)")
    p_exp.add_argument("--tta-flip", action="store_true", help="test-time mirror averaging in the graph (faces)")
    p_exp.add_argument("--fold-records", type=Path, default=FOLD_RECORDS, help=FOLD_RECORDS_HELP)

    p_rec = sub.add_parser(
        "recard",
        help="give a face artifact the current detector defaults (same weights), re-measure it, bump its version",
    )
    p_rec.add_argument("--artifact", type=Path, required=True, help="the face artifact folder, rewritten in place")
    p_rec.add_argument("--version", required=True, help="the new version (the card's metrics change)")
    p_rec.add_argument(
        "--detector",
        choices=["haar", "blazeface"],
        default=None,
        help="the detector to serve with (default: the card's)",
    )
    p_rec.add_argument(
        "--detector-params", default="{}", help="JSON: HaarParams / BlazeFaceParams fields over the current defaults"
    )
    p_rec.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p_rec.add_argument("--fold-records", type=Path, default=FOLD_RECORDS, help=FOLD_RECORDS_HELP)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "matplotlib", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # their INFO lines bury ours

    if args.command == "train":
        from training.trainer import train

        try:
            cfg = resolve(args.config, overrides_from_args(args))
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        launcher = f"torchrun --nproc_per_node {world} -m training" if world > 1 else "python -m training"
        run_dir = train(cfg, command=f"{launcher} " + " ".join(shlex.quote(a) for a in argv))
        metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
        print(f"run folder: {run_dir}  best validation accuracy: {metrics.get('best_val_acc', float('nan')):.4f}")
        return 0

    if args.command == "evaluate":
        from training.benchmark import evaluate_source, evaluate_validation, format_results

        if args.tta_shift and args.checkpoint is None:
            parser.error("--tta-shift applies to --checkpoint (an artifact's shifts are in its graph)")
        if args.tta_shift < 0:
            parser.error("--tta-shift must be >= 0")
        if args.finetune and args.artifact is None:
            parser.error("--finetune applies to --artifact (an embedder measured from ONNX)")
        if args.finetune_steps < 0:
            parser.error("--finetune-steps must be >= 0")
        if is_face_model(args.checkpoint, args.artifact):
            if args.finetune:
                parser.error("--finetune applies to Omniglot-style few-shot artifacts, not to face models")
            from training.face_eval import evaluate_face_model

            results = evaluate_face_model(args.checkpoint, args.artifact, args.data_root, args.tta_flip)
            print(json.dumps(results, indent=2))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            return 0
        if args.validation:
            if args.checkpoint is None:
                parser.error("--validation needs --checkpoint")
            print(format_results(evaluate_validation(args.checkpoint, args.tta_shift)))
            return 0

        if args.finetune:
            from model.artifact import load as load_artifact
            from training.benchmark import evaluate_artifact
            from training.finetune import embedding_classifier

            artifact = load_artifact(args.artifact)
            metric = args.finetune_metric or artifact.card.distance
            if metric not in ("cosine", "euclidean"):
                parser.error(f"the card's distance is {metric}: give --finetune-metric cosine or euclidean")
            classifier = embedding_classifier(args.finetune_steps, args.finetune_lr, args.finetune_entropy, metric)
            results = evaluate_artifact(artifact, args.data_root, args.episodes, classifier)
            print(
                f"support-set fine-tuning, classifier only on frozen embeddings ({metric} head, "
                f"{args.finetune_steps} steps, lr {args.finetune_lr:g}, entropy weight {args.finetune_entropy:g}): "
                "transductive (uses the run's 20 unlabelled queries; each episode's queries likewise)"
            )
        else:
            results = evaluate_source(
                args.checkpoint, args.artifact, args.pixels, args.data_root, args.episodes, args.tta_shift
            )
        print(format_results(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0

    if args.command == "recard":
        from training.export import recard_face_artifact

        try:
            overrides = json.loads(args.detector_params)
            if not isinstance(overrides, dict):
                raise ValueError("--detector-params must be a JSON object")
            path = recard_face_artifact(
                args.artifact,
                args.version,
                args.data_root,
                "python -m training " + " ".join(shlex.quote(a) for a in argv),
                overrides,
                detector=args.detector,
                fold_records=args.fold_records,
            )
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
        print(f"re-carded {path}")
        return 0

    from training.episodic import ExportRefused
    from training.export import export_run

    command = "python -m training " + " ".join(shlex.quote(a) for a in argv)
    try:
        path = export_run(
            args.run,
            args.name,
            args.version,
            args.out,
            args.data_root,
            args.episodes,
            command,
            args.tta_shift,
            args.tta_flip,
            fold_records=args.fold_records,
        )
    except ExportRefused as e:  # a run of the wrong kind: a message, not a traceback
        parser.error(str(e))
    print(f"exported {path}")
    return 0
