"""MAML (Finn, Abbeel & Levine, ICML 2017): learn an initialisation from which a few gradient steps on an
episode's support set classify its queries.

Inner loop (per episode): θ'_0 = θ, θ'_{t+1} = θ'_t − α ∇ CE(f(S; θ'_t), y_S), for `inner_steps` steps.
Outer loss: CE(f(Q; θ'_T), y_Q), averaged over the meta-batch, minimised over θ by the trainer's optimiser.
- Second order (`maml`): the inner gradients are part of the graph (create_graph), so the outer gradient
  flows through them (Hessian-vector products).
- First order (`fomaml`): the inner gradients are treated as constants; the outer gradient is the query
  gradient at θ'_T, applied to θ (the paper's first-order approximation).
The inner loop is functional (`torch.func.functional_call` with a dict of adapted tensors), so the
module's own parameters are never modified in place.

Batch norm, as in the paper (Finn's reference code): no running statistics. Every forward normalises
with the statistics of the batch it is given, in training and at test: the support set with its own
statistics during adaptation, the queries with theirs. Test-time prediction is therefore transductive
(each query's output depends on the other queries of its episode), as the paper's reported numbers are;
the BN shifts and scales are adapted in the inner loop like every other parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from training.episodic import EpisodicMethod, episode_targets


class MamlConvNet(nn.Module):
    """The paper's Omniglot classifier: blocks of [conv3×3 stride 2 → BN (batch statistics) → ReLU] (strided
    convolutions instead of max-pooling, as the paper does for Omniglot), mean over space, linear to n_way.
    (N, C, H, W) -> (N, n_way) logits."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], n_way: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.BatchNorm2d(w, track_running_stats=False), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class MAML(EpisodicMethod):
    """net: (N, C, H, W) -> (N, n_way) logits. inner_steps / inner_lr: the training-time inner loop (T, α);
    eval_inner_steps: T at test time. first_order: FOMAML.

    Episodes must be exactly `n_way`-way: output j of the head is class `torch.unique(support_labels)[j]`.
    """

    def __init__(
        self,
        net: nn.Module,
        n_way: int,
        inner_steps: int = 1,
        inner_lr: float = 0.4,
        eval_inner_steps: int = 3,
        first_order: bool = False,
    ) -> None:
        super().__init__()
        if inner_steps < 1 or eval_inner_steps < 1 or inner_lr <= 0:
            raise ValueError("MAML needs inner_steps >= 1, eval_inner_steps >= 1 and inner_lr > 0")
        self.net, self.n_way = net, n_way
        self.inner_steps, self.inner_lr, self.eval_inner_steps = inner_steps, inner_lr, eval_inner_steps
        self.first_order = first_order

    def adapt(
        self, support: torch.Tensor, targets: torch.Tensor, steps: int, keep_graph: bool
    ) -> dict[str, torch.Tensor]:
        """θ' after `steps` inner SGD steps on (support, targets in [0, n_way)).

        keep_graph: the result stays differentiable w.r.t. θ (training). Then second-order MAML also
        differentiates through the inner gradients; first-order does not. Without it (evaluation) θ' is
        detached. Enables gradients itself, so it works under an outer `torch.no_grad()`.
        """
        params = dict(self.net.named_parameters())
        if not keep_graph:
            params = {k: p.detach().requires_grad_() for k, p in params.items()}
        second_order = keep_graph and not self.first_order
        with torch.enable_grad():
            for _ in range(steps):
                logits = functional_call(self.net, params, (support,)).float()
                inner = F.cross_entropy(logits, targets)
                grads = torch.autograd.grad(inner, list(params.values()), create_graph=second_order)
                params = {k: p - self.inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
                if not keep_graph:  # evaluation: each step starts from plain tensors again
                    params = {k: p.detach().requires_grad_() for k, p in params.items()}
        return params

    def _check_way(self, support_labels: torch.Tensor) -> None:
        n = len(torch.unique(support_labels))
        if n != self.n_way:
            raise ValueError(f"this MAML model has a {self.n_way}-way head; the episode is {n}-way")

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Adapt for `eval_inner_steps` on the support set, then the query logits (Q×n_way, detached)."""
        self._check_way(support_labels)
        _, targets = episode_targets(support_labels, support_labels)
        params = self.adapt(support, targets, self.eval_inner_steps, keep_graph=False)
        with torch.no_grad():
            return functional_call(self.net, params, (query,)).float()

    def loss(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The outer loss on the queries after `inner_steps` differentiable inner steps, and their accuracy."""
        self._check_way(support_labels)
        _, s_targets = episode_targets(support_labels, support_labels)
        _, q_targets = episode_targets(support_labels, query_labels)
        params = self.adapt(support, s_targets, self.inner_steps, keep_graph=True)
        logits = functional_call(self.net, params, (query,)).float()
        return F.cross_entropy(logits, q_targets), (logits.detach().argmax(1) == q_targets).float().mean()
