"""L∞ adversarial attacks through foolbox: BIM (:mod:`flatkd.robustness.bim`), FGSM and PGD.

Every attack maps ε given in units of 1/255 to result rows of one format,
``{"attack", "epsilon", "stepsize", "steps", "accuracy"}`` (+ ``"restarts"`` for PGD), ε and the
step absolute in the [0, 1] pixel range, accuracy a fraction of the whole test split. The model
runs in eval mode, bounds (0, 1).

* ``FGSM`` (Goodfellow et al. 2015): one step x + ε·sign(∇ₓ CE), foolbox
  ``LinfFastGradientAttack`` (no random start).
* ``PGD`` (Madry et al. 2018): foolbox ``LinfPGD`` from a uniformly random start in the ε-ball,
  ``pgd_steps`` steps of 2.5·ε / pgd_steps, ``pgd_restarts`` restarts; an image counts as robust
  only when no restart fools the model. foolbox draws the random start from torch's global
  generator: each (ε, restart, batch) runs under its own seed derived from the evaluation seed,
  inside ``torch.random.fork_rng`` (the caller's random state is left untouched), so the rows
  are reproducible and do not depend on what ran before.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..registry import Registry
from ..training.distributed import DistContext, batch_range, sum_counts
from .bim import bim_rows, schedules
from .foolbox_compat import fb


@dataclass(frozen=True)
class AttackSettings:
    """What every attack runner gets besides the data (see ``RobustnessConfig``)."""

    epsilons: list[float]            # units of 1/255
    bim_protocol: str
    pgd_steps: int
    pgd_restarts: int
    seed: int


Runner = Callable[..., list[dict]]
ATTACKS: Registry[Runner] = Registry("attack")
"""Attack name (as in ``robustness.attacks``) → ``fn(model, x, y, settings, *, device,
batch_size, progress, dist) → rows`` (``dist``: a :class:`DistContext`)."""


def _prepare(x: torch.Tensor, y: torch.Tensor, device: torch.device):
    return x.to(device=device, dtype=torch.float32).clamp(0.0, 1.0), y.to(device=device,
                                                                           dtype=torch.long)


def fgsm_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox FGSM on one batch → (x_adv with ‖x_adv − x‖∞ ≤ ε in [0, 1], is_adversarial)."""
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
    x, y = _prepare(x, y, device)
    _, x_adv, is_adv = fb.attacks.LinfFastGradientAttack(random_start=False)(
        fmodel, x, y, epsilons=epsilon)
    return x_adv, is_adv


def attack_seed(seed: int, attack: str, epsilon: float, restart: int, start: int) -> int:
    """Seed of one (attack, ε, restart, first image index) run: independent of batching order."""
    return int(np.random.SeedSequence([seed, zlib.crc32(attack.encode()),
                                       int(round(epsilon * 255 * 1000)), restart, start])
               .generate_state(1)[0])


def pgd_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
              stepsize: float, steps: int, seed: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox L∞ PGD (random start) on one batch, random start drawn under ``seed``."""
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
    x, y = _prepare(x, y, device)
    cuda = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        _, x_adv, is_adv = fb.attacks.LinfPGD(abs_stepsize=stepsize, steps=steps,
                                              random_start=True)(fmodel, x, y, epsilons=epsilon)
    return x_adv, is_adv


@ATTACKS.register("bim")
def _bim(model, x, y, s: AttackSettings, *, device, batch_size, progress, dist) -> list[dict]:
    return bim_rows(model, x, y, schedules(s.epsilons, s.bim_protocol), device=device,
                    batch_size=batch_size, progress=progress, dist=dist)


@ATTACKS.register("fgsm")
def _fgsm(model, x, y, s: AttackSettings, *, device, batch_size, progress, dist) -> list[dict]:
    share = batch_range(len(y), batch_size, dist)
    fooled = []
    for e in tqdm(s.epsilons, desc="FGSM", disable=not progress, leave=False):
        fooled.append(0)
        for i in range(share.start, share.stop, batch_size):
            _, is_adv = fgsm_batch(model, x[i:i + batch_size], y[i:i + batch_size],
                                   epsilon=float(e) / 255, device=device)
            fooled[-1] += int(is_adv.sum())
    return [{"attack": "FGSM", "epsilon": float(e) / 255, "stepsize": float(e) / 255, "steps": 1,
             "accuracy": 1 - f / len(y)} for e, f in zip(s.epsilons, sum_counts(fooled, dist))]


def pgd_stepsize(epsilon: float, steps: int) -> float:
    """Madry et al.'s rule of thumb: 2.5·ε / steps (the iterates can cross the ball)."""
    return 2.5 * epsilon / steps


@ATTACKS.register("pgd")
def _pgd(model, x, y, s: AttackSettings, *, device, batch_size, progress, dist) -> list[dict]:
    share = batch_range(len(y), batch_size, dist)
    bar = tqdm(total=len(s.epsilons) * s.pgd_restarts * len(share), desc="PGD", unit="img",
               disable=not progress, leave=False)
    fooled = []
    for e in s.epsilons:
        eps = float(e) / 255
        hit = torch.zeros(len(share), dtype=torch.bool)        # this rank's samples
        for r in range(s.pgd_restarts):
            for i in range(share.start, share.stop, batch_size):
                _, is_adv = pgd_batch(model, x[i:i + batch_size], y[i:i + batch_size],
                                      epsilon=eps, stepsize=pgd_stepsize(eps, s.pgd_steps),
                                      steps=s.pgd_steps,
                                      seed=attack_seed(s.seed, "PGD", eps, r, i), device=device)
                hit[i - share.start:i - share.start + batch_size] |= is_adv.cpu()
                bar.update(len(is_adv))
        fooled.append(int(hit.sum()))
    bar.close()
    rows = []
    for e, f in zip(s.epsilons, sum_counts(fooled, dist)):
        eps = float(e) / 255
        rows.append({"attack": "PGD", "epsilon": eps, "stepsize": pgd_stepsize(eps, s.pgd_steps),
                     "steps": s.pgd_steps, "restarts": s.pgd_restarts,
                     "accuracy": 1 - f / len(y)})
    return rows


def attack_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                settings: AttackSettings, *, device: torch.device, batch_size: int,
                progress: bool, dist: DistContext = DistContext()) -> list[dict]:
    """Rows of every attack in ``names`` (config order), ε in ``settings.epsilons`` order.

    Under ``dist`` each rank attacks its batches (:func:`batch_range`: the single-process
    batches, so PGD's seeds, keyed by a batch's first sample index, are unchanged) and the
    counts are summed over the ranks."""
    rows = []
    for name in names:
        rows += ATTACKS.get(name)(model, x, y, settings, device=device, batch_size=batch_size,
                                  progress=progress, dist=dist)
    return rows
