"""``torch.compile`` for flatkd's networks, in one place.

Methods call ``forward_features`` / ``forward_exits`` / ``forward_stages`` rather than
``forward``, and ``nn.Module.compile()`` only compiles ``__call__``. So the part every one of those
paths runs — a CIFAR ResNet's ``forward_stages`` (stem + stages, the bulk of the FLOPs) — is
compiled per instance; other networks get their ``forward`` compiled. Weights, ``state_dict``
and checkpoints are untouched.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import CifarResNet


def compile_network(module: nn.Module, backend: str) -> nn.Module:
    """Compile ``module``'s feature extractors in place with ``backend``; returns ``module``."""
    resnets = [m for m in module.modules() if isinstance(m, CifarResNet)]
    for net in resnets:
        net.forward_stages = torch.compile(net.forward_stages, backend=backend)
    if not resnets:
        module.forward = torch.compile(module.forward, backend=backend)
    return module
