"""``digits``: scikit-learn's bundled handwritten digits as a 32×32 RGB, 10-class dataset.

Source: :func:`sklearn.datasets.load_digits` — 1,797 grey 8×8 images with integer values
0..16 (ships with scikit-learn, so it works offline).

Preprocessing (deterministic, no randomness at all):

1. scale to [0, 1] by dividing by 16;
2. upscale 8×8 → 32×32 with ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False, antialias=True)`` (for upscaling, antialiasing is a no-op; bilinear
   weights are convex, so values stay in [0, 1]);
3. repeat the grey channel 3× (RGB with identical channels).

Split: ``sklearn.model_selection.train_test_split(arange(1797), test_size=360,
stratify=labels, random_state=0)`` — stratified by class, 1,437 train / 360 test; each side's
indices are then sorted ascending so items keep the original sklearn order.
``test_split_indices()`` exposes the test indices; a test pins their checksum.

Normalisation constants: per-channel mean/std of the 32×32 train split (all three channels
equal), computed once with :func:`compute_mean_std` and written below.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .base import DATASETS, DatasetFamily, DatasetSpec, TensorImageDataset, check_split

IMAGE_SIZE = 32
TEST_SIZE = 360
SPLIT_SEED = 0
# compute_mean_std() on the train split (scikit-learn 1.9.1, torch 2.14)
MEAN = (0.3054, 0.3054, 0.3054)
STD = (0.3237, 0.3237, 0.3237)

SPEC = DatasetSpec(
    name="digits",
    num_classes=10,
    image_size=IMAGE_SIZE,
    mean=MEAN,
    std=STD,
    train_size=1437,
    test_size=TEST_SIZE,
    hflip=False,
    augmentation="RandomCrop(32, padding=4) only (a horizontal flip changes a digit's identity)",
    description="scikit-learn load_digits, 8x8 -> 32x32 bilinear, grey -> 3 channels, "
    "stratified 1437/360 split (random_state=0)",
)


@lru_cache(maxsize=1)
def _all_images() -> tuple[torch.Tensor, np.ndarray]:
    """All 1,797 images as float32 ``[1797, 3, 32, 32]`` in [0, 1], and labels ``[1797]``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    up = F.interpolate(grey, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                       align_corners=False, antialias=True)
    images = up.expand(-1, 3, -1, -1).contiguous()
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _split_indices() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, labels = _all_images()
    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE,
                                   stratify=labels, random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


def test_split_indices() -> np.ndarray:
    """Indices (into ``load_digits()``) of the 360 test images, ascending."""
    return _split_indices()[1].copy()


test_split_indices.__test__ = False  # not a pytest test despite the name


def _load(split: str, root=None, download: bool = False) -> TensorImageDataset:
    """The digits split as an in-memory dataset; ``root``/``download`` are ignored (embedded)."""
    check_split(split)
    images, labels = _all_images()
    idx = _split_indices()[0 if split == "train" else 1]
    sel = torch.from_numpy(idx)
    return TensorImageDataset(images[sel].clone(), labels[idx].tolist(), SPEC)


def compute_mean_std() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of the 32×32 train split, rounded to 4 places."""
    imgs = _load("train").images.to(torch.float64)
    mean = imgs.mean(dim=(0, 2, 3))
    std = imgs.std(dim=(0, 2, 3), unbiased=False)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


DATASETS.register("digits")(DatasetFamily(spec=lambda: SPEC, load=_load))
