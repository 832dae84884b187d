"""The training loop, readable top to bottom: data → net → objective → steps → validate → checkpoint.

Two kinds of objective share the loop: embedding objectives (`TrainModule`: an embedder and a loss over
its embeddings) and episodic methods (`training.episodic.EpisodicTrainModule`: matching nets, relation
nets, MAML, which read whole episodes). Both are `forward(x, y) -> (loss, batch accuracy)`.

Runs on CUDA (bf16 autocast) when present, else the CPU; under `torchrun` it trains data-parallel
(DDP: NCCL on GPUs, gloo on CPUs), each rank drawing its own batches. Resumes from `last.pt` in the
run folder; keeps the best validation state in `best.pt`; writes `config.json`, `metrics.json` and
`curve.png` there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model import distances
from model.nets import ConvNetConfig, Embedder, EmbedderConfig, KochNetConfig, ResNetConfig
from model.preprocess import PreprocessSpec
from training import evaluate, samplers
from training.augment import build_augment
from training.config import TrainConfig
from training.data import ImageSet, split_by_group
from training.data.folder import load_identity_folder
from training.data.omniglot import load_omniglot, load_vinyals
from training.distances import to_pml
from training.episodic import EpisodicTrainModule, build_episodic_method, exported_embedder_state, predict_fn
from training.losses import KochLoss
from training.objectives import Objective, build_objective

LOG = logging.getLogger(__name__)


class TrainModule(nn.Module):
    """Embedder + objective in one module, so DDP syncs the loss's parameters (Koch's head,
    softmax class weights, a distillation projection) with the net's.

    forward(x N×C×H×W, y N, targets N×D' or None) -> (loss, batch 1-NN accuracy); targets are the teacher's
    embeddings of the batch's images, required where the objective distils."""

    def __init__(self, embedder: Embedder, objective: Objective) -> None:
        super().__init__()
        self.embedder = embedder
        self.loss = objective.loss
        self.miner = objective.miner
        self.distill = objective.distill
        self.distance = objective.distance

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embedder(x)
        # Mining and the loss in float32 even under bf16 autocast: margins, prototype means and
        # softmax logits at scale 64 lose too much in bf16.
        with torch.autocast(emb.device.type, enabled=False):
            emb = emb.float()
            loss = emb.new_zeros(())
            if self.loss is not None:
                tuples = self.miner(emb, y) if self.miner is not None else None
                loss = loss + self.loss(emb, y, tuples)
            if self.distill is not None:
                if targets is None:
                    raise ValueError("this objective distils a teacher: pass the batch's teacher targets")
                loss = loss + self.distill(emb, targets)
        return loss, torch.tensor(batch_nn_accuracy(emb, y, self.distance))

    def head_parameters(self) -> list[nn.Parameter]:
        """The loss side's parameters (class weights, Koch's head, a distillation projection)."""
        return [p for m in (self.loss, self.distill) if m is not None for p in m.parameters()]

    def deployable_state(self) -> dict[str, torch.Tensor]:
        """The embedder's state with a learned loss-side scale (Koch's α) folded into `scale`."""
        state = {k: v.detach().clone() for k, v in self.embedder.state_dict().items()}
        if hasattr(self.loss, "fold_scale"):
            state["scale"] = self.loss.fold_scale().to(state["scale"])
        return state


@dataclass
class RunState:
    """Everything `last.pt` carries besides module and optimiser states."""

    step: int = 0
    best_val: float = -1.0
    best_step: int = 0
    stale_evals: int = 0
    elapsed_s: float = 0.0
    images_seen: int = 0
    early_stopped: bool = False  # a finished run started again must not train on
    history: list[dict[str, float]] = field(default_factory=list)


def preprocess_spec(cfg: TrainConfig) -> PreprocessSpec:
    return PreprocessSpec(
        size=(cfg.image_size, cfg.image_size),
        channels=cfg.channels,
        invert=cfg.data == "omniglot",
        resample=cfg.resample,
    )


def embedder_config(cfg: TrainConfig, objective_flags: tuple[bool, bool]) -> EmbedderConfig:
    l2, scaled = objective_flags
    bb: dict[str, Any]
    if cfg.net == "convnet":
        bb = ConvNetConfig(cfg.channels, cfg.image_size, cfg.widths, cfg.embedding_dim or None).__dict__
    elif cfg.net == "koch":
        bb = KochNetConfig(1, cfg.image_size, cfg.koch_channels, cfg.koch_kernels, cfg.koch_hidden).__dict__  # type: ignore[arg-type]
    else:
        bb = ResNetConfig(
            in_channels=cfg.channels,
            input_size=cfg.image_size,
            stem_width=cfg.stem_width,
            stem_stride=cfg.stem_stride,
            widths=cfg.resnet_widths,
            blocks=cfg.resnet_blocks,
            embedding_dim=cfg.embedding_dim or 128,
            dropout=cfg.dropout,
        ).__dict__
    return EmbedderConfig(backbone=cfg.net, backbone_config=dict(bb), l2_normalize=l2, scaled=scaled)


def load_data(cfg: TrainConfig, face: dict[str, Any] | None = None) -> tuple[ImageSet, ImageSet | None]:
    """(train, validation) sets. Validation holds out whole groups; rotations only augment training.
    face: faces only, the crop recipe (card-format face block; default: model.faces's defaults)."""
    spec = preprocess_spec(cfg)
    if cfg.data == "omniglot" and cfg.split == "vinyals":
        # Vinyals et al.'s class split: its own validation classes; every rotation is already a class.
        train = load_vinyals(Path(cfg.data_root), "train", spec, Path(cfg.cache_dir))
        return train, load_vinyals(Path(cfg.data_root), "val", spec, Path(cfg.cache_dir))
    if cfg.data == "omniglot":
        full = load_omniglot(Path(cfg.data_root), "background", spec, Path(cfg.cache_dir))
    elif cfg.data == "faces":
        from training.data.face_cache import face_training_set  # OpenCV and the face archives: only here

        full = face_training_set(cfg, spec, face)
    else:
        full = load_identity_folder(Path(cfg.data_root), spec, min_per_class=2)
    train, val = split_by_group(full, cfg.val_groups, cfg.seed) if cfg.val_groups else (full, None)
    if cfg.rotations and cfg.data == "omniglot":  # a rotated face is not another person
        train = train.with_rotations()
    return train, val


def build_sampler(cfg: TrainConfig, train: ImageSet, rank: int) -> samplers.Sampler:
    if cfg.sampler == "episodes":
        return samplers.EpisodeSampler(
            train.labels,
            cfg.n_way,
            cfg.k_shot,
            cfg.q_query,
            cfg.seed,
            rank,
            groups=train.groups,
            within_group=cfg.within_group,
            episodes=cfg.episodes_per_batch,
        )
    if cfg.sampler == "pairs":
        return samplers.PairSampler(train.labels, cfg.pairs, cfg.seed, rank)
    return samplers.MPerClassSampler(
        train.labels,
        cfg.m_per_class,
        cfg.classes_per_batch,
        cfg.seed,
        rank,
        groups=train.groups,
        within_group=cfg.within_group,
    )


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate at `cfg.steps`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def torch_embed_fn(embedder: nn.Module, device: torch.device, batch: int = 512) -> evaluate.EmbedFn:
    """An EmbedFn (NumPy in, NumPy out) over a torch embedder, in eval mode, without gradients."""

    def embed(images: np.ndarray) -> np.ndarray:
        was_training = embedder.training
        embedder.eval()
        with torch.no_grad():
            out = [
                embedder(torch.from_numpy(images[i : i + batch]).to(device)).float().cpu().numpy()
                for i in range(0, len(images), batch)
            ]
        embedder.train(was_training)
        return np.concatenate(out)

    return embed


def validation_accuracy(
    embed: evaluate.EmbedFn | None,
    val: ImageSet,
    cfg: TrainConfig,
    distance: str | None,
    n_episodes: int,
    seed: int,
    predict: evaluate.PredictFn | None = None,
) -> evaluate.Accuracy:
    """The validation protocol: `val_way`-way 1-shot episodes on the held-out groups, each episode within
    one group (alphabet) for Omniglot. Measures `embed` with `distance`, or an episodic `predict`."""
    n_way = min(cfg.val_way, val.num_classes)
    within = val.groups if cfg.data == "omniglot" else None
    if predict is not None:
        return evaluate.episodes_predict(predict, val.images, val.labels, n_way, 1, 1, n_episodes, seed, within)
    if embed is None or distance is None:
        raise ValueError("give an embed function and its distance, or a predict function")
    emb = evaluate.embed_all(embed, val.images)
    return evaluate.episodes(emb, val.labels, n_way, 1, 1, n_episodes, distances.get(distance), seed, within)


def validate(module: TrainModule | EpisodicTrainModule, val: ImageSet, cfg: TrainConfig, device: torch.device) -> float:
    """Validation accuracy during training (fixed episodes, seed 1234): of the deployable embedder, or of
    the episodic method's own predictions."""
    if isinstance(module, EpisodicTrainModule):
        predict = predict_fn(module.method, device)
        return validation_accuracy(None, val, cfg, None, cfg.val_episodes, 1234, predict=predict).mean
    embedder = Embedder(module.embedder.config).to(device)
    embedder.load_state_dict(module.deployable_state())
    embed = torch_embed_fn(embedder, device)
    return validation_accuracy(embed, val, cfg, module.distance, cfg.val_episodes, 1234).mean


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def plot_curve(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [h["loss"] for h in history], color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["train_acc"] for h in history], color="tab:orange", alpha=0.6, label="batch acc")
    val = [(h["step"], h["val_acc"]) for h in history if not math.isnan(h.get("val_acc", math.nan))]
    if val:
        ax2.plot(*zip(*val, strict=True), color="tab:green", marker="o", label="validation acc")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    ax.set_title(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {torch.get_num_threads()} of {os.cpu_count()} cores"


def batch_nn_accuracy(emb: torch.Tensor, y: torch.Tensor, distance: str) -> float:
    """Leave-one-out 1-NN accuracy inside the batch: a cheap, objective-independent progress signal."""
    with torch.no_grad():
        measure = to_pml(distance)
        d = measure(emb.float())
        d = -d if measure.is_inverted else d  # similarities: larger is closer
        d.fill_diagonal_(float("inf"))
        return (y[d.argmin(1)] == y).float().mean().item()


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train as `cfg` says; return the run folder. Safe to call again on an interrupted run: it resumes.

    command: the command line that asked for this run, recorded in metrics.json (and so in the card).
    """
    # --- processes and device
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = cuda, but torch sees no CUDA device (use device = auto or cpu)")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    is_main = rank == 0
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    run_dir = Path(cfg.out_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)

    # --- data, net, objective, sampler, optimiser
    # Rank 0 builds the dataset cache alone; the others read it once it is complete.
    if distributed and not is_main:
        dist.barrier()
    face = None
    if cfg.data == "faces":
        # The crop recipe is fixed when a run starts (and kept on resume), recorded for export and serving:
        # a later change of model.faces's defaults must not change what this model is evaluated on.
        from training.data.face_cache import default_face_block, read_face_block

        face = (
            read_face_block(run_dir)
            if (run_dir / "face_block.json").is_file()
            else default_face_block(detector=cfg.face_detector)
        )
        if is_main:
            (run_dir / "face_block.json").write_text(json.dumps(face, indent=2))
    train_set, val_set = load_data(cfg, face)
    if distributed and is_main:
        dist.barrier()
    images = torch.from_numpy(train_set.images).to(device)  # uint8 on the device: 4× smaller than float
    labels = torch.from_numpy(train_set.labels).to(device)
    targets = None if train_set.targets is None else torch.from_numpy(train_set.targets).to(device)
    module: TrainModule | EpisodicTrainModule
    distance: str | None  # what serving would compare embeddings with; None: no embedding to serve
    if cfg.episodic:
        method = build_episodic_method(cfg)
        module = EpisodicTrainModule(method, cfg.n_way, cfg.k_shot, cfg.q_query, cfg.episodes_per_batch)
        distance = exported_embedder_state(cfg, method).get("distance")
        groups = [{"params": module.parameters(), "lr": cfg.lr}]
    else:
        dim = embedder_config(cfg, (False, False)).embedding_dim  # the output transform does not change D
        target_dim = train_set.targets.shape[1] if train_set.targets is not None else 0
        if cfg.distill_views == "consistent":
            from training.teacher_net import DESCRIPTOR_DIM

            target_dim = DESCRIPTOR_DIM
        objective = build_objective(cfg, dim, train_set.num_classes, target_dim)
        ecfg = embedder_config(cfg, (objective.l2_normalize, objective.scaled))
        module, distance = TrainModule(Embedder(ecfg), objective), objective.distance
        # A loss with parameters may ask for its own rate (KochLoss.lr_multiplier); LambdaLR scales both groups.
        head_lr = cfg.lr * getattr(module.loss, "lr_multiplier", 1.0)
        groups = [{"params": module.embedder.parameters(), "lr": cfg.lr}]
        if module.head_parameters():
            groups.append({"params": module.head_parameters(), "lr": head_lr, "weight_decay": 0.0})
    # channels_last: oneDNN's and cuDNN's fastest conv layout (1.4x on the 2-core CPU, measured).
    module.to(device, memory_format=torch.channels_last)
    model: nn.Module = nn.parallel.DistributedDataParallel(module) if distributed else module
    sampler = build_sampler(cfg, train_set, rank)
    augment = build_augment(cfg)
    consistent = None  # the teacher describing each step's views (training/consistent.py)
    if cfg.distill_views == "consistent":
        from training.consistent import build_consistent_teacher

        consistent = build_consistent_teacher(cfg, train_set, augment, face, device, run_dir, rank)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))

    # --- resume
    state = RunState()
    miner_rng: torch.Generator | None = getattr(getattr(module, "miner", None), "generator", None)  # negatives
    last = run_dir / "last.pt"
    if last.is_file():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        saved = TrainConfig.from_saved(ckpt["train_config"]).to_dict()
        changed = sorted(k for k, v in cfg.to_dict().items() if saved[k] != v)
        if set(changed) - {"steps", "max_minutes", "patience", "val_every"}:
            raise ValueError(f"{last} was trained with a different config ({changed}); use another --name")
        module.load_state_dict(ckpt["module"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = RunState(**ckpt["state"])
        if miner_rng is not None and ckpt.get("miner_rng") is not None:
            miner_rng.set_state(ckpt["miner_rng"])
        LOG.info("resumed %s at step %d", run_dir, state.step)
    if is_main:
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def checkpoint() -> None:
        if is_main:
            save_atomic(
                {
                    "module": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "state": state.__dict__,
                    "train_config": cfg.to_dict(),
                    "miner_rng": miner_rng.get_state() if miner_rng is not None else None,
                },
                last,
            )

    def save_best(val_acc: float) -> None:
        """The deployable embedder alone (Koch's head folded in), with what export needs to describe it;
        for an episodic method, its whole state (`training.episodic.load_episodic` rebuilds it), plus
        the embedder's keys where it predicts by an embedding distance."""
        if isinstance(module, EpisodicTrainModule):
            best = {
                "episodic": module.method.state_dict(),
                "preprocess": preprocess_spec(cfg).to_dict(),
                "train_config": cfg.to_dict(),
                "step": state.step,
                "val_acc": val_acc,
                "head_bias": None,
                **exported_embedder_state(cfg, module.method),
            }
            save_atomic(best, run_dir / "best.pt")
            return
        best = {
            "model_config": ecfg.to_dict(),
            "model": module.deployable_state(),
            "distance": distance,
            "preprocess": preprocess_spec(cfg).to_dict(),
            "train_config": cfg.to_dict(),
            "step": state.step,
            "val_acc": val_acc,
            # Koch's head: p(same) = σ(bias − d) on the folded L1 distance, so d = bias is p = 0.5.
            "head_bias": float(module.loss.bias.detach()) if isinstance(module.loss, KochLoss) else None,
        }
        save_atomic(best, run_dir / "best.pt")

    # --- the loop
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    started = time.time()
    elapsed_before = state.elapsed_s
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.name, disable=not is_main, dynamic_ncols=True)
    stop = state.early_stopped
    window: list[tuple[float, float]] = []
    tick, seen_at_tick = time.time(), 0
    model.train()
    try:
        while state.step < cfg.steps and not stop:
            idx = torch.from_numpy(sampler.batch(state.step)).to(device)
            x = images[idx].float().div_(255.0)
            y = labels[idx]
            batch_targets = None if targets is None else targets[idx]
            if augment is not None:
                gen.manual_seed(cfg.seed * 1_000_003 + rank * 7919 + state.step)  # resumable augmentation
                if consistent is not None:
                    x, batch_targets = consistent.views(idx, x, gen)
                else:
                    x = augment(x, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss, batch_acc = model(x, y) if batch_targets is None else model(x, y, batch_targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            state.step += 1
            state.images_seen += len(idx)
            seen_at_tick += len(idx)
            window.append((loss.item(), batch_acc.item()))
            ips = seen_at_tick / max(1e-9, time.time() - tick)
            bar.set_postfix(loss=f"{window[-1][0]:.3f}", acc=f"{window[-1][1]:.2f}", img_s=f"{ips:.0f}")
            bar.update(1)

            if state.step % cfg.val_every == 0 or state.step == cfg.steps:
                state.elapsed_s = elapsed_before + time.time() - started
                val_acc = math.nan
                if val_set is not None and is_main:
                    val_acc = validate(module, val_set, cfg, device)
                    if val_acc > state.best_val + (cfg.val_min_delta if state.best_step else 0.0):
                        state.best_val, state.best_step, state.stale_evals = val_acc, state.step, 0
                        save_best(val_acc)
                    else:
                        state.stale_evals += 1
                mean_loss, mean_acc = (float(np.mean(v)) for v in zip(*window, strict=True))
                state.history.append(
                    {
                        "step": state.step,
                        "loss": mean_loss,
                        "train_acc": mean_acc,
                        "val_acc": val_acc,
                        "images_per_s": ips,
                        "elapsed_s": state.elapsed_s,
                        "lr": sched.get_last_lr()[0],
                    }
                )
                window, tick, seen_at_tick = [], time.time(), 0
                if is_main:
                    tqdm.write(
                        f"step {state.step}: loss {mean_loss:.4f}  batch-acc {mean_acc:.3f}  "
                        f"val {val_acc:.4f} (best {state.best_val:.4f} @ {state.best_step})  {ips:.0f} img/s"
                    )
                stop = bool(cfg.patience) and state.stale_evals >= cfg.patience
                out_of_time = cfg.max_minutes > 0 and time.time() - started > 60 * cfg.max_minutes
                if distributed:  # every rank must leave the loop together, on rank 0's decision
                    flag = torch.tensor([stop, out_of_time], dtype=torch.int32, device=device)
                    dist.broadcast(flag, 0)
                    stop, out_of_time = bool(flag[0]), bool(flag[1])
                state.early_stopped = stop
                checkpoint()
                if out_of_time:
                    LOG.info("max_minutes reached at step %d; run the same command again to resume", state.step)
                    break
    except KeyboardInterrupt:
        # Ctrl-C: keep every finished step. The same command resumes here.
        state.elapsed_s = elapsed_before + time.time() - started
        checkpoint()
        LOG.warning("interrupted at step %d; checkpoint saved to %s", state.step, last)
        raise
    bar.close()

    # --- results
    finished = stop or state.step >= cfg.steps
    in_sync = True
    if distributed:
        # DDP keeps replicas identical by construction; check it, since a silent divergence (a buffer
        # updated on one rank only, say) would make rank 0's checkpoint unrepresentative.
        flat = torch.cat([p.detach().float().flatten() for p in module.parameters()])
        lo, hi = flat.clone(), flat.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        in_sync = bool(torch.equal(lo, hi))
    if is_main:
        if val_set is None:  # nothing to select on: the final weights are the best we have
            save_best(math.nan)
        metrics = {
            "finished": finished,
            "command": command,
            "early_stopped": stop,
            "steps": state.step,
            "best_val_acc": state.best_val,
            "best_step": state.best_step,
            "validation": f"{cfg.val_way}-way 1-shot within-group episodes on {cfg.val_groups} held-out groups",
            "train_time_s": state.elapsed_s,
            "images_seen": state.images_seen,
            "hardware": hardware(device),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "ranks_in_sync": in_sync,
            "distance": distance,
            "history": state.history,
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if state.history:
            plot_curve(state.history, run_dir / "curve.png", cfg.name)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return run_dir
