"""Top-1 accuracy of a classifier over (images, labels) batches — the one loop every suite uses."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def top1_accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device) -> float:
    """Fraction in [0, 1] of samples whose arg-max logit equals the label.

    ``batches`` yields (x [B, C, H, W] in [0, 1], y [B]); the model runs in eval mode and its
    training flag is restored afterwards.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in batches:
        y = torch.as_tensor(y)
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / total
