"""Gaussian parameter-perturbation curves (paper §5.4, Fig. 4; Zhang et al. 2018, Li et al. 2018).

For each σ and repeat r the weights become θ + σ·d_r and the training loss (mean cross-entropy)
and training accuracy are measured on a fixed sample set, the network in eval mode:

* ``absolute``: d_r ~ N(0, I) per entry, so the noise is N(0, σ²);
* ``filter`` (Li et al. 2018): d_r drawn N(0, I), then each filter/neuron (slice along dim 0;
  a 1-D parameter counts as one filter) rescaled to the norm of the same filter of θ, so σ is
  relative to the weights' scale.

1-D parameters (biases, BatchNorm affine) are perturbed only when ``perturb_bn_bias``. Repeat r
uses the same direction d_r at every σ (common random numbers, smoother curves), drawn from a
local generator seeded by (seed, r). σ = 0 is deterministic: evaluated once, ``repeats`` = 1,
and equal to the unperturbed numbers exactly. The weights are restored bit-exactly by copying
saved tensors back (never by subtracting the noise).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..training.distributed import sum_over_ranks
from .config import PerturbationConfig
from .data import Batches
from .state import preserved


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` as it is, over ``batches`` (under
    torchrun: the ranks' sums added)."""
    loss, correct = 0.0, 0
    for x, y in batches:
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    loss, correct = sum_over_ranks([loss, correct], batches.dist)
    return loss / batches.n, correct / batches.n


def direction(params: list[torch.Tensor], mode: str, generator: torch.Generator) -> list[torch.Tensor]:
    """One noise direction per parameter (same shapes), ``absolute`` or ``filter``-normalised."""
    out = []
    for p in params:
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if mode == "filter":
            rows_d = d.reshape(d.shape[0], -1) if d.dim() > 1 else d.reshape(1, -1)
            rows_p = p.detach().reshape(rows_d.shape)
            scale = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True)
            d = (rows_d * scale).reshape(p.shape)
        out.append(d)
    return out


def _row(sigma: float, stats: list[tuple[float, float]]) -> dict:
    n = len(stats)

    def mean_std(xs: list[float]) -> tuple[float, float]:
        m = math.fsum(xs) / n
        return m, (math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0)

    loss_mean, loss_std = mean_std([s[0] for s in stats])
    acc_mean, acc_std = mean_std([s[1] for s in stats])
    return {"sigma": float(sigma), "loss_mean": loss_mean, "loss_std": loss_std,
            "acc_mean": acc_mean, "acc_std": acc_std, "repeats": n}


def perturbation_curve(model: nn.Module, batches: Batches, cfg: PerturbationConfig, *, seed: int,
                       progress: bool = False) -> list[dict]:
    """Rows ``{sigma, loss_mean, loss_std, acc_mean, acc_std, repeats}`` in ``cfg.sigmas`` order."""
    with preserved(model):
        model.eval()
        params = [p for p in model.parameters() if cfg.perturb_bn_bias or p.dim() > 1]
        saved = [p.detach().clone() for p in params]
        draws = sum(1 if s == 0 else cfg.repeats for s in cfg.sigmas)
        rows = []
        with tqdm(total=draws, desc="perturbation", disable=not progress, leave=False) as bar:
            for sigma in cfg.sigmas:
                if sigma == 0:
                    stats = [evaluate(model, batches)]
                    bar.update(1)
                    rows.append(_row(sigma, stats))
                    continue
                stats = []
                for r in range(cfg.repeats):
                    gen = torch.Generator().manual_seed((seed * 1_000_003 + r) % (2 ** 63))
                    with torch.no_grad():
                        for p, d in zip(params, direction(params, cfg.mode, gen)):
                            p.add_(d, alpha=sigma)
                    try:
                        stats.append(evaluate(model, batches))
                    finally:
                        with torch.no_grad():
                            for p, s in zip(params, saved):
                                p.copy_(s)
                    bar.update(1)
                rows.append(_row(sigma, stats))
    return rows
