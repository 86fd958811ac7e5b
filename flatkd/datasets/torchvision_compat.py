"""The one place flatkd relies on torchvision *private* API: AutoAugment's internals.

``torchvision.transforms.v2.AutoAugment`` draws its sub-policy, the op probabilities and the
magnitude signs from the global RNG inside ``forward``, so it cannot be replayed from a
per-sample ``torch.Generator``. flatkd re-does only the drawing
(:class:`flatkd.datasets.autoaugment.AutoAugmentCutout`) and takes everything else from
torchvision, through this module:

* the policy table — ``AutoAugment._policies`` (25 sub-policies of 2 ops each for
  ``AutoAugmentPolicy.CIFAR10``: ``(op name, probability, magnitude bin or None)``);
* the magnitude bins — ``AutoAugment._AUGMENTATION_SPACE[op] = (bins_fn, signed)``, evaluated
  with ``forward``'s 10 bins;
* the op implementations — ``AutoAugment._apply_image_or_video_transform`` (``v2.functional``
  kernels: affine, rotate, adjust_*, posterize, solarize, autocontrast, equalize, invert).

``tests/test_augment_policies.py`` pins these names, the CIFAR-10 table (digest) and, by
comparing with ``AutoAugment.forward`` under the same seed, the draw order; any change in a
torchvision release makes those tests fail rather than silently changing the augmentation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy, InterpolationMode

NUM_MAGNITUDE_BINS = 10  # AutoAugment.forward evaluates every magnitude function with 10 bins

SubPolicy = tuple[tuple[str, float, Optional[int]], ...]


class TorchvisionAutoAugment:
    """torchvision's AutoAugment ``policy`` (table, magnitudes, ops) without its RNG.

    ``fill``: per-channel fill of uint8 images for the geometric ops (0..255);
    ``interpolation``: of the geometric ops (torchvision's default: nearest).
    """

    def __init__(self, policy: AutoAugmentPolicy = AutoAugmentPolicy.CIFAR10,
                 fill: list[float] | None = None,
                 interpolation: InterpolationMode = InterpolationMode.NEAREST):
        self.policy = policy
        self._tv = AutoAugment(policy, interpolation=interpolation, fill=fill)

    @property
    def sub_policies(self) -> list[SubPolicy]:
        """The policy table: ``[((op, probability, magnitude bin | None), (op, p, bin)), ...]``."""
        return [tuple(tuple(op) for op in sub) for sub in self._tv._policies]

    def magnitude(self, op: str, magnitude_bin: Optional[int], height: int,
                  width: int) -> tuple[Optional[float], bool]:
        """(unsigned magnitude of ``op`` at ``magnitude_bin`` for an ``height``×``width`` image,
        or None for ops without one; whether ``forward`` draws a random sign for it)."""
        bins_fn, signed = self._tv._AUGMENTATION_SPACE[op]
        bins = bins_fn(NUM_MAGNITUDE_BINS, height, width)
        return (None if bins is None else float(bins[magnitude_bin])), bool(signed)

    def apply(self, img: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
        """torchvision's op ``op`` at signed ``magnitude`` on uint8 ``img`` ``[C, H, W]``."""
        return self._tv._apply_image_or_video_transform(
            img, op, magnitude, interpolation=self._tv.interpolation, fill=self._tv._fill)
