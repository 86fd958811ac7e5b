"""foolbox 3.3.4 quirks, wrapped in one place.

* Inputs must lie in the model bounds *exactly* — otherwise a bare ``AssertionError`` — and
  must be float32 (float64 reaches the model unconverted and fails inside it). We cast to
  float32 and clamp to [0, 1]; inputs are already [0, 1] by the data convention, so the clamp
  only removes rounding error.
* ``PyTorchModel`` without ``device=`` moves the model to ``cuda:0`` whenever CUDA is
  available, whatever device the model is on: ``device`` is always passed.
* The attack is called with ``abs_stepsize`` (foolbox's ``rel_stepsize`` is a multiple of ε,
  so ``rel_stepsize=0.2`` ≡ ``abs_stepsize=0.2·ε``) and ``random_start=False`` (BIM).

* ``import foolbox`` imports the deprecated ``scipy.ndimage.filters`` namespace (removed in
  SciPy 2.0): the DeprecationWarning is silenced during that import.

Tests for each quirk live in ``tests/test_robustness_bim.py``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*scipy\.ndimage\.filters",
                            category=DeprecationWarning)
    import foolbox as fb


def linf_bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
             stepsize: float, steps: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox ``LinfBasicIterativeAttack`` on one batch, bounds (0, 1).

    x: [N, C, H, W] in [0, 1]; y: [N] int labels; epsilon, stepsize absolute (pixel range 1).
    Returns (x_adv [N, C, H, W] on ``device`` with ‖x_adv − x‖∞ ≤ ε, is_adversarial [N] bool —
    True where the model misclassifies x_adv, including points already misclassified clean).
    The model must be in eval mode.
    """
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
    x = x.to(device=device, dtype=torch.float32).clamp(0.0, 1.0)
    y = y.to(device=device, dtype=torch.long)
    attack = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=stepsize, steps=steps,
                                                 random_start=False)
    _, x_adv, is_adv = attack(fmodel, x, y, epsilons=epsilon)
    return x_adv, is_adv
