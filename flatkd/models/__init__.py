"""Model registry: CIFAR-style ResNets (3x3 stride-1 stem, no max-pool) and the BYOT multi-exit wrap.

``create(arch, num_classes, mean, std, width=1, multi_exit=False)`` builds a model whose
first module normalises raw [0, 1] NCHW input with ``mean``/``std`` buffers.
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from ..errors import FlatkdError
from .byot import MultiExitResNet
from .resnet import ARCHS, CifarResNet

__all__ = ["ARCHS", "CifarResNet", "MultiExitResNet", "create", "names"]


def create(arch: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
           width: float = 1, multi_exit: bool = False) -> nn.Module:
    """Build ``arch`` (a registered name) for ``num_classes`` classes.

    ``width`` multiplies every stage's channel count (teachers ×2/×4/×8, paper Table 9);
    ``multi_exit`` wraps the backbone with BYOT exits for self KD (paper Alg. 3).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise FlatkdError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
    if not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise FlatkdError(f"width must be a finite number > 0, got {width!r}")
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise FlatkdError(f"mean and std need 3 channels (std > 0), got {mean!r}, {std!r}")
    net = ARCHS.get(arch)(num_classes=num_classes, mean=mean, std=std, width=width)
    return MultiExitResNet(net) if multi_exit else net


def names() -> list[str]:
    return ARCHS.names()


