"""Network definitions: shapes, configs that rebuild them, and test-time shift averaging."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model.nets import ConvNetConfig, Embedder, EmbedderConfig, KochNetConfig, ResNetConfig


@pytest.mark.parametrize(
    ("cfg", "size", "dim"),
    [
        (EmbedderConfig("convnet", {"input_size": 28}), 28, 64),
        (EmbedderConfig("convnet", {"input_size": 28, "widths": (8, 8, 8), "embedding_dim": 5}), 28, 5),
        (EmbedderConfig("koch", {"input_size": 35, "kernels": (4, 3, 2, 2), "hidden": 32}), 35, 32),
        (EmbedderConfig("koch", {"channels": (4, 4, 4, 4), "hidden": 8}), 105, 8),  # the paper's geometry
        (
            EmbedderConfig("resnet", {"input_size": 64, "widths": (8, 16), "blocks": (1, 2), "embedding_dim": 12}),
            64,
            12,
        ),
        (EmbedderConfig("resnet", {"input_size": 37, "stem_stride": 1, "widths": (8,), "blocks": (1,)}), 37, 128),
    ],
)
def test_output_shapes(cfg: EmbedderConfig, size: int, dim: int) -> None:
    net = Embedder(cfg).eval()
    assert net.embedding_dim == dim
    assert net(torch.rand(3, 1, size, size)).shape == (3, dim)


def test_config_survives_json_and_rebuilds_the_same_net() -> None:
    cfg = EmbedderConfig("koch", {"input_size": 35, "kernels": (4, 3, 2, 2), "hidden": 16}, scaled=True)
    again = EmbedderConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # tuples come back as lists
    assert again.backbone_dataclass() == cfg.backbone_dataclass()
    a, b = Embedder(cfg), Embedder(again)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 35, 35)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_geometry_errors() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        KochNetConfig(input_size=20).feature_side()
    with pytest.raises(ValueError, match="shrink"):
        ConvNetConfig(input_size=8, widths=(4, 4, 4, 4)).feature_dim()
    with pytest.raises(ValueError, match="must be non-empty and match"):
        ResNetConfig(widths=(8, 8), blocks=(1,))
    with pytest.raises(ValueError, match="shrink"):
        ResNetConfig(input_size=1, stem_stride=2).feature_side()
    with pytest.raises(ValueError, match="unknown backbone"):
        Embedder(EmbedderConfig("vit"))


def test_resnet_config_survives_json() -> None:
    cfg = EmbedderConfig(
        "resnet", ResNetConfig(input_size=32, widths=(8, 16), blocks=(1, 1)).__dict__, l2_normalize=True
    )
    again = EmbedderConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.backbone_dataclass() == cfg.backbone_dataclass()
    assert (again.in_channels, again.input_size, again.embedding_dim) == (1, 32, 128)


@pytest.mark.parametrize("shift", [0, 1])
def test_flip_tta_is_the_mean_over_mirrored_copies(shift: int) -> None:
    torch.manual_seed(0)
    cfg = EmbedderConfig("convnet", {"input_size": 12, "widths": (4, 4)}, l2_normalize=True, tta_shift=shift)
    plain = Embedder(cfg).eval()
    both = Embedder(dataclasses.replace(cfg, tta_flip=True)).eval()
    both.load_state_dict(plain.state_dict())
    x = torch.rand(3, 1, 12, 12)
    # Each view is embedded as usual (unit length here); their mean is normalised again.
    expected = torch.nn.functional.normalize(plain(x) + plain(x.flip(3)), dim=1)
    if shift == 0:
        torch.testing.assert_close(both(x), expected)
    # A mirrored image has the same flip-averaged embedding: the property that makes it worth its cost.
    torch.testing.assert_close(both(x.flip(3)), both(x))


@pytest.mark.parametrize("l2", [False, True])
def test_tta_is_the_mean_over_shifted_copies(l2: bool) -> None:
    torch.manual_seed(0)
    cfg = EmbedderConfig("convnet", {"input_size": 12, "widths": (4, 4)}, l2_normalize=l2)
    plain = Embedder(cfg).eval()
    tta = Embedder(dataclasses.replace(cfg, tta_shift=1)).eval()
    tta.load_state_dict(plain.state_dict())
    x = torch.rand(3, 1, 12, 12)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    views = [plain(padded[:, :, dy : dy + 12, dx : dx + 12]) for dy in range(3) for dx in range(3)]
    expected = torch.stack(views).mean(0)
    if l2:
        expected = torch.nn.functional.normalize(expected, dim=1)
    torch.testing.assert_close(tta(x), expected)
    assert not torch.allclose(tta(x), plain(x))  # the shifts do change the embedding
