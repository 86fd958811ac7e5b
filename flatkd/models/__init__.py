"""Model registry: CIFAR-style ResNets (3x3 stride-1 stem, no max-pool), DeiT-Tiny / PiT-Tiny
from timm, and the BYOT multi-exit wraps.

``create(arch, num_classes, mean, std, width=1, multi_exit=False, **options)`` builds a model
whose first module normalises raw [0, 1] NCHW input with ``mean``/``std`` buffers; ``options``
are an architecture's own settings (transformers: ``img_size``, ``drop_path``).
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from ..errors import FlatkdError
from .byot import MultiExitResNet
from .resnet import ARCHS, CifarResNet
from .vit import MultiExitViT, TimmViT

__all__ = ["ARCHS", "CifarResNet", "MultiExitResNet", "MultiExitViT", "TimmViT", "arch_options",
           "create", "names", "recipe"]


def create(arch: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
           width: float = 1, multi_exit: bool = False, **options) -> nn.Module:
    """Build ``arch`` (a registered name) for ``num_classes`` classes.

    ``width`` multiplies every stage's channel count (teachers ×2/×4/×8, paper Table 9);
    ``multi_exit`` wraps the backbone with BYOT exits for self KD (paper Alg. 3).
    ``options``: the architecture's own settings (see :func:`arch_options`).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise FlatkdError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
    if not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise FlatkdError(f"width must be a finite number > 0, got {width!r}")
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise FlatkdError(f"mean and std need 3 channels (std > 0), got {mean!r}, {std!r}")
    build = ARCHS.get(arch)
    net = build(num_classes=num_classes, mean=mean, std=std, width=width, **options)
    return getattr(build, "multi_exit", MultiExitResNet)(net) if multi_exit else net


def arch_options(arch: str, cfg) -> dict:
    """The settings of ``arch`` taken from a training config (recorded with the architecture):
    transformers ``{"img_size": cfg.vit.img_size, "drop_path": cfg.vit.drop_path}``, ResNets {}."""
    options = getattr(ARCHS.get(arch), "config_options", None)
    return options(cfg) if options is not None else {}


def recipe(arch: str) -> str | None:
    """The recipe preset an architecture trains with by default (``presets/recipes/NAME.yaml``:
    ``vit`` for the transformers), or None (the ResNet defaults); None for unknown names."""
    return getattr(ARCHS.get(arch), "recipe", None) if arch in ARCHS.names() else None


def names() -> list[str]:
    return ARCHS.names()


