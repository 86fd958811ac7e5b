"""BIM (Kurakin et al., 2017) adversarial accuracy: step schedules, foolbox runner, reference.

BIM iterates x ← clip_{x0,ε}(x + α·sign(∇ₓ CE(f(x), y))) for ``steps`` steps from x0 (no
random start), inside the pixel bounds [0, 1] (normalisation is inside the model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..registry import Registry
from ..training.distributed import DistContext, batch_range, sum_counts
from .foolbox_compat import linf_bim


@dataclass(frozen=True)
class BimSchedule:
    """One BIM setting; ``epsilon`` and ``stepsize`` are absolute (pixel range [0, 1])."""

    epsilon: float
    stepsize: float
    steps: int


BIM_PROTOCOLS: Registry[Callable[[float], BimSchedule]] = Registry("BIM protocol")
"""Protocol name → function mapping ε in units of 1/255 to a :class:`BimSchedule`."""


@BIM_PROTOCOLS.register("kurakin")
def kurakin(eps255: float) -> BimSchedule:
    """Kurakin et al. 2017: α = 1/255, steps = ⌊min(ε·255 + 4, 1.25·ε·255)⌋, at least 1."""
    steps = max(1, math.floor(min(eps255 + 4, 1.25 * eps255)))
    return BimSchedule(epsilon=eps255 / 255, stepsize=1 / 255, steps=steps)


@BIM_PROTOCOLS.register("foolbox-default")
def foolbox_default(eps255: float) -> BimSchedule:
    """foolbox's ``LinfBasicIterativeAttack`` defaults: α = 0.2·ε, 10 steps."""
    return BimSchedule(epsilon=eps255 / 255, stepsize=0.2 * eps255 / 255, steps=10)


def schedules(epsilons255: list[float], protocol: str) -> list[BimSchedule]:
    """The BIM settings for an ε grid given in units of 1/255."""
    make = BIM_PROTOCOLS.get(protocol)
    return [make(float(e)) for e in epsilons255]


def bim_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[BimSchedule], *,
             device: torch.device, batch_size: int, progress: bool,
             dist: DistContext = DistContext()) -> list[dict]:
    """Adversarial accuracy of ``model`` (eval mode) under each BIM setting, via foolbox.

    x: [N, C, H, W] float in [0, 1]; y: [N]. Returns one result row per setting:
    {"attack": "BIM", "epsilon", "stepsize", "steps", "accuracy"} (accuracy a fraction).
    Under ``dist`` each rank attacks its batches (:func:`batch_range`) and the counts are summed
    over the ranks.
    """
    n = len(y)
    share = batch_range(n, batch_size, dist)
    bar = tqdm(total=len(share) * len(grid), desc="BIM", unit="img", disable=not progress)
    correct = []
    for s in grid:
        correct.append(0)
        for i in range(share.start, share.stop, batch_size):
            _, is_adv = linf_bim(model, x[i:i + batch_size], y[i:i + batch_size],
                                 epsilon=s.epsilon, stepsize=s.stepsize, steps=s.steps,
                                 device=device)
            correct[-1] += int((~is_adv).sum())
            bar.update(len(is_adv))
    bar.close()
    return [{"attack": "BIM", "epsilon": s.epsilon, "stepsize": s.stepsize, "steps": s.steps,
             "accuracy": c / n} for s, c in zip(grid, sum_counts(correct, dist))]


def bim_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  s: BimSchedule) -> torch.Tensor:
    """Plain-torch BIM, independent of foolbox (cross-check in tests and the benchmark).

    Gradient of the summed cross-entropy; x, returned x_adv: [N, C, H, W] in [0, 1].
    """
    x0 = x.detach().float()
    x_adv = x0.clone()
    for _ in range(s.steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + s.stepsize * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x0 - s.epsilon), x0 + s.epsilon).clamp(0.0, 1.0)
    return x_adv.detach()
