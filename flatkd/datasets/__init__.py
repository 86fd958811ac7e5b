"""Datasets: ``get(name, split)`` → Dataset of (float32 [3, H, W] in [0, 1], int label).

Registered: digits (embedded), cifar10, cifar100, tinyimagenet, imagefolder. Normalisation
constants live in :func:`spec` and are applied inside models, never here. Augmentation is a
separate pure function of (image, generator): :func:`flatkd.datasets.augment.for_dataset`.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from . import digits  # noqa: F401  (registers)
from .base import DATASETS, SPLITS, DatasetFamily, DatasetSpec, check_options, check_split

__all__ = ["DATASETS", "SPLITS", "DatasetFamily", "DatasetSpec", "get", "names", "spec"]


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def spec(name: str, **options) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (``options`` as for :func:`get`, e.g. ``image_size``)."""
    family = DATASETS.get(name)
    check_options(name, family, options)
    return family.spec(**options)


def get(name: str, split: str = "train", augment: bool = False, root: str | Path | None = None,
        download: bool = False, **options) -> Dataset:
    """Load split ``split`` ("train" | "test") of dataset ``name``.

    Items are ``(float32 tensor [3, H, W] in [0, 1], int label)``. ``root`` is the data folder
    (``--data-root``); ``download`` fetches the data when the family supports it.
    """
    family = DATASETS.get(name)
    check_split(split)
    check_options(name, family, options)
    root = Path(root).expanduser() if root is not None else None
    return family.load(split, root=root, download=download, **options)
