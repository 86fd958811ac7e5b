"""``flatkd eval --suite landscape``: filter-normalised 1-D/2-D loss slices and, with
``landscape.path_to``, the linear path to a second checkpoint.

Section layout::

    {"n_samples", "resolution", "span",
     "origin": {loss, accuracy}, "directions": {normalisation, bn_and_bias, cosine_d1_d2},
     "1d": {alphas, loss, accuracy}, "2d": {alphas, betas, loss [[..]], accuracy [[..]]},
     "path": {partner: {path, sha256, method, arch, dataset, model, seed, interval},
              t, loss, accuracy, bn, bn_samples, barrier: {loss, loss_t, accuracy, accuracy_t}}}

``1d``/``2d`` are present when listed in ``landscape.slices``; ``path`` when ``path_to`` is set.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from ..checkpoint import load_checkpoint
from ..flatness.data import first_samples
from .config import LandscapeConfig
from .path import check_compatible, linear_path
from .slices import slices


def partner_network(path: str, model_name: str, device: torch.device,
                    prepare: Callable[[nn.Module], nn.Module] = lambda net: net
                    ) -> tuple[nn.Module, dict]:
    """The network ``model_name`` of checkpoint ``path`` — given the evaluated network's
    BatchNorm treatment by ``prepare`` — and its identity for the result."""
    ck = load_checkpoint(path)
    net = prepare(ck.build_model(model_name).to(device))
    ident = {"path": str(path), "sha256": ck.sha256, "method": ck.method, "arch": ck.arch,
             "dataset": ck.dataset, "model": model_name, "seed": ck.config.get("seed"),
             "interval": ck.raw.get("state", {}).get("interval_epochs")}
    return net, ident


def run_landscape(model: nn.Module, train_set: Dataset, cfg: LandscapeConfig, *, seed: int,
                  device: torch.device, batch_size: int, progress: bool,
                  model_name: str = "student",
                  prepare: Callable[[nn.Module], nn.Module] = lambda net: net) -> dict:
    """The ``landscape`` section for ``model`` (already on ``device``); same seed → identical
    output; the model comes back unchanged. ``prepare`` gives the path partner the BatchNorm
    treatment ``model`` had (the evaluator's ``bn`` setting)."""
    cfg.validate()
    partner = None
    if cfg.path_to is not None:                 # a bad partner fails before any work
        partner = partner_network(cfg.path_to, model_name, device, prepare)
        check_compatible(model, partner[0], f"landscape.path_to={cfg.path_to}")
    n = min(cfg.samples, len(train_set))
    batches = first_samples(train_set, n, batch_size, device)
    out = {"n_samples": n, "resolution": cfg.resolution, "span": cfg.span}
    if cfg.slices:
        gen = torch.Generator().manual_seed((seed * 1_000_003 + 4_241) % (2 ** 63))
        out.update(slices(model, batches, cfg.slices, resolution=cfg.resolution, span=cfg.span,
                          generator=gen, progress=progress))
    if partner is not None:
        net, ident = partner
        nb = min(cfg.bn_samples, len(train_set))
        bn_batches = first_samples(train_set, nb, batch_size, device, materialise=False)
        path = linear_path(model, net, batches, bn_batches, points=cfg.path_points,
                           bn=cfg.path_bn, progress=progress)
        out["path"] = {"partner": ident, **path, "bn_samples": nb if cfg.path_bn == "recompute"
                       else None}
    return out
