"""Export a run's best checkpoint as a versioned artifact: `<out>/<name>/{model.onnx, card.json}`.

The card's metrics are measured on the exported ONNX graph through `model.artifact` (what serving runs),
not on the torch checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.artifact import ModelCard
from model.artifact import load as load_artifact
from model.nets import Embedder, EmbedderConfig
from training.data.face_cache import read_face_block
from training.face_eval import recipe_view2
from training.teacher import teacher_card

LOG = logging.getLogger(__name__)

OMNIGLOT_TERMS = (
    "Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015), MIT licence; "
    "cite Lake et al. 2015 when using this model."
)


def load_checkpoint_embedder(path: Path, tta_shift: int = 0, tta_flip: bool = False) -> tuple[Embedder, dict[str, Any]]:
    """Rebuild the embedder of a `best.pt` from its saved config alone; returns (module in eval mode, ckpt).

    tta_shift: test-time shift averaging for the rebuilt module (see EmbedderConfig); weights unchanged.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dataclasses.replace(EmbedderConfig.from_dict(ckpt["model_config"]), tta_shift=tta_shift, tta_flip=tta_flip)
    embedder = Embedder(cfg)
    embedder.load_state_dict(ckpt["model"])
    return embedder.eval(), ckpt


def export_onnx(embedder: Embedder, path: Path, opset: int = 18) -> None:
    """Write `embedder` as ONNX: input `images` (batch dimension dynamic), output `embeddings`."""
    size, channels = embedder.config.input_size, embedder.config.in_channels
    dummy = torch.rand(2, channels, size, size)
    torch.onnx.export(
        embedder.float().to(memory_format=torch.contiguous_format),
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}},
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


FACE_TERMS = (
    "Trained on LFW (Huang et al. 2007; deep-funneled images, Huang, Mattar, Lee & Learned-Miller 2012; a "
    "research benchmark from UMass Amherst), AT&T / ORL (credit: Olivetti Research Laboratory; Samaria & Harter "
    "1994) and Extended Yale B (research use; Georghiades, Belhumeur & Kriegman 2001; Lee, Ho & Kriegman 2005). "
    "The model inherits their terms: research use, with those citations."
)


def face_training_description(cfg: dict[str, Any]) -> str:
    protocol = {
        "all": "every LFW person",
        "view1": "LFW View 1 training people only (peopleDevTrain.txt: 4,038 people)",
    }.get(cfg["face_protocol"], f"LFW people of every View 2 fold but {cfg['face_protocol']}")
    outside = (
        "; with outside data: distilled from a public-domain face teacher (training.teacher) "
        "whose targets were computed on these same images"
        if cfg.get("teacher")
        else "; no outside data"
    )
    # Runs made before `face_detector` existed were all trained on Haar crops.
    detector = {"haar": "OpenCV's Haar cascades", "blazeface": "BlazeFace"}[cfg.get("face_detector", "haar")]
    return (
        f"face sets {cfg['face_sets']} from {cfg['data_root']}, aligned by model.faces ({detector}); "
        f"{protocol}; ORL minus {cfg['holdout_subjects']} held-out subjects; Extended Yale B (cropped){outside}"
    )


def tta_description(tta_shift: int, tta_flip: bool) -> str:
    parts = []
    if tta_shift:
        parts.append(f"mean embedding over {(2 * tta_shift + 1) ** 2} shifts of ±{tta_shift} px")
    if tta_flip:
        parts.append("mean over the image and its mirror")
    return "; ".join(parts) or "none"


def measure_face_artifact(
    artifact: Any, cfg: dict[str, Any], data_root: Path, cache_dir: Path
) -> tuple[dict[str, Any], Any]:
    """Face protocols (training.face_eval) measured on the exported graph: (metrics, calibration or None)."""
    from training.data.face_cache import load_face_crops
    from training.data.faces import load_lfw_protocol
    from training.face_eval import EVAL_SETS, face_metrics

    crops = load_face_crops(Path(data_root), Path(cache_dir), EVAL_SETS, artifact.card.face, channels=cfg["channels"])
    protocol = load_lfw_protocol(Path(data_root))
    metrics, calibration, _ = face_metrics(artifact.embed, crops, protocol, cfg, artifact.spec, artifact.card.distance)
    return metrics, calibration


def export_run(
    run_dir: Path,
    name: str,
    version: str,
    out_root: Path,
    data_root: Path,
    episodes: int,
    command: str,
    tta_shift: int = 0,
    tta_flip: bool = False,
    cache_dir: Path = Path(".cache"),
    fold_records: Path | None = None,
) -> Path:
    """Export `run_dir/best.pt` to `out_root/name`, measure it there, write the card. Returns the folder.

    fold_records: bench/faces.py's run records; a face card gains the LFW View 2 rows of this run's recipe
    found there (`training.face_eval.recipe_view2`), none if there are none."""
    from training.benchmark import evaluate_artifact
    from training.episodic import ExportRefused, export_refusal

    refusal = export_refusal(torch.load(Path(run_dir) / "best.pt", map_location="cpu", weights_only=False))
    if refusal:
        raise ExportRefused(f"cannot export {run_dir}: {refusal}")
    embedder, ckpt = load_checkpoint_embedder(Path(run_dir) / "best.pt", tta_shift, tta_flip)
    cfg = ckpt["train_config"]
    faces = cfg["data"] == "faces"
    metrics_file = Path(run_dir) / "metrics.json"
    run_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    dest = Path(out_root) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tmp_dir = Path(tmp)
        export_onnx(embedder, tmp_dir / "model.onnx")
        reduced = cfg["net"] == "koch" and cfg["image_size"] != 105
        thresholds = {}
        if ckpt.get("head_bias") is not None:
            thresholds["koch_head"] = {
                "distance": ckpt["head_bias"],
                "meaning": "Koch's learned head: p(same) = sigmoid(distance_threshold - l1 distance); "
                "pairs closer than this threshold have p(same) > 0.5",
                "fitted_on": "training pairs (the head's bias, learned with the net)",
            }
        distilled = {}
        if cfg.get("teacher"):
            distilled = {
                "teacher": teacher_card(
                    tuple(s for s in cfg["face_sets"].split(",") if s), cfg.get("distill_views", "fixed")
                ),
                "distill": {
                    "regression": cfg["distill_regression"],
                    "relational": cfg["distill_relational"],
                    "views": cfg.get("distill_views", "fixed"),
                    "teacher_pool": cfg.get("teacher_pool", 0),
                },
            }
        card = ModelCard(
            name=name,
            version=version,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            embedding_dim=embedder.embedding_dim,
            distance=ckpt["distance"],
            preprocess=ckpt["preprocess"],
            metrics={},
            data={
                "train": face_training_description(cfg)
                if faces
                else f"{cfg['data']} {cfg['data_root']}: images_background (30 alphabets, 964 characters)"
                if cfg["data"] == "omniglot"
                else f"identity folder {cfg['data_root']}",
                "rotations_as_classes": cfg["rotations"] and cfg["data"] == "omniglot",
                "validation": run_metrics.get("validation", ""),
                "terms": FACE_TERMS
                if faces
                else OMNIGLOT_TERMS
                if cfg["data"] == "omniglot"
                else "as the training images' terms",
            },
            face=read_face_block(run_dir) if faces else {},
            command=command,
            thresholds=thresholds,
            training={
                "objective": cfg["objective"],
                **distilled,
                "net": cfg["net"] + (" (reduced resolution)" if reduced else ""),
                "image_size": cfg["image_size"],
                "test_time_augmentation": tta_description(tta_shift, tta_flip),
                "steps": run_metrics.get("steps"),
                "best_step": run_metrics.get("best_step"),
                "best_val_acc": run_metrics.get("best_val_acc"),
                "train_time_s": run_metrics.get("train_time_s"),
                "hardware": run_metrics.get("hardware"),
                "train_command": run_metrics.get("command", ""),
                "config": cfg,
            },
        )
        (tmp_dir / "card.json").write_text(card.to_json())  # load_artifact below reads it
        # Measure what serving will run: the ONNX graph through model.artifact.
        if cfg["data"] == "omniglot":
            metrics = evaluate_artifact(load_artifact(tmp_dir), data_root, episodes)
        elif faces:
            metrics, calibration = measure_face_artifact(load_artifact(tmp_dir), cfg, data_root, cache_dir)
            metrics |= recipe_view2(fold_records, cfg) if fold_records else {}
            if calibration is not None:
                card = dataclasses.replace(card, thresholds={**thresholds, "verification": calibration.to_dict()})
        else:  # no standard protocol for an arbitrary identity folder: say so rather than invent one
            metrics = {"validation": {"protocol": run_metrics.get("validation", ""),
                                      "accuracy": run_metrics.get("best_val_acc")}}  # fmt: skip
        (tmp_dir / "card.json").write_text(dataclasses.replace(card, metrics=metrics).to_json())
        _swap_into(tmp_dir, dest)
    LOG.info("exported %s", dest)
    return dest


def _swap_into(tmp_dir: Path, dest: Path) -> None:
    """Replace the artifact folder `dest` by the complete folder `tmp_dir` (a TemporaryDirectory's path)."""
    tmp_dir.chmod(0o755)  # mkdtemp made it owner-only; an artifact is meant to be read by others
    # Swap by renames (same filesystem): a failure at any point leaves a complete artifact behind.
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        dest.rename(old)
    tmp_dir.rename(dest)
    tmp_dir.mkdir()  # TemporaryDirectory cleans up a folder at its own path
    if old.exists():
        shutil.rmtree(old)


def recard_face_artifact(
    path: Path,
    version: str,
    data_root: Path,
    command: str,
    detector_params: dict[str, Any] | None = None,
    cache_dir: Path = Path(".cache"),
    detector: str | None = None,
    fold_records: Path | None = None,
) -> Path:
    """Give the face artifact at `path` another detector (same weights), re-measure it, rewrite its card.

    The net keeps its weights; what changes is how serving finds and aligns a face: the card's
    `face.detector` becomes `detector` ("haar" or "blazeface"; None keeps the card's) with that detector's
    current default parameters and `detector_params` on top. Every face metric and the calibration are
    measured again through the new detector (they depend on the crops it makes), the version becomes
    `version`, `command` is appended to the card's command, and the crop recipe the net was trained on is kept
    in `training.face_recipe_trained` (the first one, on repeated re-cards), since serving crops now differ
    slightly from training crops. `fold_records`: as `export_run`'s, matched against the card's training config."""
    from model.faces import detector_block

    art = load_artifact(path)
    card = art.card
    if not card.face:
        raise ValueError(f"{path} is not a face artifact (its card has no face block)")
    face = {**card.face, "detector": detector_block(detector or card.face["detector"]["name"], detector_params)}
    training = {"face_recipe_trained": card.face, **card.training}
    card = dataclasses.replace(
        card,
        version=version,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        face=face,
        command=f"{card.command} && {command}",
        training=training,
        metrics={},
    )
    dest = Path(path)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tmp_dir = Path(tmp)
        shutil.copy2(dest / "model.onnx", tmp_dir / "model.onnx")
        (tmp_dir / "card.json").write_text(card.to_json())
        cfg = card.training["config"]
        metrics, calibration = measure_face_artifact(load_artifact(tmp_dir), cfg, data_root, cache_dir)
        metrics |= recipe_view2(fold_records, cfg) if fold_records else {}
        thresholds = dict(card.thresholds)
        if calibration is not None:
            thresholds["verification"] = calibration.to_dict()
        (tmp_dir / "card.json").write_text(dataclasses.replace(card, metrics=metrics, thresholds=thresholds).to_json())
        _swap_into(tmp_dir, dest)
    LOG.info("re-carded %s as version %s", dest, version)
    return dest
