"""Splitting a network into consecutive blocks f = f_k ∘ … ∘ f_1 (StableKD's decomposition).

A CIFAR-style ResNet has one natural unit per stage — the first also holds the input
normalisation and the stem — plus the classifier (global pool + FC): ResNet-18/34 give 5 units,
the 3-stage ResNet-8 gives 4. :func:`split` groups them into k blocks: the classifier stays a
block of its own and the stage units are spread evenly over the first k − 1 blocks (earlier
blocks take the extra unit); k = 1 is the whole network. The blocks share the network's
modules (no copies): training a block trains the network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import FlatkdError
from .resnet import CifarResNet


class _Classifier(nn.Module):
    """Global average pool + FC of a :class:`CifarResNet` (its last unit)."""

    def __init__(self, net: CifarResNet):
        super().__init__()
        self.net = [net]            # a plain list: not a submodule (no duplicate parameters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net[0]
        return net.fc(net.pool_features(x))


@dataclass(frozen=True)
class Block:
    """Block ``index`` (1-based) of a split: ``run(x)`` applies its units in order;
    ``channels`` is the output's channel count (None for the classifier, whose output is logits)."""
    index: int
    units: tuple[nn.Module, ...]
    channels: int | None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x


def natural_count(net: nn.Module) -> int:
    """How many units ``net`` splits into (a ResNet: stages + 1)."""
    return len(_units(net))


def _units(net: nn.Module) -> list[tuple[nn.Module, int | None]]:
    if not isinstance(net, CifarResNet):
        raise FlatkdError(f"block splitting supports the ResNets (resnet8/18/34/50/101), not "
                          f"{type(net).__name__}")
    first = nn.Sequential(net.normalize, net.stem, net.stages[0])
    units = [(first, net.stage_channels[0])]
    units += [(stage, c) for stage, c in zip(list(net.stages)[1:], net.stage_channels[1:])]
    return units + [(_Classifier(net), None)]


def split(net: nn.Module, k: int) -> list[Block]:
    """``net`` as k consecutive blocks (see the module docstring); k ≤ :func:`natural_count`."""
    units = _units(net)
    if not 1 <= k <= len(units):
        raise FlatkdError(f"this network splits into 1 … {len(units)} blocks, not {k}")
    if k == 1:
        return [Block(1, tuple(u for u, _ in units), None)]
    stages, classifier = units[:-1], units[-1]
    size, extra = divmod(len(stages), k - 1)
    blocks, start = [], 0
    for i in range(k - 1):
        end = start + size + (i < extra)
        part = stages[start:end]
        blocks.append(Block(i + 1, tuple(u for u, _ in part), part[-1][1]))
        start = end
    return blocks + [Block(k, (classifier[0],), None)]
