"""Training configuration: defaults → experiment file (TOML) → command-line overrides, resolved once
into a frozen `TrainConfig`. Unknown keys fail loudly; the resolved config is saved in the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# "distill": no labelled loss, only the teacher's (distill_regression / distill_relational; training/teacher.py).
EMBEDDING_OBJECTIVES = ("koch", "contrastive", "triplet", "proto", "normsoftmax", "arcface", "cosface", "distill")
# Methods that read a whole episode (training/episodic.py); of these, plain matching nets still predict by
# a distance between embeddings, so their embedder exports like an embedding objective's.
EPISODIC_OBJECTIVES = ("matching", "matching_fce", "relation", "maml", "fomaml")
EMBEDDING_EXPORTABLE_EPISODIC = ("matching",)
OBJECTIVES = EMBEDDING_OBJECTIVES + EPISODIC_OBJECTIVES
FACE_SETS = ("lfw", "orl", "yaleb")
SAMPLERS = ("m_per_class", "episodes", "pairs")


@dataclass(frozen=True)
class TrainConfig:
    # --- run
    name: str = "omniglot-proto"  # run folder under out_dir; also the default artifact name
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # --- data
    data: str = "omniglot"  # omniglot | folder | faces
    data_root: str = "../shared/data"  # omniglot, faces: the shared data folder; folder: root/<class>/<image>
    cache_dir: str = ".cache"
    # omniglot: "lake" = images_background with val_groups alphabets held out (Lake's protocol);
    # "vinyals" = splits/vinyals train.txt, validated on val.txt (rotations are already classes there).
    split: str = "lake"
    image_size: int = 28
    resample: str = "box"
    rotations: bool = True  # Omniglot only: each 90° rotation of a character is a new class
    augment: bool = True  # Koch's affine distortions
    val_groups: int = 4  # groups (Omniglot alphabets; folder: identities) held out for early stopping
    channels: int = 1  # input channels: 1 grey, 3 RGB (faces only; Omniglot is 1-bit ink)
    hflip: bool = False  # random horizontal flips (faces: a mirrored face is the same person)
    # faces, RGB: the chance that a training crop is shown in grey (luminance in all three channels), so that
    # black-and-white photos (badges, ORL, Yale B) look like the colour ones the net mostly sees
    grey_p: float = 0.0
    # faces: which sets, and which LFW people training may see ("all"; "view1" = peopleDevTrain only;
    # "foldK" = every View 2 fold but K, so that fold K can be scored honestly).
    face_sets: str = "lfw,orl,yaleb"
    face_protocol: str = "all"
    holdout_subjects: int = 10  # faces: ORL subjects never trained on, for held-out EER / identification
    # faces: the detector that makes the training crops (and that the exported card serves with). "haar" is
    # what every shipped face model so far was trained on, so the recorded commands reproduce them;
    # "blazeface" (model/blazeface.py) is what 2.2.0 serves with, three times faster, and makes training crops
    # that match its serving crops (measured on the shipped recipe: bench/results/faces.md, "Update (2.2.0)").
    face_detector: str = "haar"
    # --- net
    net: str = "convnet"  # convnet | koch | resnet
    widths: tuple[int, ...] = (64, 64, 64, 64)
    embedding_dim: int = 0  # convnet: 0 = flattened features, else a linear projection to this size
    koch_channels: tuple[int, ...] = (64, 128, 128, 256)
    koch_kernels: tuple[int, ...] = (10, 7, 4, 4)
    koch_hidden: int = 4096
    stem_width: int = 32  # resnet
    stem_stride: int = 2
    resnet_widths: tuple[int, ...] = (48, 96, 128)
    resnet_blocks: tuple[int, ...] = (1, 2, 1)
    dropout: float = 0.2
    # --- objective
    objective: str = "proto"  # one of OBJECTIVES
    margin: float = 0.2  # contrastive negative margin / triplet margin / cosface additive margin
    mining: str = "semihard"  # triplet: semihard | hard | all
    temperature: float = 0.05  # normsoftmax
    softmax_scale: float = 64.0  # arcface, cosface: the logit scale s
    fce_steps: int = 5  # matching_fce: processing steps K of the query's attention LSTM
    relation_hidden: int = 8  # relation: hidden units of the relation module's fully connected layer
    inner_steps: int = 1  # maml, fomaml: inner SGD steps on the support set in training
    inner_steps_eval: int = 3  # maml, fomaml: inner steps at validation and test
    inner_lr: float = 0.4  # maml, fomaml: the inner loop's step size α
    # Distillation from a face teacher (faces only; training/teacher.py), added to the objective's loss:
    # regression pulls each embedding to its image's normalised teacher embedding (1 - cosine); relational
    # matches the batch's pairwise cosine similarities to the teacher's.
    teacher: str = ""  # "" (none) or "dlib"
    distill_regression: float = 0.0  # weight of the regression term
    distill_relational: float = 0.0  # weight of the relational term
    # Which view of a face the teacher describes (training/consistent.py): "fixed", its descriptor of the clean
    # original photo, computed once (the student's augmented crop is pulled to it); "consistent", its
    # descriptor of the very augmented view the student sees (Beyer et al. 2022), from the PyTorch port of
    # the teacher (training/teacher_net.py) on our own aligned chip.
    distill_views: str = "fixed"
    # consistent only: 0, a fresh view every step with the teacher run on the batch (for a GPU: it costs the
    # CPU ~12 ms per image); K > 0, K views per image drawn once, their teacher descriptors computed at the
    # start (kept in the run folder) and one drawn per image and step.
    teacher_pool: int = 0
    # --- sampler
    sampler: str = "episodes"  # one of SAMPLERS
    n_way: int = 60
    k_shot: int = 5
    q_query: int = 5
    within_group: float = 0.0  # episodes, m_per_class: probability that an episode / batch draws from one alphabet
    episodes_per_batch: int = 1  # episodic objectives: episodes per optimiser step (MAML's meta-batch)
    classes_per_batch: int = 64
    m_per_class: int = 4
    pairs: int = 128
    # --- optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    steps: int = 5000
    warmup_steps: int = 100
    grad_clip: float = 5.0
    # --- validation and stopping
    val_every: int = 250
    val_episodes: int = 400
    val_way: int = 20
    patience: int = 8  # evaluations without improvement before early stopping (0 = never)
    val_min_delta: float = 0.0  # an evaluation improves only if it beats the best by more than this
    max_minutes: float = 0.0  # stop (resumably) after this much wall time in this process (0 = none)

    def __post_init__(self) -> None:
        checks = {
            "objective": (self.objective, OBJECTIVES),
            "sampler": (self.sampler, SAMPLERS),
            "net": (self.net, ("convnet", "koch", "resnet")),
            "data": (self.data, ("omniglot", "folder", "faces")),
            "channels": (self.channels, (1, 3)),
            "device": (self.device, ("auto", "cpu", "cuda")),
            "mining": (self.mining, ("semihard", "hard", "all")),
            "split": (self.split, ("lake", "vinyals")),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
        positive = {
            "steps": self.steps,
            "val_every": self.val_every,
            "val_episodes": self.val_episodes,
            "k_shot": self.k_shot,
            "q_query": self.q_query,
            "image_size": self.image_size,
            "classes_per_batch": self.classes_per_batch,
            "pairs": self.pairs,
            "episodes_per_batch": self.episodes_per_batch,
            "fce_steps": self.fce_steps,
            "relation_hidden": self.relation_hidden,
            "inner_steps": self.inner_steps,
            "inner_steps_eval": self.inner_steps_eval,
        }
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if self.n_way < 2 or self.val_way < 2:
            raise ValueError("n_way and val_way must be >= 2")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.widths:
            raise ValueError("widths needs at least one block")
        unknown_sets = set(self.face_set_names) - set(FACE_SETS)
        if unknown_sets or not self.face_set_names:
            raise ValueError(f"face_sets must be a comma list of {FACE_SETS}, got {self.face_sets!r}")
        if self.face_detector not in ("haar", "blazeface"):
            raise ValueError(f"face_detector must be haar or blazeface, got {self.face_detector!r}")
        folds = {f"fold{k}" for k in range(1, 11)}
        if self.face_protocol not in {"all", "view1"} | folds:
            raise ValueError(f"face_protocol must be all, view1 or fold1..fold10, got {self.face_protocol!r}")
        if self.net == "koch" and self.channels != 1:
            raise ValueError("the Koch net takes one channel")
        if not 0.0 <= self.grey_p <= 1.0:
            raise ValueError(f"grey_p is a probability: in [0, 1], got {self.grey_p}")
        if self.grey_p > 0 and (self.data != "faces" or self.channels != 3):
            raise ValueError("grey_p greys colour face crops: it needs data = faces and channels = 3")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.inner_lr <= 0:
            raise ValueError(f"inner_lr must be > 0, got {self.inner_lr}")
        if self.split == "vinyals" and self.data != "omniglot":
            raise ValueError("split = vinyals is an Omniglot split")
        if self.episodic:
            if self.sampler != "episodes":
                raise ValueError(f"the {self.objective} objective reads whole episodes: it needs sampler = episodes")
            if self.objective in ("maml", "fomaml") and self.val_way != self.n_way:
                raise ValueError(f"MAML's head has n_way = {self.n_way} outputs: val_way must equal it")
            if self.objective in ("relation", "maml", "fomaml") and self.net != "convnet":
                # Both build their papers' own conv stacks from `widths`; another backbone would be ignored.
                raise ValueError(f"{self.objective} builds its own network from widths: leave net = convnet")
        distilling = self.distill_regression > 0 or self.distill_relational > 0
        if self.teacher not in ("", "dlib"):
            raise ValueError(f"teacher must be '' or 'dlib', got {self.teacher!r}")
        if self.distill_regression < 0 or self.distill_relational < 0:
            raise ValueError("distill_regression and distill_relational are weights: >= 0")
        if distilling != bool(self.teacher):
            raise ValueError("distillation needs both a teacher and a weight > 0 (distill_regression/relational)")
        if self.teacher and (self.data != "faces" or self.episodic):
            raise ValueError("a teacher distils into a face embedder: data = faces, an embedding objective")
        if self.distill_views not in ("fixed", "consistent"):
            raise ValueError(f"distill_views must be 'fixed' or 'consistent', got {self.distill_views!r}")
        if self.distill_views == "consistent" and not (self.teacher and self.augment):
            raise ValueError("distill_views = consistent describes augmented views: it needs a teacher and augment")
        if self.teacher_pool < 0 or (self.teacher_pool and self.distill_views != "consistent"):
            raise ValueError("teacher_pool (>= 0) is the number of cached views of distill_views = consistent")
        if self.objective == "distill" and not distilling:
            raise ValueError("objective = distill trains on the teacher alone: set teacher and a distill weight")
        if not self.episodic and self.episodes_per_batch != 1:
            raise ValueError("episodes_per_batch > 1 is for episodic objectives (embedding losses see one episode)")

    @property
    def episodic(self) -> bool:
        """Whether the objective reads whole episodes (training/episodic.py) rather than embeddings."""
        return self.objective in EPISODIC_OBJECTIVES

    @property
    def face_set_names(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.face_sets.split(",") if s.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> TrainConfig:
        """A config saved by an earlier run (checkpoint or config.json). A field it lacks was added since,
        and had its default then; JSON lists become tuples again."""
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        return cls(**{**cls().to_dict(), **fixed})


def as_current(saved: dict[str, Any]) -> dict[str, Any]:
    """A config saved by a run of any age (a record's, a card's, a config.json) as this code saves one: fields
    added since take their defaults, in JSON form (lists for tuples). Two configs of one recipe then compare
    equal, whatever fields were added between the runs that saved them."""
    return json.loads(json.dumps(TrainConfig.from_saved(saved).to_dict()))


def _coerce(name: str, typ: Any, value: Any) -> Any:
    """Turn TOML or command-line values into the field's type, or raise a ValueError naming the key."""
    origin = typing.get_origin(typ)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(v) for v in items if str(v).strip())
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if origin in (typing.Union, types.UnionType):
            typ = next(t for t in typing.get_args(typ) if t is not type(None))
        if typ is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError("not an integer")  # int(5.7) would silently truncate, int(True) would pass
        return typ(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad value for {name}: {value!r} ({e})") from None


def _types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def resolve(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then `file` (flat TOML keys), then `overrides`. Unknown keys raise ValueError."""
    types_ = _types()
    values: dict[str, Any] = {}
    for source, layer in (
        (str(file), tomllib.loads(Path(file).read_text()) if file else {}),
        ("overrides", overrides or {}),
    ):
        unknown = sorted(set(layer) - set(types_))
        if unknown:
            raise ValueError(f"unknown config keys in {source}: {unknown}")
        values.update({k: _coerce(k, types_[k], v) for k, v in layer.items()})
    return TrainConfig(**values)


def add_override_flags(parser: argparse.ArgumentParser) -> None:
    """One `--key value` flag per config field, defaulting to "not given" so the file's value stands."""
    group = parser.add_argument_group("config overrides (each defaults to the experiment file's value)")
    for name in _types():
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", default=None, metavar="V")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
