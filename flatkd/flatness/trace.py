"""Estimators of tr(H), each with a standard error: stochastic ones from Hessian-vector
products, and the exact Gauss–Newton trace of piecewise-linear networks.

Every estimator draws from a local ``torch.Generator`` and is registered in
:data:`TRACE_ESTIMATORS` as a :class:`TraceEstimator`: the estimate itself, the number of
products it spends, and (``deflated`` only) a rule saying how long a shared Lanczos run should go
on for its sake. Vectors are flat [P] tensors in the operator's dtype; the small dense algebra is
float64.

* ``hutchinson``: tr(H) ≈ (1/n) Σ zᵀHz, z Rademacher (Hutchinson 1989); stderr = s/√n.
* ``hutch++`` (Meyer, Musco, Musco & Woodruff 2021): Q = orth(H S) for ⌊b/3⌋ Rademacher
  columns S; tr(H) = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)), the first exact (⌊b/3⌋ products), the
  second by Hutchinson on projected probes with the rest; stderr from the second part.
* ``xtrace`` (Epperly, Tropp & Webber 2024, "XTrace: making the most of every sample in
  stochastic trace estimation", SIMAX 45(1)): s = ⌊b/2⌋ test vectors ω_i, Y = HΩ, Q = orth(Y);
  for each i the low-rank part uses Q_(i) = orth(Y without column i) — independent of ω_i — and
  ω_i probes the rest: t_i = tr(Q_(i)ᵀHQ_(i)) + ω̃_iᵀ(I−Π_i)H(I−Π_i)ω̃_i, with ω̃_i rescaled so
  that ‖(I−Π_i)ω̃_i‖² = P − s + 1 (the paper's "improved" normalisation; unbiased because ω_i is
  rotation-invariant). All s downdates come from Y and Z = HQ (s more products) in closed form.
  Estimate mean(t_i); stderr by the delete-one jackknife over test vectors (see :func:`xtrace`).
* ``deflated``: a Lanczos basis Q_m from a Rademacher start (independent of the probes);
  tr(QᵀHQ) = Σ α_j exactly, plus Hutchinson with projected probes on the rest. The split between
  Lanczos steps and probes is chosen from the run alone (so the estimate stays unbiased): with
  ‖(I−QQᵀ)H(I−QQᵀ)‖_F² = ‖H‖_F² − Σ_{j≤m}(α_j² + 2β_j²) (each step removes α_j² + 2β_j²
  from the probes' variance 2‖·‖_F²), Lanczos goes on while the next step is predicted to remove
  more than the 1/(n) share of that variance one more probe would. ‖H‖_F² is estimated from the
  run: the converged Ritz pairs exactly, the rest as P·‖H(q_1 − Y Yᵀq_1)‖² (q_1 a random unit
  vector). The native backend shares its eigenvalue/density run (``shared``) and lets this rule
  extend it. On a flat spectrum it degrades gracefully to Hutchinson on the complement.
* ``gauss-newton``: for piecewise-linear networks (ReLU convnets, BatchNorm in eval mode)
  tr(H) = tr(Gauss–Newton) exactly, computed from per-sample Jacobian rows
  (:mod:`flatkd.flatness.gauss_newton`): no products, stderr 0. Refused for other networks.

``auto`` (the default of ``hessian.trace_estimator``, :func:`resolve_estimator`) is
``gauss-newton`` where it is exact and ``deflated`` elsewhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import FlatkdError
from ..registry import Registry
from .gauss_newton import gauss_newton_trace, not_piecewise_linear
from .lanczos import LanczosRun, MatVec, StopRule, lanczos, ritz

MIN_PROBES = 15
"""Probes the deflated estimator keeps after its Lanczos part. With n probes the interval
±2 stderr (s/√n) covers the true trace with probability ≈ P(|t_{n−1}| ≤ 2) for normal samples:
0.88 for n = 5, 0.92 for n = 10, 0.935 for n = 15; skewed quadratic forms need the margin (with
10, coverage on exact Hessians of small nets fell to 0.90)."""


@dataclass
class TraceEstimate:
    """mean, standard error of the mean, Hessian-vector products used."""

    mean: float
    stderr: float
    n_hvp: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n_hvp": self.n_hvp}


Estimate = Callable[..., TraceEstimate]


@dataclass(frozen=True)
class TraceEstimator:
    """A registered trace estimator.

    ``estimate(matvec, dim, budget, *, generator, dtype, device, shared=None)`` → TraceEstimate
    (``shared``: a finished Lanczos run from a start vector independent of ``generator``; only
    ``deflated`` uses it), or ``None`` for an estimator that needs no products but the model:
    ``exact(model, batches, *, progress)`` → tr(H) (``gauss-newton``).
    ``products_after(budget, shared_steps, dim)``: products the estimate spends once a shared run
    of ``shared_steps`` exists (progress bars plan with it). ``krylov(budget, dim)``, if set: a
    rule ``(alphas, betas, beta_m) → bool``, true while the estimator wants the shared run to go
    on. ``unmet(model)``, if set: why the estimator does not apply to ``model`` in its current
    mode ([] when it does), with ``requirement`` saying what it needs.
    """

    estimate: Optional[Estimate]
    products_after: Callable[[int, int, int], int]
    krylov: Optional[Callable[[int, int], StopRule]] = None
    exact: Optional[Callable[..., float]] = None
    unmet: Optional[Callable[[object], list[str]]] = None
    requirement: str = ""

    def problems(self, model) -> list[str]:
        """Why this estimator does not apply to ``model`` ([] when it does)."""
        return self.unmet(model) if self.unmet is not None else []

    def __call__(self, matvec: MatVec, dim: int, budget: int, **kw) -> TraceEstimate:
        return self.estimate(matvec, dim, budget, **kw)

    def run(self, matvec: MatVec, operator, budget: int, *, generator: torch.Generator,
            shared: Optional[LanczosRun], progress: bool) -> TraceEstimate:
        """The estimate for the Hessian of ``operator`` (a
        :class:`~flatkd.flatness.hvp.HessianOperator`, products through ``matvec``)."""
        if self.exact is not None:
            return TraceEstimate(self.exact(operator.model, operator.batches, progress=progress),
                                 0.0, 0)
        return self.estimate(matvec, operator.dim, budget, generator=generator,
                             dtype=operator.dtype, device=operator.device, shared=shared)


TRACE_ESTIMATORS: Registry[TraceEstimator] = Registry("trace estimator")


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


# --- hutchinson -------------------------------------------------------------------------------

def hutchinson(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
               dtype: torch.dtype, device: torch.device,
               shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """Plain Hutchinson with ``budget`` Rademacher probes (``shared`` is not used)."""
    mean, se = _mean_stderr(_hutchinson_samples(matvec, budget, dim, generator, dtype, device))
    return TraceEstimate(mean, se, budget)


TRACE_ESTIMATORS.register("hutchinson")(
    TraceEstimator(hutchinson, products_after=lambda budget, steps, dim: budget))


# --- hutch++ ----------------------------------------------------------------------------------

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


TRACE_ESTIMATORS.register("hutch++")(
    TraceEstimator(hutchpp, products_after=lambda budget, steps, dim: budget))


# --- xtrace -----------------------------------------------------------------------------------

def _xtrace_size(budget: int, dim: int) -> int:
    return max(2, min(budget // 2, dim - 1))


def xtrace(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
           dtype: torch.dtype, device: torch.device,
           shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """XTrace with s = ⌊budget/2⌋ Gaussian test vectors (2s products; ``shared`` is not used).

    Shapes: Ω, Y = HΩ, Q, Z = HQ are [P, s] in ``dtype``; R = QᵀY, W = QᵀΩ, T = ZᵀΩ and
    H_Q = QᵀZ are s×s float64. Every projector the estimator needs is QQᵀ minus a small part of
    range(Y): leaving out y_i removes s_i ∝ R⁻ᵀe_i (the unit vector of range(Y) orthogonal to
    every other y_j). With B_i an orthonormal basis [s, k] of the removed part,
    Π = Q(I − B_iB_iᵀ)Qᵀ and (I−Π)ω_i = r_i + Qv_i, r_i = ω_i − Qw_i, v_i = B_iB_iᵀw_i, so
    t_i = tr H_Q − tr(B_iᵀH_QB_i) + (P − s + k)/‖(I−Π)ω_i‖² ·
          (ω_iᵀy_i − w_iᵀR_i − T_iᵀw_i + w_iᵀH_Qw_i + v_iᵀ(R_i − H_Qw_i) + (T_i − H_Qw_i)ᵀv_i
           + v_iᵀH_Qv_i),
    ‖(I−Π)ω_i‖² = ‖ω_i‖² − ‖w_i‖² + ‖B_iᵀw_i‖² (the factor is the "improved" normalisation).
    The estimate is mean_i t_i (k = 1). Standard error: the delete-one jackknife over test
    vectors — XTrace without ω_j has, for probe i, B = orth(R⁻ᵀe_i, R⁻ᵀe_j) (k = 2) — which is
    conservative in expectation for a symmetric function of i.i.d. vectors (Efron–Stein);
    the paper's std(t_i)/√s treats the correlated t_i as independent and covered the true trace
    within ±2 stderr only 80–88 % of the time on exact Hessians of small nets.
    If Y is rank-deficient (H has rank < s), range(Y) = range(H) and the trace is tr(QᵀHQ)
    over it, exactly (stderr 0).
    """
    s = _xtrace_size(budget, dim)
    omega = torch.stack([torch.randn(dim, generator=generator, dtype=dtype) for _ in range(s)])
    omega = omega.to(device)                                     # [s, P]
    Y = torch.stack([matvec(w) for w in omega]).T               # [P, s]
    Q, R_dt = torch.linalg.qr(Y)                                 # Householder: orthonormal Q
    Z = torch.stack([matvec(q) for q in Q.T.contiguous()]).T    # [P, s]
    return xtrace_from_products(omega, Y, Q, R_dt, Z, dim)


def xtrace_from_products(omega: torch.Tensor, Y: torch.Tensor, Q: torch.Tensor,
                         R: torch.Tensor, Z: torch.Tensor, dim: int) -> TraceEstimate:
    """The algebra of :func:`xtrace` from its products: test vectors ``omega`` [s, P],
    Y = HΩ [P, s], its reduced QR ``Q`` [P, s], ``R`` [s, s], and Z = HQ [P, s].

    The first s' columns of a Householder QR are the QR of the first s' columns, so nested
    prefixes of one run give the estimators for smaller budgets (the benchmark uses this)."""
    s = omega.shape[0]
    n_hvp = 2 * s
    eps = torch.finfo(Y.dtype).eps
    R = R.double()
    HQ = (Q.T @ Z).double()
    HQ = (HQ + HQ.T) / 2
    diag = R.diagonal().abs()
    if diag.min() <= 10 * eps * diag.max():
        u, sv, _ = torch.linalg.svd(R)
        keep = u[:, sv > 10 * eps * sv[0]]
        return TraceEstimate(float(torch.trace(keep.T @ HQ @ keep)), 0.0, n_hvp)
    parts = _XTraceParts(
        HQ=HQ, W=(Q.T @ omega.T).double(), T=(Z.T @ omega.T).double(), R=R,
        om_y=torch.stack([torch.dot(o.double(), y.double()) for o, y in zip(omega, Y.T)]),
        om_om=torch.stack([o.double().square().sum() for o in omega]), dim=dim)
    U = torch.linalg.solve_triangular(R, torch.eye(s, dtype=torch.float64), upper=True).T
    U = U / U.norm(dim=0, keepdim=True)                        # column i ∝ R⁻ᵀe_i
    t = parts.estimates(U.T.unsqueeze(2), range(s))            # k = 1
    loo = []
    for j in range(s):                                          # XTrace without ω_j
        others = [i for i in range(s) if i != j]
        a = U[:, j]
        b = U[:, others] - a[:, None] * (a @ U[:, others])[None, :]
        b = b / b.norm(dim=0, keepdim=True)
        basis = torch.stack([a.expand(len(others), s), b.T], dim=2)   # [s−1, s, 2]
        loo.append(float(parts.estimates(basis, others).mean()))
    jack = np.array(loo)
    var = (s - 1) / s * float(np.sum((jack - jack.mean()) ** 2))
    return TraceEstimate(float(t.mean()), math.sqrt(var), n_hvp)


@dataclass
class _XTraceParts:
    """The s×s float64 pieces of an XTrace run (see :func:`xtrace`) and ‖ω_i‖², ω_iᵀy_i [s]."""

    HQ: torch.Tensor
    W: torch.Tensor
    T: torch.Tensor
    R: torch.Tensor
    om_y: torch.Tensor
    om_om: torch.Tensor
    dim: int

    def estimates(self, bases: torch.Tensor, probes) -> torch.Tensor:
        """t_i for probe columns ``probes`` (n of them), ``bases`` [n, s, k] orthonormal: B_i."""
        idx = list(probes)
        s, k = self.HQ.shape[0], bases.shape[2]
        W, T, R = self.W[:, idx], self.T[:, idx], self.R[:, idx]
        HW = self.HQ @ W
        proj = torch.bmm(bases.transpose(1, 2), W.T.unsqueeze(2)).squeeze(2)   # B_iᵀ w_i [n, k]
        v = torch.bmm(bases, proj.unsqueeze(2)).squeeze(2).T                # B_iB_iᵀw_i [s, n]
        tr_removed = (bases * torch.matmul(self.HQ, bases)).sum((1, 2))      # tr(B_iᵀH_QB_i)
        quad = (self.om_y[idx] - (W * R).sum(0) - (T * W).sum(0) + (W * HW).sum(0)
                + (v * (R - HW)).sum(0) + ((T - HW) * v).sum(0) + (v * (self.HQ @ v)).sum(0))
        norm2 = self.om_om[idx] - (W ** 2).sum(0) + (proj ** 2).sum(1)
        return torch.trace(self.HQ) - tr_removed + (self.dim - s + k) / norm2 * quad


TRACE_ESTIMATORS.register("xtrace")(
    TraceEstimator(xtrace, products_after=lambda budget, steps, dim: 2 * _xtrace_size(budget, dim)))


# --- deflated ---------------------------------------------------------------------------------

def krylov_pays(alphas: np.ndarray, betas: np.ndarray, beta_m: float, budget: int,
                dim: int) -> bool:
    """Whether one more Lanczos step lowers the deflated estimator's variance more than the
    probe it costs would (decided from the run alone: the estimate stays unbiased).

    After m steps the probes see C = (I−QQᵀ)H(I−QQᵀ), per-probe variance ≈ 2‖C‖_F², and
    ‖C‖_F² = ‖H‖_F² − Σ_{j≤m} g_j with g_j = α_j² + 2β_j² (β_m the last residual). With
    n = budget − m probes the variance is 2‖C‖_F²/n; a step (gain g ≈ the mean of the last 4
    g_j) pays iff g·n > ‖C‖_F². ‖H‖_F² ≈ Σ_conv θ_i² + P·‖H u‖², u = q_1 minus its components
    on the converged Ritz vectors (residual ≤ 1 % of |θ|), computed exactly from T and β_m.
    Keeps at least :data:`MIN_PROBES` probes.
    """
    m = len(alphas)
    if m >= dim or m >= budget - MIN_PROBES:
        return False
    if m < 2:
        return True
    theta, s = ritz(alphas, betas)
    r = abs(beta_m) * np.abs(s[-1, :])
    conv = r <= 1e-2 * np.abs(theta)
    e1 = np.zeros(m)
    e1[0] = 1.0
    u = e1 - s[:, conv] @ s[0, conv]
    T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    frob2 = float(np.sum(theta[conv] ** 2) + dim * (np.sum((T @ u) ** 2) + (beta_m * u[-1]) ** 2))
    b_all = np.append(betas, beta_m)
    gains = alphas ** 2 + 2 * b_all ** 2
    rest = frob2 - float(gains.sum())
    return float(gains[-4:].mean()) * (budget - m) > rest


def deflated(matvec: MatVec, dim: int, budget: int, *, generator: torch.Generator,
             dtype: torch.dtype, device: torch.device,
             shared: Optional[LanczosRun] = None) -> TraceEstimate:
    """Lanczos-deflated Hutchinson: exact Σα over a Krylov basis + probes on the rest.

    The basis is ``shared`` (a finished run from a start vector independent of ``generator``;
    ``budget`` − its steps, at least :data:`MIN_PROBES`, probes follow) or a run of its own from
    a Rademacher start, as long as :func:`krylov_pays` says (at most ``budget`` − MIN_PROBES
    steps)."""
    if shared is None:
        shared = lanczos(matvec, rademacher(dim, generator, dtype, device),
                         max(1, budget - MIN_PROBES),
                         stop=lambda a, b, beta: not krylov_pays(a, b, beta, budget, dim))
    return deflated_rest(matvec, shared, _deflated_probes(budget, shared.n_matvec, dim), dim,
                         generator=generator, dtype=dtype, device=device)


def _deflated_probes(budget: int, steps: int, dim: int) -> int:
    return 0 if steps >= dim else max(budget - steps, MIN_PROBES)


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


TRACE_ESTIMATORS.register("deflated")(
    TraceEstimator(deflated, products_after=_deflated_probes,
                   krylov=lambda budget, dim: (
                       lambda a, b, beta: krylov_pays(a, b, beta, budget, dim))))


# --- gauss-newton (exact for piecewise-linear networks) ----------------------------------------

TRACE_ESTIMATORS.register("gauss-newton")(
    TraceEstimator(None, products_after=lambda budget, steps, dim: 0, exact=gauss_newton_trace,
                   unmet=not_piecewise_linear,
                   requirement="is exact only for piecewise-linear networks (convolutions, "
                               "linear layers, ReLU, pooling, residual sums, BatchNorm in eval "
                               "mode)"))

AUTO = "auto"
AUTO_PREFERENCE = ("gauss-newton", "deflated")
"""What ``auto`` picks: the first of these that applies to the model."""


def estimator_choices() -> tuple[str, ...]:
    """Valid values of ``hessian.trace_estimator``."""
    return (AUTO, *TRACE_ESTIMATORS.names())


def resolve_estimator(name: str, model) -> str:
    """The estimator ``name`` stands for on ``model`` (in the mode the Hessian is taken in):
    ``auto`` → the first of :data:`AUTO_PREFERENCE` that applies. An estimator that does not
    apply raises FlatkdError naming what is in the way and the valid choices for this model."""
    if name == AUTO:
        return next(n for n in AUTO_PREFERENCE if not TRACE_ESTIMATORS.get(n).problems(model))
    estimator = TRACE_ESTIMATORS.get(name)
    bad = estimator.problems(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        valid = [AUTO, *(n for n in TRACE_ESTIMATORS.names()
                         if not TRACE_ESTIMATORS.get(n).problems(model))]
        raise FlatkdError(f"hessian.trace_estimator={name} {estimator.requirement}; not here: "
                          f"{shown}; valid choices for this model: {', '.join(valid)}")
    return name
