"""``imagefolder``: any ImageNet-style folder (e.g. ImageNet-100), classes = sub-folders.

Layout::

    root/train/<class>/*.{jpg,jpeg,png,ppm,bmp,pgm,tif,tiff,webp}    the train split
    root/val/<class>/*   (or root/test/<class>/* when there is no val/)   the test split

Class names are the sorted sub-folders of ``train/``; labels index that list, so both splits
agree. A class folder in val/test that train/ lacks is an error. Images are decoded on access
and made ``image_size``×``image_size`` (option, default 224): short side resized to
``round(image_size / crop_fraction)`` (option, default 0.875, i.e. 256 → 224 as in ImageNet
evaluation), bilinear antialiased, then centre-cropped; the same for both splits (training
augmentation is applied afterwards). Normalisation: ImageNet mean/std.

Training augmentation: the ``imagenet`` policy by default (:mod:`flatkd.datasets.resized_crop`:
RandomResizedCrop(``image_size``) + horizontal flip of the *original* image, loaded with
``datasets.get(..., original=True)``), with the Resize(256) + CenterCrop(224) of the test split
as its evaluation transform — the standard ImageNet pipeline. ``imagefolder`` is flatkd's
"large image" family: ImageNet-scale photographs of any size, trained and evaluated at
``image_size``. (``tinyimagenet``, 64 px, keeps ``crop-flip``: RandomCrop(64, pad 4) + flip.)
"""
from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import FlatkdError
from .base import DATASETS, DatasetFamily, DatasetSpec, FileImageDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
DEFAULT_CROP_FRACTION = 0.875
TEST_DIRS = ("val", "test")


def _spec(image_size: int = DEFAULT_SIZE, crop_fraction: float = DEFAULT_CROP_FRACTION) -> DatasetSpec:
    image_size = int(image_size)
    if image_size < 1 or not 0 < float(crop_fraction) <= 1:
        raise FlatkdError(f"imagefolder: image_size must be ≥ 1 and crop_fraction in (0, 1]; "
                          f"got {image_size}, {crop_fraction}")
    return DatasetSpec(
        name="imagefolder", num_classes=None, image_size=image_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, hflip=True,
        augmentation=f"imagenet: RandomResizedCrop({image_size}) + RandomHorizontalFlip; "
        f"test: Resize({round(image_size / crop_fraction)}) + CenterCrop({image_size})",
        train_policy="imagenet",
        description=f"ImageNet-style folder, Resize(short side {round(image_size / crop_fraction)}) "
        f"+ CenterCrop({image_size})",
    )


def _load(split: str, root: Path | None = None, download: bool = False,
          image_size: int = DEFAULT_SIZE, crop_fraction: float = DEFAULT_CROP_FRACTION) -> FileImageDataset:
    spec = _spec(image_size, crop_fraction)
    layout = f"root/train/<class>/*, root/{'|'.join(TEST_DIRS)}/<class>/*"
    if download:
        raise FlatkdError("imagefolder cannot be downloaded; pass --data-root DIR laid out as " + layout)
    if root is None:
        raise FlatkdError("imagefolder needs --data-root DIR laid out as " + layout)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FlatkdError(f"imagefolder: expected {train_dir} ({layout})")
    try:
        classes, class_to_idx = find_classes(train_dir)
    except FileNotFoundError:
        raise FlatkdError(f"imagefolder: no class folders in {train_dir} ({layout})") from None
    if split == "train":
        split_dir = train_dir
    else:
        found = [root / d for d in TEST_DIRS if (root / d).is_dir()]
        if not found:
            raise FlatkdError(f"imagefolder: expected a test split at {root}/val or {root}/test ({layout})")
        split_dir = found[0]
        extra = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in class_to_idx)
        if extra:
            raise FlatkdError(f"imagefolder: class folder(s) {', '.join(extra[:5])} in {split_dir} "
                              f"are not in {train_dir}")
    samples = make_dataset(split_dir, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise FlatkdError(f"imagefolder: no images ({', '.join(IMG_EXTENSIONS)}) under {split_dir}")
    return FileImageDataset(samples, spec.replace(num_classes=len(classes)), size=spec.image_size,
                            crop_fraction=crop_fraction, classes=classes)


DATASETS.register("imagefolder")(DatasetFamily(spec=_spec, load=_load,
                                               options=("image_size", "crop_fraction")))
