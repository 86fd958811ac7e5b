"""A tiny conv + BatchNorm classifier and random 8×8 images shared by the flatness tests."""
import torch
from torch import nn


def conv_bn_net() -> nn.Module:
    """Conv → BN → ReLU → pool → linear, 5 classes, seeded, in eval mode (default BN statistics)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)).eval()


def random_images(n: int) -> torch.utils.data.TensorDataset:
    """``n`` seeded random [3, 8, 8] images in [0, 1] with labels in 0..4."""
    g = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, 8, 8, generator=g),
                                          torch.randint(0, 5, (n,), generator=g))
