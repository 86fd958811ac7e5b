"""Stochastic estimators of tr(H) from Hessian-vector products, each with a standard error.

All draw from a local ``torch.Generator`` and spend exactly ``budget`` products (fewer only if
the Krylov space of the deflated estimator is exhausted early, which makes it exact).

* ``hutchinson``: tr(H) ≈ (1/n) Σ zᵀHz, z Rademacher (Hutchinson 1989); stderr = s/√n.
* ``hutch++`` (Meyer, Musco, Musco, Woodruff 2021): Q = orth(H S) for ⌊b/3⌋ Rademacher
  columns S; tr(H) = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)), the first exact (⌊b/3⌋ products), the
  second by Hutchinson on projected probes with the rest; stderr from the second part.
* ``deflated``: Q = the Lanczos basis of ⌊b/3⌋ steps from a Rademacher start (it captures the
  top of the spectrum); tr(QᵀHQ) = Σ α_j exactly, and Hutchinson on the deflated rest. The
  native backend passes the Lanczos run of its top-k eigenvalues as ``shared`` instead. Q is
  independent of the probes, so the estimate is unbiased; on a flat spectrum it degrades
  gracefully to Hutchinson on the complement (SPEC §7: never worse than plain Hutchinson).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..registry import Registry
from .lanczos import LanczosRun, MatVec, lanczos


@dataclass
class TraceEstimate:
    """mean, standard error of the mean, Hessian-vector products used."""

    mean: float
    stderr: float
    n_hvp: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n_hvp": self.n_hvp}


Estimator = Callable[..., TraceEstimate]
TRACE_ESTIMATORS: Registry[Estimator] = Registry("trace estimator")


def rademacher(dim: int, generator: torch.Generator, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """A vector [dim] of independent ±1 entries from ``generator``."""
    bits = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8)
    return (bits.to(dtype) * 2 - 1).to(device)


def _project_out(z: torch.Tensor, basis: Optional[torch.Tensor]) -> torch.Tensor:
    if basis is None or basis.shape[0] == 0:
        return z
    for _ in range(2):
        z = z - basis.T @ (basis @ z)
    return z


def _hutchinson_samples(matvec: MatVec, n: int, dim: int, generator: torch.Generator,
                        dtype: torch.dtype, device: torch.device,
                        basis: Optional[torch.Tensor] = None) -> list[float]:
    out = []
    for _ in range(n):
        z = _project_out(rademacher(dim, generator, dtype, device), basis)
        out.append(float(torch.dot(z.double(), matvec(z).double())))
    return out


def _mean_stderr(samples: list[float]) -> tuple[float, float]:
    n = len(samples)                             # >= 2: budgets are >= 6
    mean = math.fsum(samples) / n
    var = math.fsum((s - mean) ** 2 for s in samples) / (n - 1)
    return mean, math.sqrt(var / n)


@TRACE_ESTIMATORS.register("hutchinson")
def hutchinson(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
               dtype: torch.dtype, device: torch.device,
               shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """Plain Hutchinson with ``budget`` Rademacher probes (``shared`` is not used)."""
    mean, se = _mean_stderr(_hutchinson_samples(matvec, budget, dim, generator, dtype, device))
    return TraceEstimate(mean, se, budget)


@TRACE_ESTIMATORS.register("hutch++")
def hutchpp(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
            dtype: torch.dtype, device: torch.device,
            shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """Hutch++: a third of the budget sketches, a third computes tr(QᵀHQ), the rest probes
    (``shared`` is not used)."""
    k = min(budget // 3, dim)
    sketch = torch.stack([matvec(rademacher(dim, generator, dtype, device)) for _ in range(k)])
    q, _ = torch.linalg.qr(sketch.double().T)          # [P, k]
    basis = q.T.to(dtype).contiguous()                  # [k, P], orthonormal rows
    exact = math.fsum(float(torch.dot(b.double(), matvec(b).double())) for b in basis)
    rest = _hutchinson_samples(matvec, budget - 2 * k, dim, generator, dtype, device, basis)
    mean, se = _mean_stderr(rest)
    return TraceEstimate(exact + mean, se, 2 * k + len(rest))


@TRACE_ESTIMATORS.register("deflated")
def deflated(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
             dtype: torch.dtype, device: torch.device,
             shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """Lanczos-deflated Hutchinson: exact Σα over a Krylov basis + probes on the rest.

    The basis is ``shared`` (a finished run from a start vector independent of ``generator``;
    then ``budget`` − its steps, at least 5, probes follow) or a ⌊b/3⌋-step run of its own."""
    run = shared if shared is not None else lanczos(
        matvec, rademacher(dim, generator, dtype, device), max(1, budget // 3))
    return deflated_rest(matvec, run, max(budget - run.n_matvec, 5), dim, generator=generator,
                         dtype=dtype, device=device)


def deflated_rest(matvec: MatVec, run: LanczosRun, probes: int, dim: int, *,
                  generator: torch.Generator, dtype: torch.dtype,
                  device: torch.device) -> TraceEstimate:
    """tr(H) = Σα of a finished Lanczos ``run`` (= tr(QᵀHQ), exact) + Hutchinson with ``probes``
    projected probes on (I−QQᵀ)H(I−QQᵀ). ``run`` must not depend on ``generator``'s later draws.
    n_hvp counts the run's products too."""
    exact = math.fsum(run.alphas.tolist())
    if run.n_matvec >= dim:                      # the basis spans everything: tr(H) = Σα
        return TraceEstimate(exact, 0.0, run.n_matvec)
    rest = _hutchinson_samples(matvec, probes, dim, generator, dtype, device, run.basis)
    mean, se = _mean_stderr(rest)
    return TraceEstimate(exact + mean, se, run.n_matvec + len(rest))
