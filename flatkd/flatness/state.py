"""Put a model into a measurement state and give it back exactly as it was.

Everything the flatness measurements may touch is saved and restored: each module's
``training`` flag, each parameter's ``requires_grad`` and ``.grad``, and every buffer (BatchNorm
running statistics change when a forward pass runs with batch statistics).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import FlatkdError


def set_bn_mode(model: nn.Module, bn_mode: str) -> None:
    """All modules in eval mode; BatchNorm layers in train mode (batch statistics) if asked."""
    model.eval()
    if bn_mode == "train":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    elif bn_mode != "eval":
        raise FlatkdError(f"bn_mode: {bn_mode!r} is not valid; valid choices: eval, train")


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Restore modes, requires_grad, .grad and buffers (bit-exactly) on exit.

    Inside, every parameter requires grad and has ``.grad = None``, so the Hessian is taken with
    respect to all parameters and stale gradients cannot leak into double-backward products.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        for p in params:
            p.grad = None
            p.requires_grad_(True)
        yield model
    finally:
        for p, f, g in zip(params, flags, grads):
            p.grad = g
            p.requires_grad_(f)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, t in modes:
            m.training = t
