"""``flatkd eval --suite flatness``: Hessian spectrum and perturbation curves of one network."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import FlatkdError
from ..training.distributed import DistContext
from .backends import HESSIAN_BACKENDS
from .config import HessianConfig, PerturbationConfig
from .data import first_samples
from .perturbation import perturbation_curve


def run_flatness(model: nn.Module, train_set: Dataset, hessian_cfg: HessianConfig,
                 perturbation_cfg: PerturbationConfig, *, seed: int, device: torch.device,
                 batch_size: int, progress: bool, dist: DistContext = DistContext()) -> dict:
    """The result file's ``flatness`` section for ``model`` (already on ``device``).

    ``train_set`` is the un-augmented train split; the Hessian is that of the mean cross-entropy
    on its first ``hessian_cfg.samples`` samples (mini-batches of ``batch_size``). Returns
    ``{"hessian": {trace {mean, stderr, n_hvp}, top_eigenvalues, density {grid, values}, backend,
    n_samples, bn_mode, trace_estimator, ...}, "perturbation": [{sigma, loss_mean, loss_std,
    acc_mean, acc_std, repeats}, ...]}``. Same seed → identical output; no timings inside.
    Bad settings raise FlatkdError before any work; the model comes back unchanged.
    Under ``dist`` (torchrun) the samples are split over the ranks and every Hessian-vector
    product and loss is summed over them; every rank returns the same dict.
    """
    hessian_cfg.validate()
    perturbation_cfg.validate()
    n_params = sum(p.numel() for p in model.parameters())
    if hessian_cfg.top_k > n_params:
        raise FlatkdError(f"hessian.top_k={hessian_cfg.top_k} exceeds the number of parameters "
                          f"({n_params}); valid values: 1..{n_params}")
    if len(train_set) < hessian_cfg.samples:
        raise FlatkdError(f"hessian.samples={hessian_cfg.samples} exceeds the train split "
                          f"({len(train_set)} samples); valid values: 1..{len(train_set)}")
    if dist.enabled and hessian_cfg.backend == "pyhessian":
        raise FlatkdError("hessian.backend=pyhessian runs in one process; under torchrun "
                          "valid choices: native")
    if any(p.device.type != torch.device(device).type for p in model.parameters()):
        raise ValueError(f"run_flatness: move the model to {device} first")

    batches = first_samples(train_set, hessian_cfg.samples, batch_size, device, dist=dist)
    hessian = HESSIAN_BACKENDS.get(hessian_cfg.backend)(model, batches, hessian_cfg, seed=seed,
                                                        progress=progress)
    pert_batches = batches if perturbation_cfg.data == "hessian" else first_samples(
        train_set, len(train_set), batch_size, device, materialise=False, dist=dist)
    rows = perturbation_curve(model, pert_batches, perturbation_cfg, seed=seed, progress=progress)
    return {"hessian": hessian, "perturbation": rows}
