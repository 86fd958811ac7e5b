"""Adaptive average-case and worst-case sharpness with m-sharpness (Kwon et al. 2021, ASAM
scaling; definitions of Andriushchenko et al. 2023, "A Modern Look at the Relationship between
Sharpness and Generalization").

With c = |w| (adaptive) or c = 1, a batch S of m samples and its mean loss L_S:

* average case: S_avg = E_S E_{δ ~ N(0, ρ² diag(c²))} [L_S(w + δ)] − L_S(w);
* worst case:   S_max = E_S max_{‖δ / c‖_p ≤ ρ} L_S(w + δ) − L_S(w),  p ∈ {∞, 2}.

The worst case is a projected-gradient ascent in the scaled coordinates u = δ / c (so the ball
is a plain ℓ_p ball of radius ρ): the ascent direction is sign(c ⊙ ∇L) (ℓ∞) or
c ⊙ ∇L / ‖c ⊙ ∇L‖₂ (ℓ2), the first step is ``step_size``·ρ, and a step that does not raise the
loss is undone and the step halved. The value kept per batch is the largest loss seen, a lower
bound of the true maximum that the tests compare with the analytic maximiser on quadratics.
Each batch costs ``steps`` gradient evaluations and one forward pass.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

from .params import LossFn, assign, cross_entropy, restored, scales

Batch = tuple[torch.Tensor, torch.Tensor]


def _mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def average_case(model: nn.Module, batches: Iterable[Batch], *, rho: float, adaptive: bool,
                 draws: int, generator: torch.Generator, loss: LossFn = cross_entropy) -> dict:
    """Adaptive average-case sharpness over ``batches`` (each a batch of m samples).

    Returns {"value": mean over batches of (mean over draws of L_S(w + δ)) − L_S(w),
    "stderr": standard error over batches, "loss": mean unperturbed L_S, "n_batches", "draws"}.
    Draw r of batch b is drawn from ``generator`` in order (reproducible for a given seed).
    """
    per_batch, clean = [], []
    with restored(model) as base:
        params = list(model.parameters())
        c = scales(base, adaptive)
        with torch.no_grad():
            for x, y in batches:
                assign(params, base)
                l0 = float(loss(model, x, y))
                noisy = []
                for _ in range(draws):
                    delta = [rho * ci * torch.randn(ci.shape, generator=generator,
                                                    dtype=ci.dtype).to(ci.device) for ci in c]
                    assign(params, base, delta)
                    noisy.append(float(loss(model, x, y)))
                per_batch.append(math.fsum(noisy) / draws - l0)
                clean.append(l0)
    mean, se = _mean_stderr(per_batch)
    return {"value": mean, "stderr": se, "loss": math.fsum(clean) / len(clean),
            "n_batches": len(per_batch), "draws": draws}


def _direction(gu: list[torch.Tensor], norm: str) -> list[torch.Tensor]:
    if norm == "linf":
        return [g.sign() for g in gu]
    total = math.sqrt(math.fsum(float(g.double().square().sum()) for g in gu))
    if total == 0.0:
        return [torch.zeros_like(g) for g in gu]
    return [g / total for g in gu]


def _project(u: list[torch.Tensor], rho: float, norm: str) -> list[torch.Tensor]:
    if norm == "linf":
        return [v.clamp(-rho, rho) for v in u]
    total = math.sqrt(math.fsum(float(v.double().square().sum()) for v in u))
    return u if total <= rho else [v * (rho / total) for v in u]


def _random_start(shapes: list[torch.Tensor], rho: float, norm: str,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """A uniformly random point of the ℓ∞ ball, or of the ℓ2 ball (Gaussian direction, radius
    ρ·U^(1/P))."""
    if norm == "linf":
        return [(2 * torch.rand(s.shape, generator=generator, dtype=s.dtype) - 1).to(s.device)
                * rho for s in shapes]
    g = [torch.randn(s.shape, generator=generator, dtype=s.dtype).to(s.device) for s in shapes]
    dim = sum(s.numel() for s in shapes)
    radius = rho * float(torch.rand(1, generator=generator, dtype=torch.float64)) ** (1 / dim)
    total = math.sqrt(math.fsum(float(v.double().square().sum()) for v in g))
    return [v * (radius / total) for v in g]


def _ascent(model: nn.Module, params: list[torch.Tensor], base: list[torch.Tensor],
            c: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, rho: float, norm: str,
            steps: int, step_size: float, u0: list[torch.Tensor] | None,
            loss: LossFn) -> tuple[float, float, int]:
    """(L_S(w), max L_S seen, gradient evaluations) for one batch."""
    u = u0 if u0 is not None else [torch.zeros_like(b) for b in base]
    with torch.no_grad():
        assign(params, base)
        clean = float(loss(model, x, y))
    best, best_u, best_gu = -math.inf, None, None
    alpha = step_size * rho
    n_grad = 0
    for _ in range(steps):
        assign(params, base, [ci * ui for ci, ui in zip(c, u)])
        value = loss(model, x, y)
        grads = torch.autograd.grad(value, params, allow_unused=True, materialize_grads=True)
        n_grad += 1
        value = float(value.detach())
        if value > best:
            best, best_u = value, u
            best_gu = [ci * g for ci, g in zip(c, grads)]
        else:                                   # no gain: back to the best point, shorter step
            alpha *= 0.5
        step = _direction(best_gu, norm)
        u = _project([bu + alpha * s for bu, s in zip(best_u, step)], rho, norm)
    with torch.no_grad():                       # the last proposal: a forward pass only
        assign(params, base, [ci * ui for ci, ui in zip(c, u)])
        best = max(best, float(loss(model, x, y)))
    return clean, max(best, clean), n_grad      # δ = 0 lies in the ball


def worst_case(model: nn.Module, batches: Iterable[Batch], *, rho: float, norm: str,
               adaptive: bool, steps: int, step_size: float, random_start: bool = False,
               generator: torch.Generator | None = None, loss: LossFn = cross_entropy) -> dict:
    """Adaptive worst-case m-sharpness over ``batches`` (each a batch of m samples).

    Returns {"value": mean over batches of max L_S(w + δ) − L_S(w), "stderr" over batches,
    "loss": mean unperturbed L_S, "n_batches", "grad_evals_per_batch"}.
    """
    if random_start and generator is None:
        raise ValueError("worst_case: random_start needs a generator")
    per_batch, clean, evals = [], [], []
    with restored(model) as base:
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
        c = scales(base, adaptive)
        for x, y in batches:
            u0 = _random_start(base, rho, norm, generator) if random_start else None
            l0, top, n = _ascent(model, params, base, c, x, y, rho=rho, norm=norm, steps=steps,
                                 step_size=step_size, u0=u0, loss=loss)
            per_batch.append(top - l0)
            clean.append(l0)
            evals.append(n)
    mean, se = _mean_stderr(per_batch)
    return {"value": mean, "stderr": se, "loss": math.fsum(clean) / len(clean),
            "n_batches": len(per_batch), "grad_evals_per_batch": max(evals)}
