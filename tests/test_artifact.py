"""The artifact contract: ONNX export equals torch, serving loads it without torch, the card validates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.artifact import ArtifactError, ModelCard
from model.artifact import load as load_artifact
from model.nets import Embedder, EmbedderConfig
from model.preprocess import PreprocessSpec
from training import evaluate
from training.data.omniglot import OneShotRun
from training.export import export_onnx
from training.losses import KochLoss
from training.objectives import Objective
from training.trainer import TrainModule, torch_embed_fn

REPO = Path(__file__).resolve().parents[1]


def card(**over: object) -> dict[str, object]:
    d: dict[str, object] = {
        "name": "t",
        "version": "0.0.1",
        "created": "2026-01-01T00:00:00+00:00",
        "embedding_dim": 8,
        "distance": "euclidean",
        "preprocess": PreprocessSpec().to_dict(),
        "metrics": {},
        "data": {},
        "command": "x",
    }
    d.update(over)
    return d


def write_artifact(net: Embedder, folder: Path, distance: str = "euclidean") -> Path:
    folder.mkdir(parents=True)
    export_onnx(net.eval(), folder / "model.onnx")
    (folder / "card.json").write_text(json.dumps(card(embedding_dim=net.embedding_dim, distance=distance)))
    return folder


@pytest.fixture(scope="module")
def koch_net() -> Embedder:
    torch.manual_seed(0)
    cfg = EmbedderConfig(
        "koch", {"input_size": 28, "kernels": (4, 3, 2, 2), "channels": (8, 8, 8, 8), "hidden": 16}, scaled=True
    )
    net = Embedder(cfg)
    # The paper's initialisation leaves an untrained net's sigmoid outputs nearly constant (near-ties in
    # every distance); spread the weights so that embeddings differ and predictions are decisive.
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    net.scale.copy_(torch.rand(16) + 0.1)
    return net.eval()


@pytest.mark.parametrize(
    ("backbone", "l2", "tta", "flip"),
    [
        ("convnet", False, 0, False),
        ("convnet", True, 0, False),
        ("convnet", False, 2, False),
        ("resnet", True, 0, True),
    ],
)
def test_onnx_matches_torch(tmp_path: Path, backbone: str, l2: bool, tta: int, flip: bool) -> None:
    torch.manual_seed(0)
    bb = {"input_size": 28, "widths": (8, 8, 8)} | ({"blocks": (1, 2, 1)} if backbone == "resnet" else {})
    cfg = EmbedderConfig(backbone, bb, l2_normalize=l2, tta_shift=tta, tta_flip=flip)
    net = Embedder(cfg).eval()
    if backbone == "resnet":  # non-trivial batch-norm statistics, so that eval mode is really exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    art = load_artifact(write_artifact(net, tmp_path / "a"))
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(art.embed(x), net(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    assert art.embed(x[:1]).shape == (1, net.embedding_dim)  # the batch dimension is dynamic


def test_evaluation_is_identical_from_onnx_and_from_torch(tmp_path: Path, koch_net: Embedder) -> None:
    rng = np.random.default_rng(1)
    runs = []
    for _ in range(3):
        support = rng.random((10, 1, 28, 28), dtype=np.float32)
        answers = rng.permutation(10)
        queries = np.clip(support[answers] + rng.normal(0, 0.05, support.shape).astype(np.float32), 0, 1)
        runs.append(OneShotRun(support, queries, answers))
    art = load_artifact(write_artifact(koch_net, tmp_path / "k", distance="l1"))
    from_onnx = evaluate.one_shot_runs(art.embed, runs, art.distance)
    from_torch = evaluate.one_shot_runs(torch_embed_fn(koch_net, torch.device("cpu")), runs, art.distance)
    assert from_onnx == from_torch
    assert from_onnx.mean > 0.3  # noisy copies of random images: well above the 0.1 of chance


def test_koch_head_folds_into_the_embedding() -> None:
    torch.manual_seed(0)
    cfg = EmbedderConfig("convnet", {"input_size": 28, "widths": (8, 8, 8)}, scaled=True)
    loss = KochLoss(8 * 3 * 3)
    torch.nn.init.normal_(loss.w)
    module = TrainModule(Embedder(cfg), Objective(loss, None, "l1", False, True)).eval()
    deployed = Embedder(cfg).eval()
    deployed.load_state_dict(module.deployable_state())
    x = torch.rand(4, 1, 28, 28)
    raw, folded = module.embedder(x), deployed(x)
    head = loss.distance(raw[:, None], raw[None, :])  # the training head's weighted L1
    plain = torch.cdist(folded, folded, p=1)  # what serving computes from the card's "l1"
    torch.testing.assert_close(plain, head.detach(), atol=1e-4, rtol=1e-4)


def test_serving_side_loads_without_torch(tmp_path: Path, koch_net: Embedder) -> None:
    folder = write_artifact(koch_net, tmp_path / "k", distance="l1")
    code = (
        "import sys, numpy as np; from model.artifact import load; a = load(sys.argv[1]);"
        "e = a.embed(np.zeros((2, 1, 28, 28), np.float32)); assert e.shape == (2, 16), e.shape;"
        "assert 'torch' not in sys.modules, 'serving imported torch'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_card_round_trip_and_validation(tmp_path: Path) -> None:
    c = ModelCard.from_dict(card())
    assert ModelCard.from_dict(json.loads(c.to_json())) == c
    assert c.spec == PreprocessSpec()
    with pytest.raises(ArtifactError, match="missing"):
        ModelCard.from_dict({k: v for k, v in card().items() if k != "distance"})
    with pytest.raises(ArtifactError, match="unknown keys"):
        ModelCard.from_dict(card(threshold=0.5))
    with pytest.raises(ValueError, match="unknown distance"):
        ModelCard.from_dict(card(distance="hamming"))
    (tmp_path / "card.json").write_text(json.dumps(card()))
    with pytest.raises(ArtifactError, match=r"no model\.onnx"):
        load_artifact(tmp_path)


def test_card_that_disagrees_with_the_graph_is_refused(tmp_path: Path, koch_net: Embedder) -> None:
    folder = write_artifact(koch_net, tmp_path / "k", distance="l1")
    good = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**good, "embedding_dim": 99}))
    with pytest.raises(ArtifactError, match="embedding_dim 99"):
        load_artifact(folder)
    (folder / "card.json").write_text(json.dumps({**good, "io": {"input": "pixels", "output": "embeddings"}}))
    with pytest.raises(ArtifactError, match="graph has inputs"):
        load_artifact(folder)
    (folder / "card.json").write_text(json.dumps({**good, "preprocess": {"channels": 1}}))
    with pytest.raises(ArtifactError, match="KeyError"):
        load_artifact(folder)


def test_artifact_refuses_images_of_the_wrong_shape(tmp_path: Path, koch_net: Embedder) -> None:
    art = load_artifact(write_artifact(koch_net, tmp_path / "k", distance="l1"))
    with pytest.raises(ValueError, match="expected N×1×28×28"):
        art.embed(np.zeros((2, 3, 28, 28), np.float32))
