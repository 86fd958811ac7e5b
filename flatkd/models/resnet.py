"""CIFAR-style ResNets built from torchvision's BasicBlock / Bottleneck.

Input: raw images in [0, 1], shape [N, 3, H, W] (any H = W ≥ 8). The first module subtracts
the dataset mean and divides by the std (buffers, saved with the weights). The stem is a 3×3
stride-1 convolution without max-pool, as in the CIFAR ResNets of the official Spaced-KD code.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..registry import Registry

ARCHS: Registry = Registry("arch")


class Normalize(nn.Module):
    """(x − mean) / std per channel; mean/std are buffers of shape [1, 3, 1, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CifarResNet(nn.Module):
    """ResNet with ``len(widths)`` stages.

    ``forward(x)`` → logits [N, C]; ``forward_features(x)`` → (logits, pooled penultimate
    feature [N, feature_dim]); ``forward_stages(x)`` → list of stage outputs (NCHW).
    """

    def __init__(self, block: type[nn.Module], layers: Sequence[int], widths: Sequence[int],
                 num_classes: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        inplanes = widths[0]
        stages = []
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stages.append(_make_stage(block, inplanes, planes, blocks, stride=1 if i == 0 else 2))
            inplanes = planes * block.expansion
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [w * block.expansion for w in widths]
        self.feature_dim = inplanes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.stem(self.normalize(x))
        outs = []
        for stage in self.stages:
            out = stage(out)
            outs.append(out)
        return outs

    def pool_features(self, last_stage: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(last_stage), 1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.pool_features(self.forward_stages(x)[-1])
        return self.fc(feat), feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def _make_stage(block, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _scaled(widths: Sequence[int], width: float) -> list[int]:
    return [max(1, int(round(w * width))) for w in widths]


def _register(name: str, block, layers, widths) -> None:
    def build(num_classes: int, mean, std, width: float = 1) -> CifarResNet:
        return CifarResNet(block, layers, _scaled(widths, width), num_classes, mean, std)

    build.__doc__ = f"{name}: {block.__name__} × {list(layers)}, widths {list(widths)} × width."
    ARCHS.register(name)(build)


_WIDE = (64, 128, 256, 512)
_register("resnet8", BasicBlock, (1, 1, 1), (16, 32, 64))      # ≈ 78k params at 10 classes
_register("resnet18", BasicBlock, (2, 2, 2, 2), _WIDE)
_register("resnet34", BasicBlock, (3, 4, 6, 3), _WIDE)
_register("resnet50", Bottleneck, (3, 4, 6, 3), _WIDE)
_register("resnet101", Bottleneck, (3, 4, 23, 3), _WIDE)
