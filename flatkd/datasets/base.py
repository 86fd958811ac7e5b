"""Dataset registry, :class:`DatasetSpec` and the in-memory / on-disk dataset containers.

Every dataset yields ``(image, label)`` with ``image`` a float32 tensor ``[3, H, W]`` in [0, 1]
and ``label`` a Python ``int``. Normalisation (``spec.mean`` / ``spec.std``) is *not* applied
here: models hold it as buffers.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import FlatkdError
from ..registry import Registry

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset.

    ``image_size`` is H = W of the yielded images in pixels. ``mean``/``std`` are per-channel
    normalisation constants for [0, 1] images (used by the model, not the dataset).
    ``num_classes``/``train_size``/``test_size`` are ``None`` when only the files on disk know
    them (``imagefolder`` before a root is read). ``hflip`` says whether a horizontal flip keeps
    the label (False for digits). ``augmentation`` describes the paper's training augmentation.
    ``train_policy`` names the default training-augmentation policy
    (:mod:`flatkd.datasets.policies`) for every method, ``self_policy`` the one for self-KD
    methods when it differs (empty: same as ``train_policy``).
    """

    name: str
    num_classes: int | None
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_size: int | None = None
    test_size: int | None = None
    hflip: bool = True
    augmentation: str = ""
    description: str = ""
    train_policy: str = "crop-flip"
    self_policy: str = ""

    def replace(self, **changes: Any) -> "DatasetSpec":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DatasetFamily:
    """A registry entry: ``spec(**options)`` and ``load(split, root, download, **options)``.

    ``load`` returns a :class:`torch.utils.data.Dataset` with attributes ``spec`` (the spec of
    the data actually loaded) and ``targets`` (list of int labels, one per item).
    ``options`` lists the keyword options the family accepts.
    """

    spec: Callable[..., DatasetSpec]
    load: Callable[..., Dataset]
    options: tuple[str, ...] = ()


DATASETS: Registry[DatasetFamily] = Registry("dataset")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise FlatkdError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    return split


def check_options(name: str, family: DatasetFamily, options: dict) -> None:
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        valid = ", ".join(family.options) or "none"
        raise FlatkdError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {valid}"
        )


def default_data_root() -> Path:
    """Where downloads go when no root is given: ``$FLATKD_DATA_ROOT`` or ``~/.cache/flatkd/data``."""
    env = os.environ.get("FLATKD_DATA_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "flatkd" / "data"


class TensorImageDataset(Dataset):
    """Images held in memory as a tensor ``[N, 3, H, W]`` (float32 in [0, 1] or uint8 0..255).

    uint8 storage is converted to float32 ``/255`` per item, so CIFAR costs 1 byte per value.
    """

    def __init__(self, images: torch.Tensor, targets: Sequence[int], spec: DatasetSpec):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] != len(targets):
            raise ValueError(f"images must be [N, 3, H, W] with N = len(targets); got {tuple(images.shape)}")
        if images.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32, got {images.dtype}")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.spec = spec

    def __len__(self) -> int:
        return len(self.targets)

    def originals(self) -> "TensorImageDataset":
        """The dataset with items at their original size: in memory they already are (self)."""
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        # a fresh tensor either way, so callers may modify it in place
        img = img.to(torch.float32).div_(255.0) if img.dtype == torch.uint8 else img.clone()
        return img, self.targets[index]


class FileImageDataset(Dataset):
    """Images decoded from files on access (PIL → RGB uint8), made ``size``×``size``.

    The short side is resized to ``round(size / crop_fraction)`` (bilinear, antialiased; a
    no-op when it already has that length) and the centre ``size``×``size`` is cropped
    (``crop_fraction=1`` resizes the short side straight to ``size``, so a ``size``×``size``
    image comes out unchanged). Items: float32 ``[3, size, size]`` in [0, 1].

    ``resize=False`` (:meth:`originals`) yields every file at its own size instead: float32
    ``[3, H, W]``, for augmentations that crop from the original image (RandomResizedCrop).
    """

    def __init__(self, samples: Sequence[tuple[str | Path, int]], spec: DatasetSpec,
                 size: int, crop_fraction: float = 1.0, classes: Sequence[str] = (),
                 resize: bool = True):
        self.samples = [(Path(p), int(y)) for p, y in samples]
        self.targets = [y for _, y in self.samples]
        self.spec = spec
        self.size = int(size)
        self.crop_fraction = float(crop_fraction)
        self.classes = list(classes)
        self.resize = bool(resize)

    def __len__(self) -> int:
        return len(self.samples)

    def originals(self) -> "FileImageDataset":
        """The same files and labels, items decoded at their own size (no resize, no crop)."""
        return FileImageDataset(self.samples, self.spec, self.size, self.crop_fraction,
                                self.classes, resize=False)

    def load_uint8(self, index: int) -> torch.Tensor:
        """Item ``index`` as uint8 ``[3, size, size]`` (``[3, H, W]`` of the file when not
        ``resize``), before conversion to [0, 1]."""
        import torchvision.transforms.v2.functional as TF
        from PIL import Image, UnidentifiedImageError

        path = self.samples[index][0]
        try:
            with Image.open(path) as im:
                img = TF.pil_to_tensor(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise FlatkdError(f"cannot read image {path}: {e}") from None
        if not self.resize:
            return img
        img = TF.resize(img, [round(self.size / self.crop_fraction)], antialias=True)
        return TF.center_crop(img, [self.size, self.size])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load_uint8(index).to(torch.float32).div_(255.0), self.targets[index]
