"""Kendall's τ between a measure and a generalization target: point estimate (scipy), a
paired percentile bootstrap confidence interval (``scipy.stats.bootstrap``) and the granulated
τ of Jiang et al. 2020 ("Fantastic Generalization Measures", §4).

* τ is Kendall's τ-b (ties handled), ``scipy.stats.kendalltau``.
* Bootstrap: networks are resampled with replacement (measure and target stay paired);
  each resample's τ-b is computed by :func:`tau_b` (vectorised; equal to scipy's value on the
  resampled arrays — tested), a resample in which either variable is constant has no ranking
  information and counts as τ = 0. Interval: percentile method.
* Granulated τ (Jiang et al. 2020, Eq. 4): seeds are replicates, never an axis — the networks
  of one configuration (every identity column and recorded hyper-parameter but the seed) are
  first collapsed to one point, the mean measure and mean target over its seeds. Each varied
  hyper-parameter type i is an axis: ``method`` (the configuration: the method together with
  its interval, which is nested inside it and so not an axis of its own), ``network``,
  ``dataset``, and every study hyper-parameter the results record
  (:data:`~flatkd.training.config.STUDY_HYPERPARAMETERS`: lr, batch size, …) that varies. The
  configurations are grouped by every *other* axis (and the evaluated model); ψ_i is the mean
  of τ over the groups in which axis i takes two or more values (and τ is defined); Ψ is the
  mean of ψ_i over the axes that vary.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

#: identity columns of a study row; the seed is a replicate, the rest name a configuration
COLUMNS = ("dataset", "network", "model", "method", "interval", "seed")
REPLICATE = "seed"
#: axes named by identity columns (the method and its nested interval are one axis)
AXES: dict[str, tuple[str, ...]] = {
    "method": ("method", "interval"),
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


def _identity(row: Mapping) -> dict[str, object]:
    """A row's configuration: identity columns but the seed, and its recorded hyper-parameters
    (keyed ``hp:<config key>``)."""
    ident = {c: row.get(c) for c in COLUMNS if c != REPLICATE}
    ident |= {f"hp:{k}": v for k, v in (row.get("hyperparameters") or {}).items()}
    return ident


def configurations(rows: Sequence[Mapping], values: Sequence[float],
                   targets: Sequence[float]) -> tuple[list[dict], list[float], list[float]]:
    """``rows`` collapsed over their replicates (seeds): one identity per configuration (first
    seen order), with the mean of ``values`` and of ``targets`` over its networks."""
    groups: dict[tuple, list[int]] = {}
    idents: dict[tuple, dict] = {}
    for i, row in enumerate(rows):
        ident = _identity(row)
        key = _key(ident, sorted(ident))
        groups.setdefault(key, []).append(i)
        idents.setdefault(key, ident)
    x = [math.fsum(values[i] for i in idx) / len(idx) for idx in groups.values()]
    y = [math.fsum(targets[i] for i in idx) / len(idx) for idx in groups.values()]
    return list(idents.values()), x, y


def _axes(configs: Sequence[Mapping]) -> dict[str, tuple[str, ...]]:
    """Every axis that takes two or more values over ``configs``: :data:`AXES`, then one per
    recorded hyper-parameter (named by its config key)."""
    columns = sorted({c for ident in configs for c in ident if c.startswith("hp:")})
    axes = {**AXES, **{c[3:]: (c,) for c in columns}}
    return {a: cols for a, cols in axes.items()
            if len({_key(ident, cols) for ident in configs}) > 1}


def granulated(rows: Sequence[Mapping], values: Sequence[float], targets: Sequence[float]
               ) -> dict:
    """{"axes": {axis: {"psi": ψ_i, "groups": groups with a defined τ}}, "overall": Ψ,
    "configurations": configurations after collapsing seeds} over the axes that vary (ψ_i nan
    when no group has a defined τ)."""
    configs, x, y = configurations(rows, values, targets)
    axes = _axes(configs)
    columns = sorted({c for ident in configs for c in ident})
    out: dict[str, dict] = {}
    for axis, varied in axes.items():
        rest = [c for c in columns if c not in varied]
        groups: dict[tuple, list[int]] = {}
        for i, ident in enumerate(configs):
            groups.setdefault(_key(ident, rest), []).append(i)
        taus = []
        for idx in groups.values():
            if len({_key(configs[i], varied) for i in idx}) < 2:
                continue
            t, _ = kendall([x[i] for i in idx], [y[i] for i in idx])
            if not math.isnan(t):
                taus.append(t)
        out[axis] = {"psi": math.fsum(taus) / len(taus) if taus else math.nan,
                     "groups": len(taus)}
    psis = [a["psi"] for a in out.values() if not math.isnan(a["psi"])]
    return {"axes": out, "overall": math.fsum(psis) / len(psis) if psis else math.nan,
            "configurations": len(configs)}
