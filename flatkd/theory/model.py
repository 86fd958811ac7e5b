"""The small float64 MLP and the digits regression task of the theory experiment."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


DTYPE = torch.float64


@dataclass(frozen=True)
class MLP:
    """Fully connected tanh network with one output: layer widths ``sizes = (d, h1, ..., 1)``.

    Parameters live in one flat vector, layer by layer, each layer as (weight [out, in], bias).
    tanh (not ReLU) keeps ∇²f non-zero and smooth, so the β term of Eq. 6 is visible.
    """

    sizes: tuple[int, ...]

    def __post_init__(self):
        if len(self.sizes) < 2 or self.sizes[-1] != 1:
            raise ValueError(f"MLP sizes must be (d_in, ..., 1), got {self.sizes}")

    @property
    def n_params(self) -> int:
        return sum(o * i + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def init(self, seed: int) -> torch.Tensor:
        """LeCun-uniform weights, zero biases, from ``torch.Generator().manual_seed(seed)``: [P]."""
        g = torch.Generator().manual_seed(seed)
        parts = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            bound = math.sqrt(3.0 / i)
            parts += [(torch.rand(o * i, generator=g, dtype=DTYPE) * 2 - 1) * bound,
                      torch.zeros(o, dtype=DTYPE)]
        return torch.cat(parts)

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f_θ(x)``: x [N, d] (or [d]) → outputs [N] (or scalar)."""
        h, k = x, 0
        n_layers = len(self.sizes) - 1
        for j, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = theta[k:k + o * i].reshape(o, i)
            b = theta[k + o * i:k + o * i + o]
            k += o * i + o
            h = h @ w.T + b
            if j < n_layers - 1:
                h = torch.tanh(h)
        return h[..., 0]


@dataclass(frozen=True)
class Task:
    """A binary regression task with targets ±1: x [N, d] float64, y [N] float64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_task(n_train: int = 256, dim: int = 8, seed: int = 0) -> Task:
    """scikit-learn's bundled digits, PCA to ``dim`` standardised components, target +1 for
    digits 5–9 and −1 for 0–4 (c = 1 as in §4.2). ``n_train`` samples for training, the rest
    for testing; split and PCA depend only on ``seed`` (PCA fitted on the training part)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    data = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.target))
    tr, te = idx[:n_train], idx[n_train:]
    pca = PCA(n_components=dim, random_state=seed).fit(data.data[tr])
    z_tr, z_te = pca.transform(data.data[tr]), pca.transform(data.data[te])
    mu, sd = z_tr.mean(0), z_tr.std(0)
    y = np.where(data.target >= 5, 1.0, -1.0)

    def t(a):
        return torch.as_tensor(a, dtype=DTYPE)

    return Task(t((z_tr - mu) / sd), t(y[tr]), t((z_te - mu) / sd), t(y[te]))
