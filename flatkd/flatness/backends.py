"""Hessian backends: one interface, one result schema (a result's ``flatness.hessian``).

A backend is ``fn(model, batches, cfg, *, seed, progress) -> dict`` with keys
``trace {mean, stderr, n_hvp}``, ``top_eigenvalues`` (descending), ``density {grid, values}``,
``backend``, ``n_samples``, ``bn_mode``, ``trace_estimator``. The model comes back exactly as it
went in (modes, requires_grad, .grad, buffers).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..registry import Registry
from .config import HessianConfig
from .data import Batches
from .density import gaussian_density, quadrature, slq_nodes
from .hvp import HessianOperator
from .lanczos import top_eigen_run, top_from_run
from .pyhessian_compat import PyHessian
from .state import preserved, set_bn_mode
from .trace import TRACE_ESTIMATORS, rademacher, resolve_estimator

Backend = Callable[..., dict]
HESSIAN_BACKENDS: Registry[Backend] = Registry("hessian backend")

STAGES = ("eigenvalues", "trace", "density")


def stage_seed(seed: int, stage: str) -> int:
    """Independent, reproducible seed per stage, so changing one stage's settings leaves the
    random draws of the others unchanged."""
    return (seed * 1_000_003 + STAGES.index(stage) * 7_919) % (2 ** 63)


def _generator(seed: int, stage: str) -> torch.Generator:
    return torch.Generator().manual_seed(stage_seed(seed, stage))


def _section(cfg: HessianConfig, n: int, backend: str, trace: dict, top: list[float],
             grid, values, estimator: str, extra: dict) -> dict:
    return {"trace": trace, "top_eigenvalues": [float(v) for v in top],
            "density": {"grid": [float(g) for g in grid], "values": [float(v) for v in values]},
            "backend": backend, "n_samples": n, "bn_mode": cfg.bn_mode,
            "trace_estimator": estimator, **extra}


def planned_products(cfg: HessianConfig, estimator: str, dim: int, run_steps: int) -> int:
    """Hessian-vector products the native backend spends once its shared Lanczos run has
    ``run_steps`` steps: the run, the trace estimator's own products and the extra SLQ probes
    (each at most min(slq_steps, P) steps; fewer only if a Krylov space is exhausted)."""
    own = TRACE_ESTIMATORS.get(estimator).products_after(cfg.trace_hvps, run_steps, dim)
    return run_steps + own + (cfg.slq_probes - 1) * min(cfg.slq_steps, dim)


@HESSIAN_BACKENDS.register("native")
def native(model: nn.Module, batches: Batches, cfg: HessianConfig, *, seed: int,
           progress: bool = False) -> dict:
    """Lanczos top-k (full reorthogonalisation), variance-reduced trace, SLQ density.

    One Lanczos run from a Rademacher start serves three purposes: its top Ritz values are the
    top-k eigenvalues (it runs until their error bounds meet ``tol``, and for at least
    ``slq_steps`` steps), it is the first SLQ probe of the density, and its basis deflates the
    trace (``deflated``: Σα exact + Hutchinson on the rest with ``trace_hvps`` − steps, at least
    15, projected probes; the run goes on while a step lowers the trace's variance more than a
    probe would; the trace's n_hvp counts the shared steps). The start vector is independent of
    the probes: unbiased. The progress bar counts products; its total is the planned number,
    exact once the shared run has ended. The run's length depends on convergence (it may go on
    past the ``slq_steps`` the plan assumes, up to max_iter, or trace_hvps for the deflated
    trace), so while it goes on the total is at least the plan for a run one step longer than
    the steps taken: the count never passes the total. ``trace_estimator=auto`` is resolved on
    the model first (:func:`~flatkd.flatness.trace.resolve_estimator`: the exact
    ``gauss-newton`` trace for piecewise-linear networks, which spends no products, else
    ``deflated``).
    """
    with preserved(model):
        set_bn_mode(model, cfg.bn_mode)
        name = resolve_estimator(cfg.trace_estimator, model)
        estimator = TRACE_ESTIMATORS.get(name)
        with HessianOperator(model, batches,
                             cache_graphs=len(batches.share) <= cfg.graph_cache_samples) as op:
            guess = min(max(cfg.slq_steps, cfg.top_k + 2), op.dim)
            with tqdm(total=planned_products(cfg, name, op.dim, guess),
                      desc="hessian-vector products", disable=not progress, leave=False) as bar:
                def shared_matvec(v: torch.Tensor) -> torch.Tensor:
                    # the shared run outlasting the plan raises the total, never past the count
                    bar.total = max(bar.total, planned_products(cfg, name, op.dim, bar.n + 1))
                    return matvec(v)

                def matvec(v: torch.Tensor) -> torch.Tensor:
                    bar.update(1)
                    return op.matvec(v)

                common = {"dtype": op.dtype, "device": op.device}
                gen = _generator(seed, "eigenvalues")
                extend = estimator.krylov(cfg.trace_hvps, op.dim) if estimator.krylov else None
                run = top_eigen_run(shared_matvec, rademacher(op.dim, gen, **common), cfg.top_k,
                                    tol=cfg.tol, max_iter=cfg.max_iter, generator=gen,
                                    min_steps=cfg.slq_steps, extend=extend,
                                    extend_max=cfg.trace_hvps if extend else 0)
                bar.total = planned_products(cfg, name, op.dim, run.n_matvec)
                bar.refresh()
                eig = top_from_run(run, cfg.top_k, op.dim, cfg.tol)
                trace = estimator.run(matvec, op, cfg.trace_hvps,
                                      generator=_generator(seed, "trace"), shared=run,
                                      progress=progress)
                nodes, weights, density_hvp = slq_nodes(
                    matvec, op.dim, cfg.slq_probes - 1, cfg.slq_steps,
                    generator=_generator(seed, "density"), **common)
                first = quadrature(run)
                bar.total = op.n_hvp                    # differs only if a Krylov space ran out
                bar.refresh()
    grid, values = gaussian_density([first[0]] + nodes, [first[1]] + weights, cfg.density_grid,
                                    cfg.density_width)
    return _section(cfg, batches.n, "native", trace.as_dict(), eig.values, grid, values,
                    name, {"lanczos_steps": run.n_matvec, "eigen_converged": eig.converged,
                           "n_hvp_total": op.n_hvp})


@HESSIAN_BACKENDS.register("pyhessian")
def pyhessian(model: nn.Module, batches: Batches, cfg: HessianConfig, *, seed: int,
              progress: bool = False) -> dict:
    """PyHessian 0.1 through the compat wrapper: power iteration, Hutchinson, its SLQ."""
    device = next(model.parameters()).device
    with PyHessian(model, list(batches), device) as ph, \
            tqdm(total=3, desc="pyhessian", disable=not progress, leave=False) as bar:
        top = ph.top_eigenvalues(cfg.top_k, tol=cfg.tol, max_iter=cfg.max_iter,
                                 seed=stage_seed(seed, "eigenvalues"))
        bar.update(1)
        trace = ph.trace(cfg.trace_hvps, seed=stage_seed(seed, "trace"))
        bar.update(1)
        nodes, weights = ph.density_nodes(cfg.slq_steps, cfg.slq_probes,
                                          seed=stage_seed(seed, "density"))
        bar.update(1)
    grid, values = gaussian_density(nodes, weights, cfg.density_grid, cfg.density_width)
    return _section(cfg, batches.n, "pyhessian", trace, top, grid, values, "hutchinson", {})
