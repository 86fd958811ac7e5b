"""``cifar10`` / ``cifar100``: the standard python-pickle batches, held in memory as uint8.

Files expected under ``root`` (or ``root`` being the inner folder itself), as torchvision's
``CIFAR10``/``CIFAR100`` download and extract them:

* cifar10:  ``cifar-10-batches-py/data_batch_1..5`` (train), ``test_batch`` (test), key ``labels``
* cifar100: ``cifar-100-python/train``, ``test``, key ``fine_labels`` (100 fine classes)

Each file is a pickled dict with ``data``: uint8 ``[N, 3072]`` (1024 R, 1024 G, 1024 B values,
each a row-major 32×32 plane). With ``download=True`` torchvision fetches and MD5-checks the
archive first; reading is always done here, with an unpickler that only admits numpy arrays
(a crafted "batch" file cannot run code). Without ``root``, the default data root is used
(``$FLATKD_DATA_ROOT`` or ``~/.cache/flatkd/data``).

Normalisation constants: the official code (BYOT ``train.py``, which Spaced-KD builds on) uses
the CIFAR-10 constants mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010) for both
CIFAR-10 and CIFAR-100; flatkd follows it.

Training augmentation (:mod:`flatkd.datasets.policies`): ``crop-flip`` by default (the
Spaced-KD / online-KD pipeline); ``autoaugment-cutout`` for self-KD methods, because BYOT's
``train.py`` always trains with AutoAugment (CIFAR-10 policy) + Cutout(16).
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import FlatkdError
from .base import DATASETS, DatasetFamily, DatasetSpec, TensorImageDataset, default_data_root

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
AUGMENTATION = ("crop-flip: RandomCrop(32, padding=4) + RandomHorizontalFlip, "
                "+ RandomRotation(15) for online KD (rotation=True); self-KD (BYOT): "
                "autoaugment-cutout: RandomCrop(32, padding=4, fill=128) + RandomHorizontalFlip "
                "+ AutoAugment(CIFAR10) + Cutout(16)")

# name → (folder, train files, test files, label key, num_classes, torchvision class name)
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "labels", 10, "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100, "CIFAR100"),
}


def _numpy_reconstruct():
    # NumPy 2 pickles name numpy._core.multiarray; the published CIFAR files (NumPy 1, Python 2)
    # name numpy.core.multiarray, which NumPy 2 only keeps as a deprecated alias.
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except ImportError:
            continue
    raise ImportError("numpy multiarray._reconstruct not found")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: dicts, lists, str/bytes and numpy arrays."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return super().find_class(module, name)


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    """One batch file → (uint8 ``[N, 3, 32, 32]``, labels). Raises FlatkdError if malformed."""
    try:
        with open(path, "rb") as f:
            entry = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise FlatkdError(f"{path} is not a CIFAR python-pickle batch: {e}") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise FlatkdError(f"{path} is not a CIFAR batch: expected a dict with 'data' and {label_key!r}")
    data = np.asarray(entry["data"])
    labels = [int(v) for v in entry[label_key]]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise FlatkdError(f"{path}: 'data' must be uint8 [N, 3072] with N = len({label_key}), "
                          f"got {data.dtype} {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _folder(name: str, root: Path) -> Path:
    inner = LAYOUTS[name][0]
    return root if root.name == inner else root / inner


def _download(name: str, root: Path, split: str) -> None:
    import torchvision

    cls = getattr(torchvision.datasets, LAYOUTS[name][5])
    try:
        cls(str(root), train=split == "train", download=True)
    except Exception as e:  # network/IO failure: one clear line
        raise FlatkdError(f"could not download {name} into {root}: {e}") from None


def _load(name: str, split: str, root: Path | None = None, download: bool = False) -> TensorImageDataset:
    inner, train_files, test_files, label_key, num_classes, _ = LAYOUTS[name]
    root = root if root is not None else default_data_root()
    if download:
        _download(name, root, split)
    folder = _folder(name, root)
    files = [folder / f for f in (train_files if split == "train" else test_files)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FlatkdError(
            f"{name} {split} split not found: expected {', '.join(missing)} in {folder} "
            f"(standard python-pickle batches); pass --data-root DIR containing {inner}/, "
            f"or allow a network download (download=True)"
        )
    parts = [read_batch(f, label_key) for f in files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = [y for p in parts for y in p[1]]
    bad = [y for y in labels if not 0 <= y < num_classes]
    if bad:
        raise FlatkdError(f"{name}: label {bad[0]} out of range 0..{num_classes - 1} in {folder}")
    return TensorImageDataset(images, labels, _spec(name))


def _spec(name: str) -> DatasetSpec:
    n = LAYOUTS[name][4]
    return DatasetSpec(name=name, num_classes=n, image_size=32, mean=MEAN, std=STD,
                       train_size=50000, test_size=10000, hflip=True, augmentation=AUGMENTATION,
                       self_policy="autoaugment-cutout",
                       description=f"CIFAR-{n} python-pickle batches (torchvision layout)")


for _name in LAYOUTS:
    DATASETS.register(_name)(DatasetFamily(
        spec=lambda _n=_name: _spec(_n),
        load=lambda split, root=None, download=False, _n=_name: _load(_n, split, root, download),
    ))
