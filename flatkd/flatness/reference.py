"""Exact Hessian traces for benchmarks and tests of the stochastic estimators.

For the mean cross-entropy L = (1/N) Σ_i CE(f(x_i), y_i) the Hessian splits into the
generalised Gauss–Newton part and a residual,
    H = (1/N) Σ_i J_iᵀ Λ_i J_i  +  (1/N) Σ_i Σ_c (p_ic − [c = y_i]) ∇²_θ f_c(x_i),
with J_i = ∂f(x_i)/∂θ [C, P], p_i = softmax(f(x_i)), Λ_i = diag(p_i) − p_i p_iᵀ.
If every parameter tensor enters f linearly on each linear region — ReLU / max-pool networks of
convolutions, linear layers, residual additions, average pooling and BatchNorm in eval mode —
then ∂²f_c/∂θ_j² = 0 for every single parameter, the residual has a zero diagonal, and
    tr(H) = (1/N) Σ_i [Σ_c p_ic ‖∇_θ f_ic‖² − ‖Σ_c p_ic ∇_θ f_ic‖²]     (exact).
That takes C gradients per sample (per-sample Jacobians, ``torch.func``) instead of P
Hessian-vector products. It is NOT the Hessian trace for smooth activations (tanh, GELU,
sigmoid attention) or BatchNorm with batch statistics: there the residual's diagonal counts.
The tests check both cases against exact Hessians.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from .data import Batches


def gauss_newton_trace(model: nn.Module, batches: Batches, *, chunk: int = 16) -> float:
    """tr of the Gauss–Newton matrix of the mean cross-entropy of ``model`` (in the mode it is
    in; use eval mode) on ``batches``, exactly, accumulated in float64.

    Equal to tr(H) for piecewise-linear networks (see the module docstring). Memory: per-sample
    Jacobians of ``chunk`` samples, chunk × C × P values.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def logits(p: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, buffers), (x.unsqueeze(0),)).squeeze(0)

    per_sample = vmap(jacrev(logits), in_dims=(None, 0))
    total = torch.zeros((), dtype=torch.float64)
    for x, _ in batches:
        for xs in x.split(chunk):
            with torch.no_grad():
                p = torch.softmax(model(xs).double(), dim=1)                   # [b, C]
            jac = per_sample(params, xs)                                       # name → [b, C, …]
            J = torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jac.values()],
                          dim=2).double()                                      # [b, C, P]
            mean_grad = torch.einsum("bc,bcp->bp", p, J)
            total += (p * J.square().sum(2)).sum() - mean_grad.square().sum()
    return float(total) / batches.n
