"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, NeurIPS 2016).

A query x̂ is labelled by attention over the support set: P(y | x̂, S) = Σ_i a(x̂, x_i) y_i, with
a(x̂, x_i) = softmax_i cos(f(x̂), g(x_i)) and y_i one-hot. The loss is −log P(true class | x̂, S).

Without full context embeddings (FCE), f = g = the CNN embedder. With FCE (the paper's appendix):
- g(x_i, S) = g'(x_i) + h→_i + h←_i: a bidirectional LSTM reads the support embeddings in episode order
  (the sampler's class-grouped layout; labels are arbitrary ids, so the order says nothing about them).
- f(x̂, S) = h_K after K "processing steps" of an attention LSTM over g(S):
  r_{k−1} = Σ_i softmax_i(h_{k−1} · g(x_i)) g(x_i);  ĥ_k, c_k = LSTM([f'(x̂), r_{k−1}], (h_{k−1}, c_{k−1}));
  h_k = ĥ_k + f'(x̂);  h_0 = c_0 = 0.
  The paper writes the LSTM's state as the concatenation [h_{k−1}, r_{k−1}]; feeding r as input beside
  f'(x̂) keeps the state D-dimensional so the skip connection h_k = ĥ_k + f'(x̂) is well defined (the
  same read as Vinyals, Bengio & Kudlur's "process" block that the paper builds on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.episodic import EpisodicMethod, class_onehot


class MatchingNetwork(EpisodicMethod):
    """embedder: images N×C×H×W -> N×D. fce: add full context embeddings with `fce_steps` steps (K).

    predict returns log P(class | query, S) (Q×C), so cross-entropy on it is the paper's loss.
    """

    def __init__(self, embedder: nn.Module, dim: int, fce: bool = False, fce_steps: int = 5) -> None:
        super().__init__()
        if fce_steps < 1:
            raise ValueError(f"fce_steps must be >= 1, got {fce_steps}")
        self.embedder = embedder
        self.fce, self.fce_steps = fce, fce_steps
        if fce:
            self.support_lstm = nn.LSTM(dim, dim, bidirectional=True)
            self.query_lstm = nn.LSTMCell(2 * dim, dim)

    def encode_support(self, g: torch.Tensor) -> torch.Tensor:
        """g'(S) S×D -> g(S) S×D: the embeddings plus both directions of a BiLSTM over the support set."""
        out, _ = self.support_lstm(g[:, None, :])  # S×1×2D: the support set as one sequence
        d = g.shape[1]
        return g + out[:, 0, :d] + out[:, 0, d:]

    def encode_query(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f'(x̂) Q×D, g(S) S×D -> f(x̂, S) Q×D: K steps of the attention LSTM (module docstring)."""
        h = torch.zeros_like(f)
        c = torch.zeros_like(f)
        for _ in range(self.fce_steps):
            r = torch.softmax(h @ g.T, dim=1) @ g  # h_0 = 0 reads the mean of g(S)
            h_hat, c = self.query_lstm(torch.cat([f, r], 1), (h, c))
            h = h_hat + f
        return h

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        g = self.embedder(support).float()  # S×D
        f = self.embedder(query).float()  # Q×D
        if self.fce:
            g = self.encode_support(g)
            f = self.encode_query(f, g)
        attention = torch.softmax(F.normalize(f, dim=1) @ F.normalize(g, dim=1).T, dim=1)  # Q×S
        probs = attention @ class_onehot(support_labels, attention.dtype).T  # Q×C, rows sum to 1
        # log of a distribution: log_softmax(log p) = log p, so cross-entropy on it is −log p(true class).
        return probs.clamp_min(1e-12).log()
