"""The transformer training augmentation: crop + flip, timm's RandAugment and timm's random
erasing, replayable from the sample's generator (policy ``randaugment-erasing``).

Pipeline per image (float ``[C, H, W]`` in [0, 1]):

1. RandomCrop(pad 4) + horizontal flip where the dataset allows it (+ optional rotation) —
   :class:`~flatkd.datasets.augment.Augment`;
2. timm ``rand_augment_transform("rand-m9-mstd0.5-inc1")`` (2 ops, magnitude 9 with noise
   std 0.5, increasing-severity ops; fill = the dataset mean) on the uint8 image, as timm's
   ``create_transform(auto_augment=...)`` builds it for DeiT;
3. timm ``RandomErasing(probability=0.25, mode="pixel")`` on the *normalised* image (where timm
   applies it: per-pixel N(0, 1) noise), mapped back to pixel units — so erased pixels are
   mean + std·N(0, 1) and may lie outside [0, 1]; the model's normalisation turns them back
   into exactly timm's values.

timm's transforms draw from Python's ``random``, NumPy's and torch's global generators.
:meth:`RandAugmentErasing.params` draws the crop/flip parameters and three 62-bit seeds from
the sample's ``torch.Generator``; :meth:`apply` seeds the three global generators with them,
runs timm, and restores their previous states — so (image, sample seed) fixes the pixels and
spaced replay re-materialises them exactly, in the main process or in DataLoader workers.

One compat fix (:func:`posterize_compat`): timm's increasing-severity posterize asks for 0 bits
at the top magnitude (m9 + noise clamps to 10), which Pillow before 11 turned into a black
image and Pillow ≥ 11 refuses (``ValueError: bits must be between or equal to 1 and 8`` — it
stopped a DeiT epoch on digits here, Pillow 13.0); the shim returns the black image.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from .augment import PADDING, Augment, one_intra_op_thread

RAND_AUGMENT = "rand-m9-mstd0.5-inc1"
ERASE_PROBABILITY = 0.25


@contextmanager
def seeded_global_rngs(seeds: Sequence[int]) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's (CPU) global generators with ``seeds``; restore after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(int(seeds[0]))
        np.random.seed(int(seeds[1]) % (1 << 32))
        torch.manual_seed(int(seeds[2]))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def posterize_compat(img, bits_to_keep, **kwargs):
    """timm's ``posterize`` with Pillow < 11's answer for 0 bits (every pixel 0)."""
    from PIL import Image
    from timm.data.auto_augment import posterize

    if bits_to_keep < 1:
        return Image.new(img.mode, img.size)
    return posterize(img, bits_to_keep, **kwargs)


@dataclass(frozen=True)
class RandAugmentErasing:
    """Crop + flip → timm RandAugment → timm random erasing (see the module docstring)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    hflip: bool = True
    rotation: float = 0.0
    config: str = RAND_AUGMENT
    erase_probability: float = ERASE_PROBABILITY
    needs_original = False
    _ops: dict = field(default_factory=dict, compare=False, repr=False)   # built on first use

    @property
    def crop(self) -> Augment:
        return Augment(padding=PADDING, hflip=self.hflip, rotation=self.rotation)

    def _timm(self):
        if not self._ops:
            from timm.data import rand_augment_transform
            from timm.data.random_erasing import RandomErasing
            hparams = {"translate_const": int(self.image_size * 0.45),
                       "img_mean": tuple(min(255, round(255 * m)) for m in self.mean)}
            from timm.data.auto_augment import posterize
            randaugment = rand_augment_transform(self.config, hparams)
            for op in randaugment.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = posterize_compat
            self._ops["randaugment"] = randaugment
            self._ops["erasing"] = RandomErasing(probability=self.erase_probability, mode="pixel",
                                                 device="cpu")
        return self._ops["randaugment"], self._ops["erasing"]

    def params(self, height: int, width: int, generator: torch.Generator) -> dict:
        """Crop/flip(/angle) draws, then ``seeds``: three integers for timm's generators."""
        p = self.crop.params(height, width, generator)
        p["seeds"] = [int(s) for s in torch.randint(0, 1 << 62, (3,), generator=generator)]
        return p

    def apply(self, img: torch.Tensor, params: dict) -> torch.Tensor:
        from PIL import Image

        randaugment, erasing = self._timm()
        out = self.crop.apply(img, params)
        with one_intra_op_thread(), seeded_global_rngs(params["seeds"]):
            pixels = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            pil = randaugment(Image.fromarray(pixels))
            out = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            std = torch.tensor(self.std).view(-1, 1, 1)
            out = erasing((out - mean) / std) * std + mean
        return out.contiguous()

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if img.ndim != 3:
            raise ValueError(f"augmentation expects one image [C, H, W], got shape {tuple(img.shape)}")
        return self.apply(img, self.params(img.shape[1], img.shape[2], generator))

    def describe(self) -> str:
        return (f"{self.crop.describe()} + timm RandAugment({self.config}) + timm "
                f"RandomErasing(p={self.erase_probability:g}, mode=pixel, on normalised pixels)")
