"""PAC-Bayes flatness (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find
Them", §3 and appendix): the largest σ of Gaussian weight noise whose expected training-accuracy
drop stays below a threshold d (their d = 0.1), found by a bounded bisection.

* isotropic: u ~ N(0, σ² I) on every parameter; the measure is 1/σ² (larger = sharper);
* magnitude-aware: u_i ~ N(0, σ′² w_i² + ε²) (ε = 10⁻³); the measure is 1/σ′².

The drop at a noise level is acc(w) − mean_r acc(w + u_r) over ``draws`` Gaussian directions
that are drawn once and reused at every level (common random numbers: the measured drop is
then a smooth function of σ and the bisection cannot be fooled by fresh noise at each probe).
Accuracy is measured with :func:`flatkd.flatness.perturbation.evaluate` (BatchNorm in eval
mode); the weights are restored bit-exactly after every draw.

Bisection on [0, sigma_max]: first sigma_max (if its drop stays ≤ d the search ends, reported
as not reached), then the midpoint — arithmetic while the lower end is 0, geometric afterwards,
since σ spans decades — until hi ≤ (1 + rel_tol)·lo or ``max_evals`` levels were evaluated.
Invariant: drop(lo) ≤ d < drop(hi); σ is reported as the geometric mean of the final bracket
(hi / 2 while its lower end is still 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..flatness.perturbation import evaluate
from .config import PacBayesConfig
from .params import assign, restored


@dataclass
class Bisection:
    """Result of :func:`bisect`: the bracket [lo, hi] with drop(lo) ≤ threshold < drop(hi)
    (``hi`` None when even the upper bound stays below), the drops there and the number of
    evaluated levels."""

    lo: float
    hi: float | None
    drop_lo: float
    drop_hi: float | None
    evaluations: int

    @property
    def reached(self) -> bool:
        return self.hi is not None

    @property
    def sigma(self) -> float:
        """Point estimate: the geometric mean of the bracket (hi/2 while lo = 0; the upper bound
        of the search when the threshold was not reached)."""
        if self.hi is None:
            return self.lo
        return math.sqrt(self.lo * self.hi) if self.lo > 0 else self.hi / 2

    def as_dict(self) -> dict:
        s = self.sigma
        return {"sigma": s, "inverse_sigma_sq": 1.0 / (s * s),        # s > 0: sigma_max > 0
                "bracket": [self.lo, self.hi], "drop_bracket": [self.drop_lo, self.drop_hi],
                "reached": self.reached, "evaluations": self.evaluations}


def bisect(drop: Callable[[float], float], threshold: float, *, sigma_max: float,
           max_evals: int, rel_tol: float) -> Bisection:
    """Bracket the level where ``drop`` (non-decreasing in σ, drop(0) = 0) crosses ``threshold``,
    calling it at most ``max_evals`` times."""
    d_hi = drop(sigma_max)
    n = 1
    if d_hi <= threshold:
        return Bisection(sigma_max, None, d_hi, None, n)
    lo, hi, d_lo = 0.0, sigma_max, 0.0
    while n < max_evals and not (lo > 0 and hi <= (1 + rel_tol) * lo):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        d = drop(mid)
        n += 1
        if d <= threshold:
            lo, d_lo = mid, d
        else:
            hi, d_hi = mid, d
    return Bisection(lo, hi, d_lo, d_hi, n)


def pacbayes_sigmas(model: nn.Module, batches, cfg: PacBayesConfig, *,
                    generator: torch.Generator) -> dict:
    """{"accuracy": unperturbed accuracy, "isotropic": {...}, "magnitude_aware": {...}} on
    ``batches`` (a :class:`flatkd.flatness.data.Batches`); each search as
    :meth:`Bisection.as_dict`. All parameters are perturbed."""
    with restored(model) as base:
        params = list(model.parameters())
        _, acc0 = evaluate(model, batches)
        noise = [[torch.randn(b.shape, generator=generator, dtype=b.dtype).to(b.device)
                  for b in base] for _ in range(cfg.draws)]

        def drop_for(std: Callable[[float], list[torch.Tensor]]) -> Callable[[float], float]:
            def drop(level: float) -> float:
                s = std(level)
                accs = []
                for n in noise:
                    assign(params, base, [si * ni for si, ni in zip(s, n)])
                    accs.append(evaluate(model, batches)[1])
                assign(params, base)
                return acc0 - math.fsum(accs) / len(accs)
            return drop

        def isotropic(sigma: float) -> list[torch.Tensor]:
            return [torch.full_like(b, sigma) for b in base]

        def magnitude(sigma: float) -> list[torch.Tensor]:
            return [torch.sqrt(sigma ** 2 * b.square() + cfg.epsilon ** 2) for b in base]

        out = {"accuracy": acc0}
        for name, std in (("isotropic", isotropic), ("magnitude_aware", magnitude)):
            out[name] = bisect(drop_for(std), cfg.threshold, sigma_max=cfg.sigma_max,
                               max_evals=cfg.max_evals, rel_tol=cfg.rel_tol).as_dict()
    return out
