"""BYOT multi-exit ResNet for self KD (Zhang et al. 2019 "Be Your Own Teacher"; Spaced-KD Alg. 3).

Every stage but the last gets an exit: attention module (SepConv → BN → ReLU → upsample →
sigmoid, multiplied onto the stage output) → a chain of stride-2 SepConv bottlenecks up to the
last stage's channel count → global average pool → its own linear classifier. The deepest exit is
the backbone's own pool + fc. Each shallow exit also has a linear adaptation layer mapping its
pooled feature onto the deepest feature (for the feature-distillation term). As in the official
BYOT code every convolution, the exits' included, is Kaiming-normal initialised (fan_out, ReLU);
BatchNorm starts at weight 1, bias 0 and the linear layers keep PyTorch's default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import CifarResNet


class SepConv(nn.Module):
    """Depthwise-separable conv pair as in BYOT: (dw3×3 stride s → pw1×1 → BN → ReLU) → (dw3×3 → pw1×1 → BN → ReLU)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2):
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Attention(nn.Module):
    """Spatial attention mask in (0, 1): SepConv(c→c, stride 2) → BN → ReLU → upsample → sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = SepConv(channels, channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn(self.conv(x)))
        a = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(a) * x


class MultiExitResNet(nn.Module):
    """``forward(x)`` → deepest logits; ``forward_exits(x)`` → (logits, features), deepest first."""

    def __init__(self, backbone: CifarResNet):
        super().__init__()
        self.backbone = backbone
        chans = backbone.stage_channels
        self.attention = nn.ModuleList(Attention(c) for c in chans[:-1])
        self.bottleneck = nn.ModuleList(
            nn.Sequential(*[SepConv(chans[j], chans[j + 1]) for j in range(i, len(chans) - 1)])
            for i in range(len(chans) - 1))
        num_classes = backbone.fc.out_features
        self.classifiers = nn.ModuleList(nn.Linear(chans[-1], num_classes) for _ in chans[:-1])
        self.adaptation = nn.ModuleList(nn.Linear(chans[-1], chans[-1]) for _ in chans[:-1])
        self.feature_dim = backbone.feature_dim
        for exits in (self.attention, self.bottleneck):     # BYOT's init of every conv
            for m in exits.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def num_exits(self) -> int:
        return len(self.classifiers) + 1

    def forward_exits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        stages = self.backbone.forward_stages(x)
        deep_feat = self.backbone.pool_features(stages[-1])
        logits, feats = [self.backbone.fc(deep_feat)], [deep_feat]
        for i in reversed(range(len(stages) - 1)):      # shallow exits, deepest first
            h = self.bottleneck[i](self.attention[i](stages[i]))
            f = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
            logits.append(self.classifiers[i](f))
            feats.append(f)
        return logits, feats

    def adapt(self, exit_index: int, feature: torch.Tensor) -> torch.Tensor:
        """Adaptation layer of shallow exit ``exit_index`` (1 = second deepest, as in forward_exits)."""
        return self.adaptation[len(self.adaptation) - exit_index](feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
