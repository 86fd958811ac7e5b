"""Training augmentation as a pure function of (image, generator), for exact replay.

This module holds the ``crop-flip`` policy and the shared pieces (per-item seeds, the augmented
dataset wrapper, nearest rotation); the named policies are in :mod:`flatkd.datasets.policies`.

An :class:`Augment` draws every random parameter from the ``torch.Generator`` it is given
(never the global RNG), so the same (image, generator state) always gives the same pixels:
spaced KD can re-create a batch's augmented images from (sample index, seed) instead of storing
them. Ops follow the official code's torchvision pipeline, in this order:

* ``RandomCrop(size=H×W of the input, padding=4)`` — zero padding, crop offset uniform in
  ``{0, …, 2·padding}`` per axis (torchvision's ``RandomCrop`` with ``padding=4, fill=0``);
* ``RandomHorizontalFlip(p=0.5)`` — only where a flip keeps the label (not digits);
* ``RandomRotation(15)`` — optional (CIFAR online KD): angle uniform in [−15°, 15°],
  nearest-neighbour, zero fill (torchvision's defaults). Computed by :func:`rotate_nearest`,
  the same sampling as ``torchvision.transforms.v2.functional.rotate`` but without its 1-row
  ``bmm``: on a loaded 2-core machine that BLAS call waits for threads and took 1.5–24 ms per
  32 px image instead of ≈ 0.15 ms. The two grids can differ by one float32 ulp (MKL's
  AVX-512 ``bmm`` vs elementwise products), which moves a pixel whose source coordinate is a
  nearest-neighbour tie (x.5) to the neighbouring source pixel; a test pins equality up to
  such ties (a few pixels per image) on every instruction set.

Random draws per call, in order: 2 integers (crop top, left), then 1 uniform (flip) if
``hflip``, then 1 uniform (angle) if ``rotation > 0``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

ROTATION_DEGREES = 15.0
PADDING = 4
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Augment:
    """Pad-and-crop (+ flip) (+ rotation). ``img``: float tensor ``[C, H, W]`` in [0, 1]."""

    padding: int = PADDING
    hflip: bool = True
    rotation: float = 0.0  # max |angle| in degrees; 0 disables the op
    fill: float = 0.0  # padding value in [0, 1] (BYOT's train.py pads with 128/255)
    needs_original = False  # class attribute: works on the dataset's items as they are

    def params(self, height: int, width: int, generator: torch.Generator) -> dict:
        """Draw this call's parameters: crop ``top``/``left``, ``flip`` (bool), ``angle`` (°)."""
        p = self.padding
        top = int(torch.randint(0, 2 * p + 1, (), generator=generator))
        left = int(torch.randint(0, 2 * p + 1, (), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5) if self.hflip else False
        angle = (float(torch.rand((), generator=generator)) * 2.0 - 1.0) * self.rotation \
            if self.rotation > 0 else 0.0
        return {"top": top, "left": left, "flip": flip, "angle": angle}

    def apply(self, img: torch.Tensor, params: dict) -> torch.Tensor:
        """Apply given parameters (deterministic). Returns ``[C, H, W]``, same dtype and range."""
        _, h, w = img.shape
        out = img
        if self.padding > 0:
            out = TF.pad(out, [self.padding], fill=self.fill)
            out = TF.crop(out, params["top"], params["left"], h, w)
        if params["flip"]:
            out = TF.horizontal_flip(out)
        if self.rotation > 0:
            out = rotate_nearest(out, params["angle"], fill=self.fill)
        return out

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if img.ndim != 3:
            raise ValueError(f"Augment expects one image [C, H, W], got shape {tuple(img.shape)}")
        return self.apply(img, self.params(img.shape[1], img.shape[2], generator))

    def describe(self) -> str:
        parts = [f"RandomCrop(input size, padding={self.padding}, fill={self.fill:g})"]
        if self.hflip:
            parts.append("RandomHorizontalFlip(p=0.5)")
        if self.rotation > 0:
            parts.append(f"RandomRotation({self.rotation:g}, nearest, fill={self.fill:g})")
        return " + ".join(parts)


def rotate_nearest(img: torch.Tensor, angle: float, fill: float = 0.0) -> torch.Tensor:
    """Rotate float ``[C, H, W]`` by ``angle`` degrees (counter-clockwise) about the centre.

    Nearest-neighbour, output the input's size, uncovered pixels = ``fill``: the same grid and
    arithmetic as ``torchvision.transforms.v2.functional.rotate(img, angle, NEAREST, fill=fill)``
    (source = R(angle) · output pixel centre, normalised by half the size, then
    ``grid_sample(mode="nearest", align_corners=False)``), with elementwise ops instead of bmm.
    """
    c, h, w = img.shape
    r = math.radians(angle)
    theta = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]],
                         dtype=img.dtype, device=img.device)
    theta = theta / torch.tensor([[0.5 * w], [0.5 * h]], dtype=img.dtype, device=img.device)
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, dtype=img.dtype,
                        device=img.device).view(1, w)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, dtype=img.dtype,
                        device=img.device).view(h, 1)
    grid = torch.stack((xs * theta[0, 0] + ys * theta[0, 1],
                        xs * theta[1, 0] + ys * theta[1, 1]), dim=-1).unsqueeze(0)
    if fill == 0:  # zero padding already is the fill
        return F.grid_sample(img.unsqueeze(0), grid, mode="nearest", padding_mode="zeros",
                             align_corners=False)[0]
    src = torch.cat((img, torch.ones_like(img[:1])), dim=0).unsqueeze(0)  # + coverage mask
    out = F.grid_sample(src, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return torch.where(out[c:] < 0.5, torch.full_like(out[:c], fill), out[:c])


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run the block with one intra-op thread (restored afterwards).

    Per-image ops are latency-bound: on a loaded 2-core machine torchvision's affine/rotate
    (a ``bmm``), sharpness (a ``conv2d``) and even ``round_`` on one 32-px image took 0.1 ms
    with one thread and 5–50 ms with two (threads waiting on each other); the AutoAugment
    pipeline went from 12 ms to 0.36 ms per image, a 500×375 RandomResizedCrop from 39 ms to
    1.5 ms. One thread also makes the pixels independent of the machine's thread count.
    DataLoader workers already run single-threaded.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def for_dataset(name: str, rotation: bool = False) -> Augment:
    """The ``crop-flip`` policy for dataset ``name`` (other policies: ``datasets.train_augment``).

    Crop (pad 4) for all; horizontal flip where ``spec(name).hflip`` (not digits);
    ``rotation=True`` adds RandomRotation(15) (official CIFAR online-KD pipeline).
    """
    from . import spec

    return Augment(padding=PADDING, hflip=spec(name).hflip,
                   rotation=ROTATION_DEGREES if rotation else 0.0)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (run seed, epoch, sample index), mixed with SplitMix64.

    Nearby inputs give unrelated seeds, so per-item generators are independent.
    """
    x = 0
    for v in (seed, epoch, index):
        x = (x + (int(v) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 31
    return x >> 1


def generator_for(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


class AugmentedDataset(Dataset):
    """``base`` with ``augment`` applied per item, using the generator ``item_seed(seed, epoch, i)``.

    Call :meth:`set_epoch` each epoch to get fresh augmentations; the same (seed, epoch, index)
    always gives the same pixels. Exposes ``spec`` and ``targets`` of ``base``.
    """

    def __init__(self, base: Dataset, augment: Augment, seed: int = 0):
        self.base = base
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.spec = base.spec
        self.targets = base.targets

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[index]
        g = generator_for(item_seed(self.seed, self.epoch, index))
        return self.augment(img, g), label
