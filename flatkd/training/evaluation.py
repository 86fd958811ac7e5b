"""Test accuracy of a classifier on a dataset (eval mode, no gradients, mode restored)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> float:
    """Fraction of ``dataset`` whose arg-max logit equals the label, in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        correct += (model(x.to(device)).argmax(1).cpu() == torch.as_tensor(y)).sum().item()
    model.train(was_training)
    return correct / len(dataset)
