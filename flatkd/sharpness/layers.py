"""Per-layer curvature: trace and top eigenvalue of each diagonal block H_bb of the Hessian.

Parameters are split into groups b (stages or layers, :func:`parameter_groups`). For a group,
H_bb v_b = (H [v_b; 0])_b — one Hessian-vector product of the flatness suite's
:class:`~flatkd.flatness.hvp.HessianOperator` with the vector zero outside the group.

* top eigenvalue of H_bb: Lanczos with full reorthogonalisation on that operator
  (:func:`flatkd.flatness.lanczos.top_eigen_run`); a group no larger than ``max_iter`` is
  solved exactly (its Krylov space spans it);
* trace of H_bb: exact on the group's Lanczos subspace Q_b (Σ α) plus Hutchinson on the rest,
  with probes shared by all groups: z = [z̃_1; …; z̃_G], z̃_b = (I − Q_bQ_bᵀ) r_b with r
  Rademacher, and one full product H z. Then z̃_bᵀ (H z)_b = z̃_bᵀ H_bb z̃_b + Σ_{c≠b} z̃_bᵀ H_bc z̃_c,
  and the cross terms have mean zero (the groups' probes are independent and centred), so each
  group's estimate is unbiased for tr((I−Q_bQ_bᵀ) H_bb (I−Q_bQ_bᵀ)) at the cost of one product
  per probe for all groups together. The Lanczos start vectors are independent of the probes.

Since tr H = Σ_b tr H_bb, the group traces add up to the whole-network trace (in expectation;
exactly once every group is solved exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..flatness.data import Batches
from ..flatness.hvp import HessianOperator
from ..flatness.lanczos import lanczos, ritz, top_eigen_run
from ..flatness.state import preserved, set_bn_mode
from ..flatness.trace import rademacher
from ..registry import Registry
from .config import LayersConfig

GROUPINGS: Registry = Registry("layer granularity")


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


@GROUPINGS.register("stage")
def stage_groups(model: nn.Module) -> dict[str, list[str]]:
    """Top-level children; a container (ModuleList/Sequential) whose children are themselves
    containers of modules (a list of stages) is split into its children."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups: dict[str, list[str]] = {}
    own = [n for n, _ in model.named_parameters(recurse=False)]
    for n in own:
        groups.setdefault(n, []).append(n)
    for cname, child in model.named_children():
        nested = isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) > 0 and all(
            any(True for _ in c.children()) for c in child)
        parts = [(f"{cname}.{k}", c) for k, c in child.named_children()] if nested \
            else [(cname, child)]
        for gname, mod in parts:
            members = [names[id(p)] for p in mod.parameters()]
            if members:
                groups[gname] = members
    return groups


@GROUPINGS.register("layer")
def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Every module that owns parameters directly (convolution, BatchNorm, linear, …)."""
    groups: dict[str, list[str]] = {}
    for mname, mod in model.named_modules():
        if _has_params(mod):
            groups[mname or "(root)"] = [f"{mname}.{n}" if mname else n
                                         for n, _ in mod.named_parameters(recurse=False)]
    return groups


def parameter_groups(model: nn.Module, granularity: str) -> dict[str, list[str]]:
    """Group name → parameter names, covering every parameter exactly once, in model order."""
    groups = GROUPINGS.get(granularity)(model)
    seen = [n for ns in groups.values() for n in ns]
    every = [n for n, _ in model.named_parameters()]
    if sorted(seen) != sorted(every):                        # shared or missed parameters
        raise ValueError(f"parameter groups of {granularity!r} do not partition the parameters")
    return groups


@dataclass
class _Group:
    name: str
    index: torch.Tensor            # positions in the flat parameter vector
    run: object = None


def _flat_index(model: nn.Module, groups: dict[str, list[str]], device) -> list[_Group]:
    offsets, start = {}, 0
    for n, p in model.named_parameters():
        offsets[n] = (start, p.numel())
        start += p.numel()
    out = []
    for g, members in groups.items():
        idx = torch.cat([torch.arange(offsets[n][0], offsets[n][0] + offsets[n][1])
                         for n in members])
        out.append(_Group(g, idx.to(device)))
    return out


def layer_curvature(model: nn.Module, batches: Batches, cfg: LayersConfig, *, seed: int) -> dict:
    """{"granularity", "n_samples", "groups": [{"name", "n_params", "trace": {mean, stderr},
    "top_eigenvalue", "lanczos_steps", "exact"}], "n_hvp"} for the mean cross-entropy on
    ``batches``, BatchNorm in eval mode; the model comes back unchanged."""
    groups = parameter_groups(model, cfg.granularity)
    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, batches, cache_graphs=True) as op:
            common = {"dtype": op.dtype, "device": op.device}
            parts = _flat_index(model, groups, op.device)
            gen_eig = torch.Generator().manual_seed((seed * 1_000_003 + 101) % (2 ** 63))
            gen_probe = torch.Generator().manual_seed((seed * 1_000_003 + 202) % (2 ** 63))
            rows = []
            for g in parts:
                dim = g.index.numel()

                def matvec(v: torch.Tensor, idx=g.index) -> torch.Tensor:
                    full = torch.zeros(op.dim, **common)
                    full[idx] = v
                    return op.matvec(full)[idx]

                v0 = rademacher(dim, gen_eig, **common)
                if dim <= cfg.max_iter:         # small: the whole block, exactly
                    g.run = lanczos(matvec, v0, dim, generator=gen_eig)
                else:
                    g.run = top_eigen_run(matvec, v0, 1, tol=cfg.tol, max_iter=cfg.max_iter,
                                          generator=gen_eig)
            samples: dict[str, list[float]] = {g.name: [] for g in parts}
            exact = {g.name: g.run.n_matvec >= g.index.numel() for g in parts}
            if not all(exact.values()):
                for _ in range(cfg.trace_probes):
                    z = torch.zeros(op.dim, **common)
                    for g in parts:
                        r = rademacher(g.index.numel(), gen_probe, **common)
                        basis = g.run.basis
                        for _ in range(2):
                            r = r - basis.T @ (basis @ r)
                        z[g.index] = r
                    hz = op.matvec(z)
                    for g in parts:
                        if not exact[g.name]:
                            samples[g.name].append(float(torch.dot(z[g.index].double(),
                                                                   hz[g.index].double())))
            n_hvp = op.n_hvp
    for g in parts:
        theta, _ = ritz(g.run.alphas, g.run.betas)
        krylov = math.fsum(g.run.alphas.tolist())
        s = samples[g.name]
        mean = math.fsum(s) / len(s) if s else 0.0
        se = math.sqrt(math.fsum((v - mean) ** 2 for v in s) / (len(s) - 1) / len(s)) \
            if len(s) > 1 else 0.0
        rows.append({"name": g.name, "n_params": int(g.index.numel()),
                     "trace": {"mean": krylov + mean, "stderr": se},
                     "top_eigenvalue": float(theta.max()), "lanczos_steps": g.run.n_matvec,
                     "exact": exact[g.name]})
    total = math.fsum(r["trace"]["mean"] for r in rows)
    return {"granularity": cfg.granularity, "n_samples": batches.n, "groups": rows,
            "trace_sum": total, "n_hvp": n_hvp}
