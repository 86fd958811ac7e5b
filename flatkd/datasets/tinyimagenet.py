"""``tinyimagenet``: the standard ``tiny-imagenet-200`` folder, 200 classes, 64×64 RGB.

Layout (``root`` is the ``tiny-imagenet-200`` folder or its parent)::

    wnids.txt                        one WordNet id per line; line order = label 0..199
    train/<wnid>/images/*.JPEG       500 images per class (the train split)
    val/images/*.JPEG                10,000 images (the test split: the official test set
    val/val_annotations.txt          has no labels); lines "file<TAB>wnid<TAB>x y w h"

Images are decoded on access (grey images become RGB); any image not 64×64 is resized.
No download: the archive must be fetched by hand. Normalisation: the Tiny-ImageNet train-set
mean/std commonly used with it, (0.4802, 0.4481, 0.3975) / (0.2302, 0.2265, 0.2262).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FlatkdError
from .base import DATASETS, DatasetFamily, DatasetSpec, FileImageDataset, default_data_root

FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64

SPEC = DatasetSpec(
    name="tinyimagenet", num_classes=200, image_size=IMAGE_SIZE,
    mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262),
    train_size=100000, test_size=10000, hflip=True,
    augmentation="RandomCrop(64, padding=4) + RandomHorizontalFlip",
    description="tiny-imagenet-200 folder; test split = val/ (val_annotations.txt)",
)


def _require(path: Path, what: str, folder: Path) -> Path:
    if not path.exists():
        raise FlatkdError(
            f"tinyimagenet: expected {what} at {path}; pass --data-root DIR holding the "
            f"standard {FOLDER}/ folder (wnids.txt, train/<wnid>/images, val/images, "
            f"val/val_annotations.txt); looked in {folder}"
        )
    return path


def _train_samples(folder: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    samples = []
    for label, wnid in enumerate(wnids):
        images = _require(folder / "train" / wnid / "images", f"train images of {wnid}", folder)
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        samples += [(p, label) for p in files]
    return samples


def _val_samples(folder: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    ann = _require(folder / "val" / "val_annotations.txt", "the val annotation file", folder)
    images = _require(folder / "val" / "images", "the val images folder", folder)
    label_of = {w: i for i, w in enumerate(wnids)}
    samples = []
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise FlatkdError(f"{ann}:{lineno}: expected 'file<TAB>wnid…' with a wnid from "
                              f"wnids.txt, got {line!r}")
        samples.append((_require(images / fields[0], "a val image", folder), label_of[fields[1]]))
    return sorted(samples)


def _load(split: str, root: Path | None = None, download: bool = False) -> FileImageDataset:
    if download:
        raise FlatkdError("tinyimagenet cannot be downloaded by flatkd; fetch tiny-imagenet-200 "
                          "and pass --data-root")
    root = root if root is not None else default_data_root()
    folder = root if root.name == FOLDER or (root / "wnids.txt").is_file() else root / FOLDER
    wnids_file = _require(folder / "wnids.txt", "wnids.txt", folder)
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    samples = _train_samples(folder, wnids) if split == "train" else _val_samples(folder, wnids)
    if not samples:
        raise FlatkdError(f"tinyimagenet: no {split} images found under {folder}")
    spec = SPEC.replace(num_classes=len(wnids))
    return FileImageDataset(samples, spec, size=IMAGE_SIZE, classes=wnids)


DATASETS.register("tinyimagenet")(DatasetFamily(spec=lambda: SPEC, load=_load))
