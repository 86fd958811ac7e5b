"""Kendall's τ between a measure and a generalization target: point estimate (scipy), a
paired percentile bootstrap confidence interval (``scipy.stats.bootstrap``) and the granulated
τ of Jiang et al. 2020 ("Fantastic Generalization Measures", §4).

* τ is Kendall's τ-b (ties handled), ``scipy.stats.kendalltau``.
* Bootstrap: networks are resampled with replacement (measure and target stay paired);
  each resample's τ-b is computed by :func:`tau_b` (vectorised; equal to scipy's value on the
  resampled arrays — tested), a resample in which either variable is constant has no ranking
  information and counts as τ = 0. Interval: percentile method.
* Granulated τ: for each hyper-parameter axis i (:data:`AXES`), the networks are grouped by
  every *other* identity column; ψ_i is the mean of τ over the groups in which axis i takes two
  or more values (and τ is defined); Ψ is the mean of ψ_i over the axes present. Axes:
  ``method`` (the configuration: method and its interval vary together), ``interval`` (within
  one method), ``seed``, ``network``, ``dataset``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

COLUMNS = ("dataset", "network", "model", "method", "interval", "seed")
AXES: dict[str, tuple[str, ...]] = {
    "method": ("method", "interval"),
    "interval": ("interval",),
    "seed": ("seed",),
    "network": ("network",),
    "dataset": ("dataset",),
}


def kendall(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(τ-b, two-sided p-value) from scipy; (nan, nan) when undefined (a constant variable or
    fewer than 2 points)."""
    if len(x) < 2:
        return math.nan, math.nan
    res = stats.kendalltau(np.asarray(x, float), np.asarray(y, float))
    return float(res.statistic), float(res.pvalue)


def tau_b(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's τ-b along ``axis`` for batches of paired samples (``[..., n]``), computed
    from pair signs: Σ sgn(Δx)·sgn(Δy) / sqrt(Σ sgn(Δx)² · Σ sgn(Δy)²); 0 where a variable is
    constant."""
    x = np.moveaxis(np.asarray(x, float), axis, -1)
    y = np.moveaxis(np.asarray(y, float), axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    num = (sx * sy).sum(axis=(-1, -2))
    den = np.sqrt((sx * sx).sum(axis=(-1, -2)) * (sy * sy).sum(axis=(-1, -2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def bootstrap_ci(x: Sequence[float], y: Sequence[float], *, n_resamples: int,
                 confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of τ-b (paired resampling of the networks)."""
    if len(x) < 3:
        return math.nan, math.nan
    res = stats.bootstrap((np.asarray(x, float), np.asarray(y, float)), tau_b, paired=True,
                          vectorized=True, n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _key(row: Mapping, columns: Sequence[str]) -> tuple:
    return tuple(str(row.get(c)) for c in columns)


def granulated(rows: Sequence[Mapping], values: Sequence[float], targets: Sequence[float]
               ) -> dict:
    """{"axes": {axis: {"psi": ψ_i, "groups": number of groups used}}, "overall": Ψ} over the
    axes that vary within at least one group (ψ_i nan when no group has a defined τ)."""
    out: dict[str, dict] = {}
    for axis, varied in AXES.items():
        rest = [c for c in COLUMNS if c not in varied]
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(_key(row, rest), []).append(i)
        taus, varying = [], False
        for idx in groups.values():
            if len({_key(rows[i], varied) for i in idx}) < 2:
                continue
            varying = True
            t, _ = kendall([values[i] for i in idx], [targets[i] for i in idx])
            if not math.isnan(t):
                taus.append(t)
        if varying:
            out[axis] = {"psi": math.fsum(taus) / len(taus) if taus else math.nan,
                         "groups": len(taus)}
    psis = [a["psi"] for a in out.values() if not math.isnan(a["psi"])]
    return {"axes": out, "overall": math.fsum(psis) / len(psis) if psis else math.nan}
