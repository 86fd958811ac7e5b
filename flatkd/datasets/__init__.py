"""Datasets: ``get(name, split)`` → Dataset of (float32 [3, H, W] in [0, 1], int label).

Registered: digits (embedded), cifar10, cifar100, tinyimagenet, imagefolder. Normalisation
constants live in :func:`spec` and are applied inside models, never here. Training
augmentation is a separate pure function of (image, generator), chosen by name from a registry
of policies (:mod:`flatkd.datasets.policies`): :func:`train_augment`, :func:`default_policy`.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from . import cifar, digits, imagefolder, tinyimagenet  # noqa: F401  (they register)
from . import policies
from .augment import Augment, AugmentedDataset, for_dataset
from .base import DATASETS, SPLITS, DatasetFamily, DatasetSpec, check_options, check_split
from .fraction import stratified_fraction
from .policies import POLICIES, TrainAugment

__all__ = ["Augment", "AugmentedDataset", "DATASETS", "POLICIES", "SPLITS", "DatasetFamily",
           "DatasetSpec", "TrainAugment", "default_policy", "for_dataset", "get", "names",
           "policy_names", "spec", "stratified_fraction", "train_augment"]


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def spec(name: str, **options) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (``options`` as for :func:`get`, e.g. ``image_size``)."""
    family = DATASETS.get(name)
    check_options(name, family, options)
    return family.spec(**options)


def policy_names() -> list[str]:
    """Registered training-augmentation policy names, sorted."""
    return POLICIES.names()


def default_policy(dataset: str | DatasetSpec, family: str = "other", **options) -> str:
    """The default training-augmentation policy of ``dataset`` for a method ``family``.

    ``family``: "self" for self-KD methods (BYOT and its spaced variant), anything else for the
    rest. Declared by each dataset's spec: ``autoaugment-cutout`` for self-KD on cifar10 /
    cifar100 (BYOT's official pipeline), ``imagenet`` for imagefolder, ``crop-flip`` otherwise.
    """
    s = dataset if isinstance(dataset, DatasetSpec) else spec(dataset, **options)
    return policies.default_for(s, family)


def train_augment(dataset: str | DatasetSpec, policy: str | None = None, rotation: bool = False,
                  *, family: str = "other", **options) -> TrainAugment:
    """The training augmentation ``policy`` (a registered name; None = :func:`default_policy`
    of ``dataset`` for ``family``) for ``dataset`` (a name, with ``options`` as for :func:`get`,
    or a :class:`DatasetSpec`); ``rotation`` adds RandomRotation(15).

    Returns an object with ``__call__(img [C, H, W] in [0, 1], generator) -> img``,
    ``describe() -> str`` and ``needs_original`` (load the train split with
    ``get(..., original=needs_original)``). Unknown policy → FlatkdError naming the choices.
    """
    s = dataset if isinstance(dataset, DatasetSpec) else spec(dataset, **options)
    name = policy if policy is not None else policies.default_for(s, family)
    return policies.build(name, s, rotation)


def get(name: str, split: str = "train", augment: bool = False, root: str | Path | None = None,
        download: bool = False, *, rotation: bool = False, augment_seed: int = 0,
        original: bool = False, policy: str | None = None, **options) -> Dataset:
    """Load split ``split`` ("train" | "test") of dataset ``name``.

    Items are ``(float32 tensor [3, H, W] in [0, 1], int label)``; the dataset also has
    ``spec`` and ``targets``. ``root`` is the data folder (``--data-root``); ``download``
    fetches the data when the family supports it. ``original=True`` yields file-based images
    at their own size (no resize / centre crop; in-memory datasets are unchanged) — for
    augmentations with ``needs_original``. ``augment=True`` wraps it in an
    :class:`~flatkd.datasets.augment.AugmentedDataset` applying
    ``train_augment(name, policy, rotation)`` (``policy`` None: the dataset's default) to the
    originals when that policy needs them, with per-item generators derived from
    ``augment_seed`` (call ``set_epoch``); training loops call the augmentation directly instead.
    """
    family = DATASETS.get(name)
    check_split(split)
    check_options(name, family, options)
    aug = train_augment(name, policy, rotation, **options) if augment else None
    root = Path(root).expanduser() if root is not None else None
    ds = family.load(split, root=root, download=download, **options)
    if original or (aug is not None and aug.needs_original):
        ds = ds.originals()
    if aug is not None:
        ds = AugmentedDataset(ds, aug, seed=augment_seed)
    return ds
