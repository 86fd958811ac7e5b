"""Weights as a list of tensors: snapshot, set to w + δ, restore bit-exactly.

Measurements that move the weights save them first and copy the saved tensors back at the end
(never by subtracting a perturbation), so the model comes back exactly as it went in.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(model, x, y)`` → scalar tensor: the mean loss of the model as it is on one batch."""


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model`` on one batch (the loss every suite measures)."""
    return F.cross_entropy(model(x), y)


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Yield copies of the parameters; on exit put them back bit-exactly together with every
    buffer, module mode, ``requires_grad`` flag and ``.grad``. Inside, the model is in eval
    mode (BatchNorm uses its running statistics)."""
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for p in params:
            p.grad = None
        yield saved
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
            for b, s in buffers:
                b.copy_(s)
        for p, f, g in zip(params, flags, grads):
            p.requires_grad_(f)
            p.grad = g
        for m, t in modes:
            m.training = t


@torch.no_grad()
def assign(params: Sequence[torch.Tensor], base: Sequence[torch.Tensor],
           delta: Sequence[torch.Tensor] | None = None) -> None:
    """Set each parameter to ``base`` (+ ``delta``) in place; with no delta, exactly ``base``."""
    for i, (p, b) in enumerate(zip(params, base)):
        p.copy_(b)
        if delta is not None:
            p.add_(delta[i])


def scales(base: Sequence[torch.Tensor], adaptive: bool) -> list[torch.Tensor]:
    """c = |w| (adaptive, ASAM) or 1, per parameter tensor."""
    return [b.abs() if adaptive else torch.ones_like(b) for b in base]


@torch.no_grad()
def loss_and_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     loss: LossFn = cross_entropy) -> tuple[float, int]:
    """(mean loss, number of correctly classified samples) of one batch."""
    logits = model(x)
    value = loss(model, x, y) if loss is not cross_entropy else F.cross_entropy(logits, y)
    return float(value), int((logits.argmax(1) == y).sum())
