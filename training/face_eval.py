"""The face protocols: LFW View 1 / View 2 pairs, end to end from raw photos, and ORL held-out subjects.

Everything takes an `EmbedFn` (float32 N×C×H×W in [0, 1] -> N×D, see `training.evaluate`), so a torch
checkpoint and an exported ONNX artifact are measured by the same code, and a `FaceCrops` (the aligned
crops of every image, `training.data.face_cache`).

LFW rules (../shared/data/README.md): the model scored on a split's test pairs has seen none of its
test people (the caller trains it so; `check_disjoint` refuses a run whose config says otherwise), and
the decision threshold is chosen on the split's threshold pairs (View 2: the other nine folds; View 1:
pairsDevTrain), never on the pairs being scored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import distances
from model.calibration import Calibration
from model.preprocess import PreprocessSpec
from training import verification
from training.config import as_current
from training.data.face_cache import FaceCrops
from training.data.faces import LFWProtocol, LFWSplit, Pair, lfw_member
from training.evaluate import Accuracy, EmbedFn

LOG = logging.getLogger(__name__)


def embed_floats(embed: EmbedFn, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Embed model-ready float32 N×C×H×W images in [0, 1] (`FaceCrops.model_input`, what serving's `prepare`
    gives) in batches: N×D. Not `evaluate.embed_all`, which takes uint8 and divides by 255."""
    if images.dtype != np.float32 or (len(images) and images.max() > 1.0):
        raise ValueError(f"expected float32 images in [0, 1], got {images.dtype} up to {images.max():.3g}")
    out = [embed(images[i : i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


EVAL_SETS = ("lfw", "orl")  # the sets the protocols score, whatever a model trained on


def lfw_key(name: str, index: int) -> str:
    """The `FaceCrops` key of LFW image `index` (1-based) of `name`."""
    return "lfw/" + lfw_member(name, index).split("/", 1)[1]


@dataclass(frozen=True)
class PairScores:
    """Values (card distance units) of a list of pairs. `usable` is False where a pair could not be scored
    end to end (no face found in one of its photos): such a pair is decided "not the same person", as the
    service would answer."""

    same: np.ndarray  # bool P
    values: np.ndarray  # float64 P
    usable: np.ndarray  # bool P


def embed_crops(
    embed: EmbedFn, crops: FaceCrops, keys: list[str], spec: PreprocessSpec, e2e: bool
) -> dict[str, np.ndarray]:
    """key -> D embedding for each key whose crop exists (`e2e`: the crop the service would make)."""
    rows = [crops.row(k) for k in keys]
    if e2e:
        rows = [r for r in rows if crops.e2e_ok[r]]
    rows = sorted(set(rows))
    emb = embed_floats(embed, crops.model_input(np.array(rows, dtype=np.int64), spec, e2e=e2e))
    return {crops.keys[r]: emb[i] for i, r in enumerate(rows)}


def score_pairs(
    embed: EmbedFn, crops: FaceCrops, pairs: tuple[Pair, ...], spec: PreprocessSpec, distance: str, e2e: bool = False
) -> PairScores:
    """Distances of LFW `pairs`. With `e2e`, from the crops detection + alignment make of the raw photos
    (the largest face, as the service picks it); a pair whose photo has no detected face is unusable."""
    dist = distances.get(distance)
    a_keys = [lfw_key(p.name_a, p.index_a) for p in pairs]
    b_keys = [lfw_key(p.name_b, p.index_b) for p in pairs]
    table = embed_crops(embed, crops, a_keys + b_keys, spec, e2e)
    usable = np.array([a in table and b in table for a, b in zip(a_keys, b_keys, strict=True)])
    d = len(next(iter(table.values())))
    zero = np.zeros(d, dtype=np.float32)
    a = np.stack([table.get(k, zero) for k in a_keys])
    b = np.stack([table.get(k, zero) for k in b_keys])
    values = verification.pair_values(a, b, dist).astype(np.float64)
    return PairScores(np.array([p.same for p in pairs]), values, usable)


def _finite(scores: PairScores, higher_is_closer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and values with each unusable pair's value replaced by one less close than every usable
    pair's, so ROC metrics count it as rejected at every threshold instead of failing on infinities."""
    v = scores.values.copy()
    ok = scores.usable
    if not ok.all():
        v[~ok] = v[ok].min() - 1.0 if higher_is_closer else v[ok].max() + 1.0
    return scores.same, v


def lfw_split_report(
    embed: EmbedFn, crops: FaceCrops, split: LFWSplit, spec: PreprocessSpec, distance: str, e2e: bool = False
) -> tuple[verification.VerificationReport, Calibration]:
    """Score `split.test_pairs` with the threshold chosen on `split.threshold_pairs` (both aligned crops,
    or both end to end). Returns the report and the calibration fitted on the threshold pairs."""
    hic = distances.get(distance).higher_is_closer
    fit = score_pairs(embed, crops, split.threshold_pairs, spec, distance, e2e)
    test = score_pairs(embed, crops, split.test_pairs, spec, distance, e2e)
    # The threshold and score mapping describe distances between faces; a photo without a face has none,
    # so they are fitted on the usable pairs only. The test accuracy still counts every pair.
    ok = fit.usable
    cal = verification.calibrate(
        fit.same[ok],
        fit.values[ok],
        distance,
        fitted_on=f"LFW {split.name} threshold pairs{' end to end' if e2e else ''}",
    )
    report = verification.verification_report(*_finite(test, hic), higher_is_closer=hic, threshold=cal.threshold)
    if not test.usable.all():
        LOG.info(
            "%s: %d of %d test pairs had a photo without a detected face",
            split.name,
            (~test.usable).sum(),
            len(test.usable),
        )
    return report, cal


def orl_heldout_report(
    embed: EmbedFn, crops: FaceCrops, subjects: list[str], spec: PreprocessSpec, distance: str, seed: int = 0
) -> tuple[verification.VerificationReport, Accuracy]:
    """ORL held-out `subjects`: every pair among their images (EER, AUC; oracle threshold, since no
    other ORL pairs exist to fit one) and one-shot identification over seeded rounds."""
    rows = np.array([i for i, k in enumerate(crops.keys) if k.startswith("orl/") and crops.identity[i] in subjects])
    if len(rows) == 0:
        raise ValueError(f"no ORL crops for subjects {subjects}")
    emb = embed_floats(embed, crops.model_input(rows, spec))
    labels = np.array([crops.identity[r] for r in rows])
    same, values = verification.all_pairs(emb, labels, distance)
    hic = distances.get(distance).higher_is_closer
    report = verification.verification_report(same, values.astype(np.float64), higher_is_closer=hic)
    ident = verification.one_shot_rounds(emb, labels, distance, rounds=20, seed=seed)
    return report, ident


def report_row(report: verification.VerificationReport) -> dict[str, Any]:
    d = report.to_dict()
    return {k: d[k] for k in ("accuracy", "auc", "eer", "tar_at_far", "threshold", "n_genuine", "n_impostor")}


def heldout_rows(crops: FaceCrops, identities: list[str]) -> np.ndarray:
    """Rows of `crops` whose identity is one of `identities`, in cache order (int64)."""
    wanted = set(identities)
    return np.array([i for i, who in enumerate(crops.identity) if who in wanted], dtype=np.int64)


def heldout_pairs(labels: np.ndarray, max_impostors: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, same): every same-person pair among `labels` (one identity per image) and up to `max_impostors`
    seeded random different-person pairs, as index arrays into `labels`. Seeded, so that any model scored
    on the same images in the same order is scored on the very same pairs."""
    genuine_a, genuine_b = [], []
    for who in np.unique(labels):
        idx = np.flatnonzero(labels == who)
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                genuine_a.append(idx[i])
                genuine_b.append(idx[j])
    rng = np.random.default_rng(seed)
    a = rng.integers(len(labels), size=2 * max_impostors)
    b = rng.integers(len(labels), size=2 * max_impostors)
    keep = labels[a] != labels[b]
    imp_a, imp_b = a[keep][:max_impostors], b[keep][:max_impostors]
    ia = np.concatenate([np.array(genuine_a, dtype=np.int64), imp_a])
    ib = np.concatenate([np.array(genuine_b, dtype=np.int64), imp_b])
    same = np.concatenate([np.ones(len(genuine_a), bool), np.zeros(len(imp_a), bool)])
    return ia, ib, same


def heldout_calibration(
    embed: EmbedFn,
    crops: FaceCrops,
    identities: list[str],
    spec: PreprocessSpec,
    distance: str,
    description: str,
    max_impostors: int = 200_000,
    seed: int = 0,
) -> tuple[Calibration, verification.VerificationReport]:
    """The card's calibration, fitted on people the model never trained on: every same-person pair among
    the images of `identities` and up to `max_impostors` seeded random different-person pairs (enough to
    support FAR 1e-4 when there are at least 10,000). Also the report on those pairs (threshold-free
    figures: AUC, EER, TAR at FARs down to 1e-4; its accuracy is at the oracle threshold)."""
    rows = heldout_rows(crops, identities)
    emb = embed_floats(embed, crops.model_input(rows, spec))
    ia, ib, same = heldout_pairs(np.array([crops.identity[r] for r in rows]), max_impostors, seed)
    values = verification.pair_values(emb[ia], emb[ib], distance).astype(np.float64)
    hic = distances.get(distance).higher_is_closer
    report = verification.verification_report(same, values, higher_is_closer=hic, fars=verification.CARD_FARS)
    return verification.calibrate(same, values, distance, fitted_on=description), report


def face_metrics(
    embed: EmbedFn, crops: FaceCrops, protocol: LFWProtocol, cfg: dict[str, Any], spec: PreprocessSpec, distance: str
) -> tuple[dict[str, Any], Calibration | None, dict[str, verification.VerificationReport]]:
    """Every number a face run is reported with, for the LFW split its config held out (`face_protocol`
    view1 or foldK; "all" trains on every LFW person, so it has no honest LFW number), and ORL's
    held-out subjects. Returns (metrics for the card / bench, the calibration for the card, reports by
    name for plots)."""
    metrics: dict[str, Any] = {}
    reports: dict[str, verification.VerificationReport] = {}
    calibration = None
    name = cfg["face_protocol"]
    if name != "all":
        split = protocol.view1_split() if name == "view1" else protocol.view2_split(int(name[4:]) - 1)
        for e2e in (False, True):
            report, _ = lfw_split_report(embed, crops, split, spec, distance, e2e=e2e)
            key = "lfw_" + split.name + ("_end_to_end" if e2e else "")
            reports[key] = report
            metrics[key] = report_row(report) | {
                "protocol": f"LFW {split.name}: {len(split.test_pairs)} test pairs, threshold chosen on "
                f"{len(split.threshold_pairs)} pairs of the training people"
                + (
                    ", scored from the raw 250×250 photos (largest detected face; none = 'different')"
                    if e2e
                    else ", scored from aligned crops"
                ),
            }
        calibration, held = heldout_calibration(
            embed,
            crops,
            [f"lfw/{p}" for p in split.test_people],
            spec,
            distance,
            f"LFW {split.name} test people ({len(split.test_people)} people never trained on): all same-person "
            "pairs and random different-person pairs, aligned crops",
        )
        reports["lfw_heldout_people"] = held
        metrics["heldout_people"] = report_row(held) | {
            "protocol": f"all same-person pairs and up to 200,000 random different-person pairs among the "
            f"{len(split.test_people)} LFW {split.name} test people (aligned crops)",
        }
    if cfg.get("holdout_subjects"):
        from training.data.face_cache import orl_heldout

        subjects = orl_heldout(cfg["holdout_subjects"], cfg["seed"])
        report, ident = orl_heldout_report(embed, crops, subjects, spec, distance)
        reports["orl_heldout"] = report
        metrics["orl_heldout"] = report_row(report) | {
            "one_shot_identification": ident.mean,
            "one_shot_identification_ci95": ident.ci95,
            "protocol": f"ORL subjects never trained on ({', '.join(s.split('/')[1] for s in subjects)}): every "
            "pair among their 10 images each (accuracy at the oracle threshold), and one-shot identification "
            "(one enrolled image per subject, the other 9 as probes, 20 seeded rounds)",
        }
    return metrics, calibration, reports


def evaluate_face_model(
    checkpoint: Path | None,
    artifact: Path | None,
    data_root: Path,
    tta_flip: bool = False,
    cache_dir: Path = Path(".cache"),
) -> dict[str, Any]:
    """`python -m training evaluate` for a face model: `face_metrics` from a torch checkpoint or an ONNX
    artifact, plus the calibration it would ship with."""
    from model.artifact import load as load_artifact
    from training.data.face_cache import load_face_crops, read_face_block
    from training.data.faces import load_lfw_protocol

    if artifact is not None:
        art = load_artifact(artifact)
        cfg, spec, distance, embed = art.card.training["config"], art.spec, art.card.distance, art.embed
    else:
        import torch

        from training.export import load_checkpoint_embedder
        from training.trainer import torch_embed_fn

        assert checkpoint is not None
        net, ckpt = load_checkpoint_embedder(checkpoint, tta_flip=tta_flip)
        cfg, spec, distance = ckpt["train_config"], PreprocessSpec.from_dict(ckpt["preprocess"]), ckpt["distance"]
        embed = torch_embed_fn(net.eval(), torch.device("cpu"))
    face = art.card.face if artifact is not None else read_face_block(Path(checkpoint).parent)  # type: ignore[arg-type]
    crops = load_face_crops(Path(data_root), cache_dir, EVAL_SETS, face, channels=cfg["channels"])
    metrics, calibration, _ = face_metrics(embed, crops, load_lfw_protocol(Path(data_root)), cfg, spec, distance)
    return {
        "source": str(artifact or checkpoint),
        "metrics": metrics,
        "calibration": calibration.to_dict() if calibration else None,
    }


VIEW2_FOLDS = 10
RECIPE_FIGURES = ("accuracy", "auc", "eer")


def recipe_view2(records: Path, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The LFW View 2 rows of the recipe `config` (a run's training config, as a card keeps it), from the fold
    records bench/faces.py leaves in `records` (`<name>.json`, one per measured run).

    A record counts if its config is `config` but for `name` and `face_protocol` (fold1..fold10): the same
    recipe, trained once per fold without that fold's people. Returns {} when none counts, else two rows,
    `lfw_view2_recipe` (aligned crops) and `lfw_view2_recipe_end_to_end` (the raw photos), each the mean over
    the folds measured of accuracy, AUC, EER and TAR at FAR 1e-2 (a fold's 600 pairs support nothing
    stricter), with `accuracy_std` (sample standard deviation; None for one fold), `folds` (fold number ->
    accuracy), `trained_on` (fold number -> the hardware its run trained on, from the record: folds of one
    recipe may have trained on different machines, e.g. some on a CPU and some on a GPU) and a `protocol` that
    says how many of the ten folds the mean covers. These are the recipe's figures, not the weights of the
    artifact whose card carries them; the protocol says so."""
    ignored = ("name", "face_protocol")
    # Both sides as today's code saves a config: a record or card made before a field was added still counts.
    recipe = {k: v for k, v in as_current(config).items() if k not in ignored}
    per_fold: dict[int, dict[str, dict[str, Any]]] = {}
    hardware: dict[int, str] = {}
    for path in sorted(Path(records).glob("*.json")):
        saved = json.loads(path.read_text())
        if "config" not in saved:
            continue
        cfg = as_current(saved["config"])
        protocol = str(cfg.get("face_protocol", ""))
        if not protocol.startswith("fold") or {k: v for k, v in cfg.items() if k not in ignored} != recipe:
            continue
        k = int(protocol[4:])
        key = f"lfw_view2-fold{k:02d}"
        per_fold[k] = {"": saved["metrics"][key], "_end_to_end": saved["metrics"][f"{key}_end_to_end"]}
        hardware[k] = str(saved.get("run", {}).get("hardware", "not recorded"))
    if not per_fold:
        LOG.info("no LFW View 2 fold records of this recipe in %s", records)
        return {}
    folds = sorted(per_fold)
    LOG.info("LFW View 2 of this recipe: folds %s recorded in %s", folds, records)
    measured = f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} ({len(folds)} of {VIEW2_FOLDS})"
    rows = {}
    for suffix, scored in (("", "aligned crops"), ("_end_to_end", "the raw 250×250 photos")):
        fold_rows = [per_fold[k][suffix] for k in folds]
        accuracies = [r["accuracy"] for r in fold_rows]
        rows[f"lfw_view2_recipe{suffix}"] = {
            **{f: float(np.mean([r[f] for r in fold_rows])) for f in RECIPE_FIGURES},
            "accuracy_std": float(np.std(accuracies, ddof=1)) if len(folds) > 1 else None,
            "tar_at_far": {"1e-2": float(np.mean([r["tar_at_far"]["1e-2"] for r in fold_rows]))},
            "folds": {str(k): a for k, a in zip(folds, accuracies, strict=True)},
            "trained_on": {str(k): hardware[k] for k in folds},
            "protocol": f"LFW View 2, this recipe trained once per fold without that fold's people, threshold "
            f"chosen on the other nine folds' pairs, 600 pairs per fold scored from {scored}: mean over "
            f"{measured} (bench/faces.py; these are the recipe's runs, not this artifact's weights)",
        }
    return rows
