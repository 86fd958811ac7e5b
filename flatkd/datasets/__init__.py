"""Datasets: ``get(name, split)`` → Dataset of (float32 [3, H, W] in [0, 1], int label).

Registered: digits (embedded), cifar10, cifar100, tinyimagenet, imagefolder. Normalisation
constants live in :func:`spec` and are applied inside models, never here. Augmentation is a
separate pure function of (image, generator): :func:`flatkd.datasets.augment.for_dataset`.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from . import cifar, digits, imagefolder, tinyimagenet  # noqa: F401  (they register)
from .augment import Augment, AugmentedDataset, for_dataset
from .base import DATASETS, SPLITS, DatasetFamily, DatasetSpec, check_options, check_split

__all__ = ["Augment", "AugmentedDataset", "DATASETS", "SPLITS", "DatasetFamily", "DatasetSpec",
           "for_dataset", "get", "names", "spec"]


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def spec(name: str, **options) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (``options`` as for :func:`get`, e.g. ``image_size``)."""
    family = DATASETS.get(name)
    check_options(name, family, options)
    return family.spec(**options)


def get(name: str, split: str = "train", augment: bool = False, root: str | Path | None = None,
        download: bool = False, *, rotation: bool = False, augment_seed: int = 0,
        **options) -> Dataset:
    """Load split ``split`` ("train" | "test") of dataset ``name``.

    Items are ``(float32 tensor [3, H, W] in [0, 1], int label)``; the dataset also has
    ``spec`` and ``targets``. ``root`` is the data folder (``--data-root``); ``download``
    fetches the data when the family supports it. ``augment=True`` wraps it in an
    :class:`~flatkd.datasets.augment.AugmentedDataset` applying
    ``augment.for_dataset(name, rotation)`` with per-item generators derived from
    ``augment_seed`` (call ``set_epoch``); training loops call the ``Augment`` directly instead.
    """
    family = DATASETS.get(name)
    check_split(split)
    check_options(name, family, options)
    root = Path(root).expanduser() if root is not None else None
    ds = family.load(split, root=root, download=download, **options)
    if augment:
        ds = AugmentedDataset(ds, for_dataset(name, rotation=rotation), seed=augment_seed)
    return ds
