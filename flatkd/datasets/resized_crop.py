"""``imagenet``: the standard ImageNet training augmentation, replayable.

Source: the torchvision ImageNet reference recipe the official code follows for large images —
``RandomResizedCrop(224)`` + ``RandomHorizontalFlip()`` for training (+ ``RandomRotation(15)``
in the online-KD pipeline when rotation is on), ``Resize(256)`` + ``CenterCrop(224)`` for
evaluation. The evaluation transform is the dataset's own (``imagefolder`` test split:
short side ``round(image_size / crop_fraction)`` = 256, centre ``image_size`` = 224), so every
evaluation sees the same centre crops; this module is the training side.

RandomResizedCrop works on the *original* decoded image (``needs_original = True``: load the
train split with ``datasets.get(..., original=True)``), not on the evaluation centre crop:

* scale ∈ U(0.08, 1) of the image area, log aspect ratio ∈ U(log 3/4, log 4/3); up to 10
  tries for a box that fits, then top ``i`` ∈ {0..H−h}, left ``j`` ∈ {0..W−w}; after 10
  failures the centre crop of the whole image clamped to the ratio range — torchvision's
  ``RandomResizedCrop.make_params``, drawn from the sample's generator (a test compares with
  ``torchvision.transforms.v2.RandomResizedCrop`` under the same seed);
* the box is resized to ``size``×``size`` by ``v2.functional.resized_crop`` (bilinear,
  antialiased: the weights are non-negative, so values stay in [0, 1]);
* flip: p = 0.5 (``rand < 0.5``), where the dataset allows it;
* rotation: angle ∈ U(−15°, 15°) (``v2.RandomRotation``'s draw), nearest, fill 0, computed by
  :func:`~flatkd.datasets.augment.rotate_nearest`.

Random draws per call, in order: 2 uniforms per try (scale, log ratio) and 2 integers on the
successful one (i, j); 1 uniform (flip) if the dataset allows flips; 1 uniform (angle) if
``rotation``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from .augment import one_intra_op_thread, rotate_nearest

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
TRIES = 10


def resized_crop_params(height: int, width: int, scale: tuple[float, float],
                        ratio: tuple[float, float], generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random box, drawn as ``v2.RandomResizedCrop.make_params`` does."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(TRIES):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1],
                                                   generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class ResizedCropAugment:
    """RandomResizedCrop(``size``) (+ flip) (+ rotation) of an original image.

    ``img``: float ``[C, H, W]`` in [0, 1], any H, W (the decoded file). Returns float32
    ``[C, size, size]`` in [0, 1].
    """

    size: int = 224
    hflip: bool = True
    rotation: float = 0.0  # max |angle| in degrees; 0 disables the op
    scale: tuple[float, float] = SCALE
    ratio: tuple[float, float] = RATIO
    needs_original = True  # class attribute: crop from the original image, not the eval crop

    def params(self, height: int, width: int, generator: torch.Generator) -> dict:
        """Draw ``box`` = (top, left, h, w), ``flip`` (bool), ``angle`` (degrees)."""
        box = resized_crop_params(height, width, self.scale, self.ratio, generator)
        flip = bool(torch.rand((), generator=generator) < 0.5) if self.hflip else False
        angle = torch.empty(1).uniform_(-self.rotation, self.rotation, generator=generator).item() \
            if self.rotation > 0 else 0.0
        return {"box": box, "flip": flip, "angle": angle}

    def apply(self, img: torch.Tensor, params: dict) -> torch.Tensor:
        top, left, h, w = params["box"]
        with one_intra_op_thread():
            out = TF.resized_crop(img, top, left, h, w, [self.size, self.size],
                                  interpolation=InterpolationMode.BILINEAR, antialias=True)
            if params["flip"]:
                out = TF.horizontal_flip(out)
            if self.rotation > 0:
                out = rotate_nearest(out, params["angle"], fill=0.0)
            return out

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if img.ndim != 3:
            raise ValueError(f"augmentation expects one image [C, H, W], got shape {tuple(img.shape)}")
        return self.apply(img, self.params(img.shape[1], img.shape[2], generator))

    def describe(self) -> str:
        parts = [f"RandomResizedCrop({self.size}, scale=({self.scale[0]:g}, {self.scale[1]:g}), "
                 f"ratio=({self.ratio[0]:.4g}, {self.ratio[1]:.4g}), bilinear, antialias) "
                 "of the original image"]
        if self.hflip:
            parts.append("RandomHorizontalFlip(p=0.5)")
        if self.rotation > 0:
            parts.append(f"RandomRotation({self.rotation:g}, nearest, fill=0)")
        return " + ".join(parts)
