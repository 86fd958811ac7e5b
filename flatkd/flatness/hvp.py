"""Hessian-vector products of the mean cross-entropy over a fixed sample set.

L(θ) = (1/N) Σ_i CE(f_θ(x_i), y_i) over N samples in mini-batches b, so
∇L = Σ_b g_b with g_b = ∇ (1/N) Σ_{i∈b} CE_i, and H v = Σ_b ∇(g_b · v).
Each g_b is built once with ``create_graph=True`` and its graph reused for every product when
the sample set is small enough (one product ≈ 2.2–2.5 gradients on a CPU ResNet-8, measured by
benchmarks/hessian_vs_pyhessian.py); otherwise it is rebuilt per product and mini-batch
(bounded memory).

Attention runs its math implementation while graphs for products are built and
differentiated (:mod:`flatkd.flatness.attention_compat`: the fused kernels have no double
backward).

Vectors are flat tensors of length P (the number of parameters) in the parameters' dtype,
in ``model.parameters()`` order. Use inside :func:`flatkd.flatness.state.preserved`.

Under torchrun (``batches.dist``) each rank sums the terms of its own batches and one
all-reduce per product (gradient, loss) adds the ranks' sums, so every rank gets the same H v;
it equals the single-process one up to float summation order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training.distributed import sum_tensors_
from .attention_compat import second_order_attention
from .data import Batches


class HessianOperator:
    """``H @ v`` for the Hessian of the mean cross-entropy of ``model`` on ``batches``.

    The model must already be in the wanted mode (see ``state.set_bn_mode``).
    ``n_hvp`` counts products; call :meth:`close` (or use as a context manager) to free graphs.
    """

    def __init__(self, model: nn.Module, batches: Batches, *, cache_graphs: bool):
        self.model = model
        self.batches = batches
        self.params = [p for p in model.parameters()]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.n_hvp = 0
        with second_order_attention():
            self._cached = [self._batch_grads(x, y, create_graph=True) for x, y in batches] \
                if cache_graphs else None

    def _batch_grads(self, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool):
        loss = F.cross_entropy(self.model(x), y, reduction="sum") / self.batches.n
        return torch.autograd.grad(loss, self.params, create_graph=create_graph)

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in self.params]),
                                              self.params)]

    def gradient(self) -> torch.Tensor:
        """∇L as a flat vector [P] (no graph kept)."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for x, y in self.batches:
            total += torch.cat([g.reshape(-1) for g in self._batch_grads(x, y, create_graph=False)])
        sum_tensors_([total], self.batches.dist)
        return total

    def loss(self) -> float:
        """L(θ), the mean cross-entropy over the sample set."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for x, y in self.batches:
                total += F.cross_entropy(self.model(x), y, reduction="sum")
        sum_tensors_([total], self.batches.dist)
        return float(total / self.batches.n)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v [P]; returns a flat vector [P]."""
        vs = self._split(v.to(self.dtype))
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with second_order_attention():
            if self._cached is not None:
                for grads in self._cached:
                    total += self._product(grads, vs, retain_graph=True)
            else:
                for x, y in self.batches:
                    total += self._product(self._batch_grads(x, y, create_graph=True), vs,
                                           retain_graph=False)
        sum_tensors_([total], self.batches.dist)
        self.n_hvp += 1
        return total

    __matmul__ = matvec

    def _product(self, grads, vs, *, retain_graph: bool) -> torch.Tensor:
        live = [(g, v) for g, v in zip(grads, vs) if g.requires_grad]
        hv = torch.autograd.grad([g for g, _ in live], self.params,
                                 grad_outputs=[v for _, v in live], retain_graph=retain_graph,
                                 allow_unused=True, materialize_grads=True)
        return torch.cat([h.reshape(-1) for h in hv])

    def close(self) -> None:
        """Release the cached double-backward graphs."""
        self._cached = None

    def __enter__(self) -> "HessianOperator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
