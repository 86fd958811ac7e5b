"""Spectral density of H by stochastic Lanczos quadrature (SLQ), Gaussian-broadened on a grid.

φ(t) = (1/P) Σ_i δ(t − λ_i) ≈ (1/n_v) Σ_v Σ_j w_{v,j} g_σ(t − θ_{v,j}) (Ubaru, Chen & Saad
2017; Ghorbani, Krishnan & Xiao 2019): θ_{v,j} are the Ritz values of an m-step Lanczos run
from a normalised Rademacher vector v and w_{v,j} the squared first components of T_m's
eigenvectors (Σ_j w_{v,j} = 1), g_σ a unit-mass Gaussian. The grid extends 6σ beyond the extreme
Ritz values, so the density integrates to 1 (trapezoid rule) without renormalisation.
"""
from __future__ import annotations

import numpy as np
import torch

from .lanczos import LanczosRun, MatVec, lanczos, ritz
from .trace import rademacher


def quadrature(run: LanczosRun) -> tuple[np.ndarray, np.ndarray]:
    """SLQ nodes θ and weights w (float64) of one Lanczos run from a unit start vector."""
    theta, s = ritz(run.alphas, run.betas)
    return theta, s[0, :] ** 2


def slq_nodes(matvec: MatVec, dim: int, probes: int, steps: int, *, generator: torch.Generator,
              dtype: torch.dtype, device: torch.device) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Quadrature nodes θ and weights w per probe (float64 arrays), and products used."""
    nodes, weights, used = [], [], 0
    for _ in range(probes):
        run = lanczos(matvec, rademacher(dim, generator, dtype, device), steps)
        theta, w = quadrature(run)
        nodes.append(theta)
        weights.append(w)
        used += run.n_matvec
    return nodes, weights, used


def gaussian_density(nodes: list[np.ndarray], weights: list[np.ndarray], grid_size: int,
                     width: float) -> tuple[np.ndarray, np.ndarray]:
    """Broadened density on ``grid_size`` points; σ = ``width`` × (max θ − min θ).

    Returns (grid [G], values [G]), values ≥ 0 integrating to 1 over the grid.
    """
    theta = np.concatenate(nodes)
    w = np.concatenate(weights) / len(nodes)
    lo, hi = float(theta.min()), float(theta.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    sigma = width * span
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_size)
    z = (grid[:, None] - theta[None, :]) / sigma
    values = (np.exp(-0.5 * z ** 2) / (sigma * np.sqrt(2 * np.pi))) @ w
    return grid, values
