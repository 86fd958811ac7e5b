"""Vision transformers from timm — DeiT-Tiny and PiT-Tiny (paper §5.1) — trained from scratch.

``deit_tiny`` is timm's ``deit_tiny_patch16_224`` and ``pit_tiny`` timm's ``pit_ti_224``, built
with ``pretrained=False`` (nothing is downloaded). Two input modes (``vit.img_size``):

* ``32`` (default, fast on 32-px data): patch 4 → 8×8 DeiT tokens; PiT patch 4, stride 2 →
  15×15 tokens, pooled to 8×8 and 4×4. timm's 224-px settings (patch 16, PiT stride 8) would
  leave 2×2 DeiT tokens and 3×3 PiT tokens on a 32-px image.
* ``224`` (the paper's): patch 16, PiT stride 8; 32/64-px inputs are upsampled bilinearly
  inside the model (as the official ViT code upsamples its teacher's input), so data, the
  corruption suite and attacks still see the dataset's own [0, 1] images.

:class:`TimmViT` gives a timm network flatkd's model contract — normalisation inside,
``forward_features(x) → (logits, pooled feature)``, ``feature_dim`` — and
:class:`MultiExitViT` adds BYOT-style exits after every transformer block but the last (11 for
both, as the official ViT self-KD code uses for DeiT-Tiny) for self KD.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FlatkdError
from .byot import MultiExitResNet
from .resnet import ARCHS, Normalize

#: input size → (patch size, PiT patch stride)
INPUT_MODES = {32: (4, 2), 224: (16, 8)}
RECIPE = "vit"      # presets/recipes/vit.yaml: the paper's transformer recipe


class TimmViT(nn.Module):
    """A timm transformer on raw [0, 1] NCHW input of any size (resized to ``img_size``).

    ``forward_features(x)`` → (logits [N, C], pre-logits class token [N, feature_dim]);
    ``block_tokens(x)`` → (logits, feature, class token after every transformer block).
    """

    def __init__(self, net: nn.Module, blocks: Sequence[nn.Module], img_size: int,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.img_size = img_size
        self.feature_dim = net.num_features
        self.block_dims = [b.norm1.normalized_shape[0] for b in blocks]
        self._captured: list[torch.Tensor] | None = None
        for b in blocks:     # class token of each block's output (position 0 in DeiT and PiT)
            b.register_forward_hook(self._capture)

    def _capture(self, module, args, output) -> None:
        if self._captured is not None:
            self._captured.append(output[:, 0])

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if x.shape[-2:] != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear",
                              align_corners=False)
        return x

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.net.forward_head(self.net.forward_features(self._input(x)), pre_logits=True)
        return self.net.head(feat), feat

    def block_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        self._captured = []
        try:
            logits, feat = self.forward_features(x)
            return logits, feat, self._captured
        finally:
            self._captured = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class MultiExitViT(MultiExitResNet):
    """BYOT-style self KD on a transformer: after each block but the last, an exit (LayerNorm →
    linear classifier on that block's class token) and a linear adaptation layer onto the
    deepest feature. The deepest exit is the backbone's own norm + head.

    It keeps :class:`~flatkd.models.byot.MultiExitResNet`'s contract (``backbone``,
    ``forward_exits`` deepest first, ``adapt``, ``num_exits``, ``forward`` = deepest logits) and
    subclasses it so code that deploys a multi-exit network as its backbone handles both.
    """

    def __init__(self, backbone: TimmViT):
        nn.Module.__init__(self)
        self.backbone = backbone
        dims, deep = backbone.block_dims[:-1], backbone.feature_dim
        num_classes = backbone.net.num_classes
        self.exit_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-6) for d in dims)
        self.classifiers = nn.ModuleList(nn.Linear(d, num_classes) for d in dims)
        self.adaptation = nn.ModuleList(nn.Linear(d, deep) for d in dims)
        self.feature_dim = deep

    def forward_exits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, feat, tokens = self.backbone.block_tokens(x)
        out_logits, out_feats = [logits], [feat]
        for i in reversed(range(len(self.classifiers))):      # shallow exits, deepest first
            f = self.exit_norms[i](tokens[i])
            out_logits.append(self.classifiers[i](f))
            out_feats.append(f)
        return out_logits, out_feats


def _builder(timm_name: str, blocks_of, pit: bool):
    def build(num_classes: int, mean, std, width: float = 1, img_size: int = 32,
              drop_path: float = 0.1) -> TimmViT:
        import timm      # imported on use: `import flatkd` stays fast

        if width != 1:
            raise FlatkdError(f"width {width} applies to ResNets only; {timm_name} has a fixed "
                              "width (teacher_width must be 1 for a transformer teacher)")
        if img_size not in INPUT_MODES:
            raise FlatkdError(f"vit.img_size must be one of {', '.join(map(str, INPUT_MODES))}, "
                              f"got {img_size}")
        patch, stride = INPUT_MODES[img_size]
        kw = {"stride": stride} if pit else {}
        net = timm.create_model(timm_name, pretrained=False, num_classes=num_classes,
                                img_size=img_size, patch_size=patch, drop_path_rate=drop_path, **kw)
        return TimmViT(net, blocks_of(net), img_size, mean, std)

    build.__doc__ = (f"timm {timm_name} (pretrained=False); img_size 32: patch "
                     f"{INPUT_MODES[32][0]}{', stride 2' if pit else ''}; 224: patch 16"
                     f"{', stride 8' if pit else ''}.")
    build.recipe = RECIPE
    build.config_options = lambda cfg: {"img_size": cfg.vit.img_size, "drop_path": cfg.vit.drop_path}
    build.multi_exit = MultiExitViT
    return build


ARCHS.register("deit_tiny")(_builder("deit_tiny_patch16_224", lambda net: list(net.blocks), pit=False))
ARCHS.register("pit_tiny")(_builder("pit_ti_224", lambda net: [b for stage in net.transformers
                                                                for b in stage.blocks], pit=True))
