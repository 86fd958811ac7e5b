"""Named training-augmentation policies, each a pure function of (image, generator).

Every policy builds, for a :class:`~flatkd.datasets.base.DatasetSpec` and a ``rotation``
switch (the official CIFAR online-KD ``RandomRotation(15)``), an object with

* ``__call__(img, generator) -> img`` — ``img`` float ``[C, H, W]`` in [0, 1]; every random
  draw comes from ``generator``, so (image, generator seed) fixes the pixels (exact replay);
* ``params(height, width, generator) -> dict`` and ``apply(img, params)`` — the same call in two
  halves (draws, then deterministic pixels);
* ``describe() -> str`` — one line recorded with a run;
* ``needs_original`` — True when it must see the original decoded image rather than the
  dataset's evaluation-size item (load the train split with ``datasets.get(..., original=True)``).

Registered:

* ``crop-flip`` — RandomCrop(pad 4, zero fill) + horizontal flip where the dataset allows it
  (not digits): the Spaced-KD / online-KD code's CIFAR pipeline and flatkd's historical
  default (:class:`~flatkd.datasets.augment.Augment`, bit-identical to ``for_dataset``);
* ``autoaugment-cutout`` — BYOT's self-KD pipeline: crop (fill 128/255) + flip + AutoAugment
  (CIFAR-10 policy) + Cutout(16) (:mod:`flatkd.datasets.autoaugment`);
* ``imagenet`` — RandomResizedCrop(image size) + flip of the original image
  (:mod:`flatkd.datasets.resized_crop`); evaluation = the dataset's Resize + CenterCrop;
* ``randaugment-erasing`` — the transformer recipe: crop + flip, timm RandAugment
  (rand-m9-mstd0.5-inc1) and timm random erasing (p 0.25) (:mod:`flatkd.datasets.timm_augment`).
  The default of the transformer architectures, set by their recipe preset
  (``presets/recipes/vit.yaml``), not by the dataset.

Defaults (:func:`default_for`) are declared by each dataset's spec: ``train_policy`` for every
method, ``self_policy`` (when set) for self-KD methods. CIFAR-10/100: ``crop-flip``, self-KD
``autoaugment-cutout``; ``imagefolder``: ``imagenet``; digits and tinyimagenet: ``crop-flip``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..registry import Registry
from .augment import PADDING, ROTATION_DEGREES, Augment
from .autoaugment import AutoAugmentCutout
from .base import DatasetSpec
from .resized_crop import ResizedCropAugment
from .timm_augment import RandAugmentErasing

SELF_FAMILY = "self"


class TrainAugment(Protocol):
    """What every policy builds (see the module docstring)."""

    needs_original: bool

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def params(self, height: int, width: int, generator: torch.Generator) -> dict: ...

    def apply(self, img: torch.Tensor, params: dict) -> torch.Tensor: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Policy:
    """A registry entry: ``build(spec, rotation) -> TrainAugment`` and a one-line ``summary``."""

    build: Callable[[DatasetSpec, bool], TrainAugment]
    summary: str


POLICIES: Registry[Policy] = Registry("augmentation policy")


def _angle(rotation: bool) -> float:
    return ROTATION_DEGREES if rotation else 0.0


POLICIES.register("crop-flip")(Policy(
    build=lambda spec, rotation: Augment(padding=PADDING, hflip=spec.hflip,
                                         rotation=_angle(rotation)),
    summary="RandomCrop(pad 4) + horizontal flip where it keeps the label",
))
POLICIES.register("autoaugment-cutout")(Policy(
    build=lambda spec, rotation: AutoAugmentCutout(hflip=spec.hflip, rotation=_angle(rotation)),
    summary="BYOT: RandomCrop(pad 4, fill 128) + flip + AutoAugment(CIFAR-10) + Cutout(16)",
))
POLICIES.register("randaugment-erasing")(Policy(
    build=lambda spec, rotation: RandAugmentErasing(mean=tuple(spec.mean), std=tuple(spec.std),
                                                    image_size=spec.image_size, hflip=spec.hflip,
                                                    rotation=_angle(rotation)),
    summary="transformers: crop + flip + timm RandAugment(m9, mstd 0.5) + timm random erasing 0.25",
))
POLICIES.register("imagenet")(Policy(
    build=lambda spec, rotation: ResizedCropAugment(size=spec.image_size, hflip=spec.hflip,
                                                    rotation=_angle(rotation)),
    summary="RandomResizedCrop(image size) + flip of the original image",
))


def build(name: str, spec: DatasetSpec, rotation: bool = False) -> TrainAugment:
    """Policy ``name`` for the dataset described by ``spec``; unknown name → FlatkdError."""
    return POLICIES.get(name).build(spec, bool(rotation))


def default_for(spec: DatasetSpec, family: str) -> str:
    """The dataset's default policy for a method ``family`` ("self" = self-KD; anything else)."""
    if family == SELF_FAMILY and spec.self_policy:
        return spec.self_policy
    return spec.train_policy
