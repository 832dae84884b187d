"""Losses against naive Python loops over tiny hand-built batches (float32 and float64, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from training.distances import to_pml
from training.losses import KochLoss, PrototypicalLoss
from training.miners import EpisodeSplit

DTYPES = [torch.float32, torch.float64]
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
# Episode layout (EpisodeSampler): 3-way 2-shot supports grouped by class, then 2 queries per class.
EPISODE_LABELS = torch.tensor([4, 4, 1, 1, 7, 7, 4, 4, 1, 1, 7, 7])


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rel_tol": 1e-5, "abs_tol": 1e-6} if dtype == torch.float32 else {"rel_tol": 1e-10, "abs_tol": 1e-12}


def _embeddings(n: int, dim: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


def _pair_tuple(pos: list[tuple[int, int]], neg: list[tuple[int, int]]) -> tuple[torch.Tensor, ...]:
    """(a1, p, a2, n) as pml lays pair tuples out."""
    return tuple(torch.tensor([pair[k] for pair in pairs]) for pairs in (pos, neg) for k in (0, 1))


def _koch(dim: int) -> KochLoss:
    loss = KochLoss(dim)
    with torch.no_grad():  # non-uniform weights, so a wrong per-dimension weighting would show
        loss.w.copy_(torch.linspace(-2.0, 1.0, dim))
        loss.bias.fill_(1.5)
    return loss


def _naive_koch(x: list[list[float]], loss: KochLoss, pos: list, neg: list) -> float:
    """p = σ(b − Σ α|x − y|) with α = softplus(w); binary cross-entropy, mean over all listed pairs."""
    alpha, bias = F.softplus(loss.w).detach().double().tolist(), loss.bias.item()
    terms = []
    for pairs, target in ((pos, 1.0), (neg, 0.0)):
        for i, j in pairs:
            d = sum(a * abs(xi - yi) for a, xi, yi in zip(alpha, x[i], x[j], strict=True))
            prob = 1.0 / (1.0 + math.exp(-(bias - d)))
            terms.append(-(target * math.log(prob) + (1 - target) * math.log(1 - prob)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("dtype", DTYPES)
def test_koch_loss_explicit_pairs(dtype: torch.dtype) -> None:
    emb, loss = _embeddings(8, 4, dtype), _koch(4)
    pos, neg = [(0, 1), (1, 2), (3, 4)], [(0, 3), (3, 5), (5, 0), (7, 4)]
    tup = _pair_tuple(pos, neg)
    got = loss(emb, LABELS, tup)
    want = _naive_koch(emb.double().tolist(), loss, pos, neg)
    assert got.dtype == dtype
    assert math.isclose(got.item(), want, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_koch_loss_all_pairs(dtype: torch.dtype) -> None:
    emb, loss = _embeddings(8, 4, dtype, seed=1), _koch(4)
    lab = LABELS.tolist()
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j]
    pos = [(i, j) for i, j in pairs if lab[i] == lab[j]]
    neg = [(i, j) for i, j in pairs if lab[i] != lab[j]]
    want = _naive_koch(emb.double().tolist(), loss, pos, neg)
    assert math.isclose(loss(emb, LABELS, None).item(), want, **_tol(dtype))


def test_koch_fold_scale_matches_distance() -> None:
    emb, loss = _embeddings(8, 4, torch.float32, seed=2).detach(), _koch(4)
    torch.testing.assert_close(loss.fold_scale(), F.softplus(loss.w).detach())
    assert not loss.fold_scale().requires_grad
    folded = emb * loss.fold_scale()
    l1 = (folded[:, None, :] - folded[None, :, :]).abs().sum(-1)
    torch.testing.assert_close(l1, loss.distance(emb[:, None, :], emb[None, :, :]).detach())


def test_koch_loss_empty_tuple_is_zero_with_grad() -> None:
    emb, empty = _embeddings(8, 4, torch.float32), torch.zeros(0, dtype=torch.long)
    out = _koch(4)(emb, LABELS, (empty, empty, empty, empty))
    assert out.item() == 0.0
    out.backward()
    assert emb.grad is not None


def _naive_proto(x: list[list[float]], lab: list[int], support: list[int], query: list[int], metric: str) -> float:
    classes = sorted({lab[i] for i in support})
    protos = {}
    for c in classes:
        members = [x[i] for i in support if lab[i] == c]
        protos[c] = [sum(col) / len(members) for col in zip(*members, strict=True)]

    def logit(q: list[float], p: list[float]) -> float:
        if metric == "euclidean":
            return -sum((a - b) ** 2 for a, b in zip(q, p, strict=True))
        dot = sum(a * b for a, b in zip(q, p, strict=True))
        return 10.0 * dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in p)))

    total = 0.0
    for i in query:
        logits = {c: logit(x[i], protos[c]) for c in classes}
        top = max(logits.values())
        lse = top + math.log(sum(math.exp(v - top) for v in logits.values()))
        total += lse - logits[lab[i]]
    return total / len(query)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_prototypical_loss(dtype: torch.dtype, metric: str) -> None:
    emb = _embeddings(12, 5, dtype, seed=3)
    support, query = EpisodeSplit(k_shot=2)(emb, EPISODE_LABELS)
    assert support.tolist() == list(range(6))
    got = PrototypicalLoss(metric)(emb, EPISODE_LABELS, (support, query))
    want = _naive_proto(emb.double().tolist(), EPISODE_LABELS.tolist(), support.tolist(), query.tolist(), metric)
    assert got.dtype == dtype
    assert math.isclose(got.item(), want, **_tol(dtype))


def test_prototypical_loss_errors() -> None:
    emb, loss = _embeddings(12, 5, torch.float32), PrototypicalLoss()
    with pytest.raises(ValueError, match="EpisodeSplit"):
        loss(emb, EPISODE_LABELS, None)
    split = EpisodeSplit(2)(emb, EPISODE_LABELS)
    with pytest.raises(ValueError, match="N×D"):
        loss(emb[:10], EPISODE_LABELS, split)
    with pytest.raises(ValueError, match="N×D"):
        loss(emb[:, None, :], EPISODE_LABELS, split)
    with pytest.raises(ValueError, match="metric"):
        PrototypicalLoss("l1")


def _contrastive(margin: float) -> pml_losses.ContrastiveLoss:
    # exactly as training/objectives.py builds it
    return pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin, distance=to_pml("euclidean"))


def _naive_contrastive(x: list[list[float]], margin: float, pos: list, neg: list) -> tuple[float, int]:
    """pml's AvgNonZeroReducer: mean of the pos-pair losses > 0, plus mean of the neg-pair losses > 0."""

    def dist(i: int, j: int) -> float:
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], x[j], strict=True)))

    pos_terms = [t for t in (max(0.0, dist(i, j)) for i, j in pos) if t > 0]
    neg_all = [max(0.0, margin - dist(i, j)) for i, j in neg]
    neg_terms = [t for t in neg_all if t > 0]

    def mean(v: list[float]) -> float:
        return sum(v) / len(v) if v else 0.0

    return mean(pos_terms) + mean(neg_terms), len(neg_all) - len(neg_terms)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_all_pairs(dtype: torch.dtype) -> None:
    emb = F.normalize(_embeddings(8, 4, dtype, seed=4), dim=1)
    lab, margin = LABELS.tolist(), 1.2
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j]
    pos = [(i, j) for i, j in pairs if lab[i] == lab[j]]
    neg = [(i, j) for i, j in pairs if lab[i] != lab[j]]
    want, zero_negs = _naive_contrastive(emb.double().tolist(), margin, pos, neg)
    assert 0 < zero_negs < len(neg)  # the batch exercises the "average only non-zero terms" rule
    assert math.isclose(_contrastive(margin)(emb, LABELS).item(), want, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_explicit_pairs(dtype: torch.dtype) -> None:
    emb = F.normalize(_embeddings(8, 4, dtype, seed=5), dim=1)
    pos, neg = [(0, 1), (3, 4), (5, 7)], [(0, 3), (1, 5), (2, 6), (4, 7)]
    tup = _pair_tuple(pos, neg)
    want, _ = _naive_contrastive(emb.double().tolist(), 1.5, pos, neg)
    assert math.isclose(_contrastive(1.5)(emb, LABELS, tup).item(), want, **_tol(dtype))


@pytest.mark.parametrize("name", ["koch", "proto", "contrastive"])
def test_gradients_flow(name: str) -> None:
    labels = EPISODE_LABELS if name == "proto" else LABELS
    emb = _embeddings(len(labels), 4, torch.float32, seed=6)
    if name == "koch":
        out = _koch(4)(emb, labels, None)
    elif name == "proto":
        out = PrototypicalLoss()(emb, labels, EpisodeSplit(2)(emb, labels))
    else:
        out = _contrastive(1.2)(F.normalize(emb, dim=1), labels)
    out.backward()
    assert emb.grad is not None
    assert torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0
