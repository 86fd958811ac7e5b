"""KD-loss Hessian maths (paper Eq. 6–10, Def. 4.2): exact traces, β, teacher gap."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jacrev, vmap

from .model import MLP


def task_loss(model: MLP, phi: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Teacher's risk ``1/N Σ ½ (g_φ(x_i) − y_i)²`` (the learning rule of Eq. 3 with MSE)."""
    return 0.5 * ((model.forward(phi, x) - y) ** 2).mean()


def kd_loss(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
            y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``L^(KD)(θ, φ) = 1/N Σ [(1−α) ½ (f−y)² + α ½ (f−g)²]`` with ``g = teacher_out`` [N] fixed."""
    f = model.forward(theta, x)
    return ((1 - alpha) * 0.5 * (f - y) ** 2 + alpha * 0.5 * (f - teacher_out) ** 2).mean()


def beta(f: torch.Tensor, g: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``β(i, θ, φ) = (1 − α)(f_θ(x_i) − y_i) + α (f_θ(x_i) − g_φ(x_i))`` (Eq. 6), shape [N].
    Also the per-sample gradient factor: ``∇_θ L_i = β_i ∇_θ f_θ(x_i)``."""
    return (1 - alpha) * (f - y) + alpha * (f - g)


def output_gradients(model: MLP, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``∇_θ f_θ(x_i)``: [N, P]."""
    return vmap(grad(model.forward), in_dims=(None, 0))(theta, x)


def output_hessian_traces(model: MLP, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``Tr ∇²_θ f_θ(x_i)``, [N], exactly, without forming P × P Hessians.

    In layer j, ``z_j = W_j h_j + b_j`` and f depends on ``W_j[a, b]`` only through ``z_j[a]``,
    so ``∂²f/∂W_j[a,b]² = h_j[b]² ∂²f/∂z_j[a]²`` and ``∂²f/∂b_j[a]² = ∂²f/∂z_j[a]²``. Hence
    ``Tr ∇²_θ f = Σ_j (‖h_j‖² + 1) Σ_a ∂²f/∂z_j[a]²``, where the second derivatives with respect to
    the (width-sized) pre-activations come from small exact per-sample Hessians. The last layer is
    linear in its pre-activation and contributes 0.
    """
    n_layers = len(model.sizes) - 1
    offsets = np.cumsum([0] + [o * i + o for i, o in zip(model.sizes[:-1], model.sizes[1:])])

    def layer(j, h):
        i, o = model.sizes[j], model.sizes[j + 1]
        w = theta[offsets[j]:offsets[j] + o * i].reshape(o, i)
        return h @ w.T + theta[offsets[j] + o * i:offsets[j + 1]]

    def tail(z, j):  # f as a function of layer j's pre-activation (one sample)
        h = torch.tanh(z)
        for jj in range(j + 1, n_layers):
            h = layer(jj, h)
            if jj < n_layers - 1:
                h = torch.tanh(h)
        return h[0]

    total = torch.zeros(len(x), dtype=theta.dtype)
    h = x
    for j in range(n_layers - 1):
        z = layer(j, h)
        # reverse-over-reverse: torch.func.hessian (forward-over-reverse) would load torch's
        # TorchScript jvp decompositions, which warn that torch.jit.script is deprecated
        d2 = vmap(jacrev(jacrev(tail)), in_dims=(0, None))(z, j)   # [N, w, w]
        total = total + ((h ** 2).sum(1) + 1) * torch.diagonal(d2, dim1=-2, dim2=-1).sum(-1)
        h = torch.tanh(z)
    return total


def kd_hessian(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exact ``H_φ(θ) = ∇²_θ L^(KD)(θ, φ)``, [P, P], by automatic differentiation (no Eq. 6)."""
    return jacrev(grad(lambda th: kd_loss(model, th, teacher_out, x, y, alpha)))(theta)


def beta_term(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, alpha: float) -> float:
    """``1/N Σ β_i Tr ∇²f_θ(x_i)``: the second term of Eq. 8 (the only place the teacher enters)."""
    b = beta(model.forward(theta, x), teacher_out, y, alpha)
    return float((b * output_hessian_traces(model, theta, x)).mean())


@dataclass(frozen=True)
class TraceDecomposition:
    """``total = gauss_newton + beta_term`` (Eq. 8). ``exact`` is Tr of the autodiff Hessian
    when it was computed (else NaN); ``min_eig`` its smallest eigenvalue (< 0: not a minimum)."""

    gauss_newton: float
    beta_term: float
    exact: float
    min_eig: float

    @property
    def total(self) -> float:
        return self.gauss_newton + self.beta_term


def trace_decomposition(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor,
                        x: torch.Tensor, y: torch.Tensor, alpha: float,
                        exact: bool = True) -> TraceDecomposition:
    """Eq. 8 at ``θ``: ``1/N Σ ‖∇f_i‖²`` + ``1/N Σ β_i Tr ∇²f_i``, and (``exact=True``) the trace
    and smallest eigenvalue of the full autodiff Hessian for comparison."""
    gn = float((output_gradients(model, theta, x) ** 2).sum(1).mean())
    bt = beta_term(model, theta, teacher_out, x, y, alpha)
    if exact:
        h = kd_hessian(model, theta, teacher_out, x, y, alpha)
        tr, lmin = float(torch.trace(h)), float(torch.linalg.eigvalsh(h)[0])
    else:
        tr = lmin = math.nan
    return TraceDecomposition(gn, bt, tr, lmin)


def linearised_teacher_offsets(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor
                               ) -> torch.Tensor:
    """``Δφᵀ ∇_φ g_φ*(x_i)`` (Def. 4.1 applied to the teacher): delta_phi [..., P],
    teacher_grads_star [N, P] → [..., N]."""
    return delta_phi @ teacher_grads_star.T


def beta_linearised(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor,
                    alpha: float) -> torch.Tensor:
    """Eq. 7 to first order: ``β(i, θ*, φ) ≈ −α Δφᵀ ∇_φ g_φ*(x_i)``, [..., N].

    With ``f_θ*(x_i) = g_φ*(x_i) = y_i``, ``β = α (f_θ* − g_φ) = −α (g_φ − g_φ*)``: the paper
    prints ``+α Δφᵀ∇g_φ*``, which has the wrong sign (``tests/test_theory.py`` checks this one is
    second-order accurate and the printed one is not). Valid only near φ* and at such a θ*.
    """
    return -alpha * linearised_teacher_offsets(delta_phi, teacher_grads_star)


def teacher_gap(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor) -> torch.Tensor:
    """Def. 4.2: ``u(φ) = 1/N Σ_i |Δφᵀ ∇_φ g_φ*(x_i)|``; delta_phi [..., P] → [...]."""
    return linearised_teacher_offsets(delta_phi, teacher_grads_star).abs().mean(-1)


def spaced_teacher_step(t: int | np.ndarray, s: int) -> int | np.ndarray:
    """``k(t) = ⌈t/s⌉ s`` (§4.2): the teacher step a spaced student learns from at step t ≥ 1.
    ``s`` in optimizer steps; s = 1 gives k(t) = t (online KD)."""
    if s < 1:
        raise ValueError(f"interval s must be ≥ 1 step, got {s}")
    return -(-np.asarray(t) // s) * s if isinstance(t, np.ndarray) else -(-t // s) * s
