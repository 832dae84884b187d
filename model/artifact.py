"""The model artifact: `model.onnx` + `card.json`, read with ONNX Runtime alone (no torch).

Layout: `model/artifacts/<name>/{model.onnx, card.json}`. The ONNX graph takes `images`, float32
N×C×H×W in [0, 1] after the card's `preprocess` (see `model.preprocess.prepare`), and returns
`embeddings`, float32 N×D. The card is the contract: whatever serving needs to know is in it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model import distances
from model.calibration import Calibration
from model.preprocess import PreprocessSpec, prepare_batch

LOG = logging.getLogger(__name__)

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
CARD_SCHEMA = 1
REQUIRED = ("name", "version", "created", "embedding_dim", "distance", "preprocess", "metrics", "data", "command")


class ArtifactError(ValueError):
    """The artifact folder is missing a file or its card breaks the contract."""


@dataclass(frozen=True)
class ModelCard:
    """What an artifact promises. `metrics` say what was measured and on which protocol; `data` what the
    model was trained on and under which terms; `command` the exact command that produced it."""

    name: str
    version: str
    created: str
    embedding_dim: int
    distance: str
    preprocess: dict[str, Any]
    metrics: dict[str, Any]
    data: dict[str, Any]
    command: str
    training: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=lambda: {"input": "images", "output": "embeddings"})
    # Face models only: how a photo becomes the aligned crop `preprocess` starts from. `align` is a
    # `model.faces.AlignSpec` dict, `detector` {"name", "params"}, `min_face` the smallest usable box side.
    face: dict[str, Any] = field(default_factory=dict)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        distances.get(self.distance)  # raises on an unknown distance
        PreprocessSpec.from_dict(self.preprocess)  # raises on a malformed spec
        if self.embedding_dim < 1:
            raise ArtifactError(f"embedding_dim must be positive, got {self.embedding_dim}")
        if "verification" in self.thresholds:
            cal = self.calibration
            if cal is not None and cal.distance != self.distance:
                raise ArtifactError(f"calibration is for {cal.distance}, the card's distance is {self.distance}")
        if self.face:
            from model.faces import AlignSpec  # OpenCV: only for face cards

            missing = {"align", "detector", "min_face"} - set(self.face)
            if missing:
                raise ArtifactError(f"card's face block lacks {sorted(missing)}")
            AlignSpec.from_dict(self.face["align"])  # raises on a malformed spec

    @property
    def calibration(self) -> Calibration | None:
        """The verification thresholds and score mapping (face models), or None."""
        d = self.thresholds.get("verification")
        return Calibration.from_dict(d) if d is not None else None

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocess)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ArtifactError(f"card is missing {missing}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArtifactError(f"card has unknown keys {unknown}")
        if d.get("schema", CARD_SCHEMA) > CARD_SCHEMA:
            raise ArtifactError(f"card schema {d['schema']} is newer than this code ({CARD_SCHEMA})")
        return cls(**d)


class Artifact:
    """A loaded artifact: its card and an ONNX Runtime session.

    embed(images N×C×H×W float32 in [0, 1]) -> N×D float32; embed_images(PIL images) prepares them first.
    """

    def __init__(self, path: Path | str, threads: int = 0) -> None:
        import onnxruntime as ort  # imported here so that `import model.artifact` stays cheap

        self.path = Path(path)
        card_file, onnx_file = self.path / "card.json", self.path / "model.onnx"
        for f in (card_file, onnx_file):
            if not f.is_file():
                raise ArtifactError(f"artifact {self.path} has no {f.name}")
        try:
            self.card = ModelCard.from_dict(json.loads(card_file.read_text()))
        except ArtifactError:
            raise
        except (json.JSONDecodeError, TypeError, KeyError, ValueError) as e:
            raise ArtifactError(f"{card_file}: {type(e).__name__}: {e}") from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.card.io["input"]
        self.output_name = self.card.io["output"]
        # The card and the graph must agree, or every embedding served would be silently wrong.
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.input_name not in inputs or self.output_name not in outputs:
            raise ArtifactError(f"card names {self.card.io} but the graph has inputs {list(inputs)} "
                                f"and outputs {list(outputs)}")  # fmt: skip
        width = outputs[self.output_name].shape[-1]
        if isinstance(width, int) and width != self.card.embedding_dim:
            raise ArtifactError(f"card says embedding_dim {self.card.embedding_dim}, the graph outputs {width}")
        self.distance = distances.get(self.card.distance)
        self.spec = self.card.spec
        LOG.info(
            "loaded artifact %s %s (%d-d, %s)",
            self.card.name,
            self.card.version,
            self.card.embedding_dim,
            self.card.distance,
        )

    def embed(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """float32 N×C×H×W in [0, 1] (shape per the card) -> float32 N×D."""
        c, (h, w) = self.spec.channels, self.spec.size
        if images.ndim != 4 or images.shape[1:] != (c, h, w):
            raise ValueError(f"expected N×{c}×{h}×{w} images, got {images.shape}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        out = [
            self.session.run([self.output_name], {self.input_name: images[i : i + batch]})[0]
            for i in range(0, len(images), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.card.embedding_dim), np.float32)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """PIL images -> N×D, through the card's preprocessing."""
        return self.embed(prepare_batch(images, self.spec))


def load(path: Path | str, threads: int = 0) -> Artifact:
    """Load `path` (a folder with model.onnx and card.json)."""
    return Artifact(path, threads)
