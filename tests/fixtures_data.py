"""Writers of tiny datasets in the real on-disk formats, so the real loaders run offline.

Each writer returns what it wrote (pixels and labels) so tests can compare exactly.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the published batches are protocol-2 pickles


def write_cifar100(root: Path, n_train: int = 24, n_test: int = 12, seed: int = 0) -> dict:
    """``root/cifar-100-python/{train,test,meta}``; data uint8 [N, 3072], 'fine_labels'.

    Returns {"train": (uint8 [N, 3, 32, 32], labels), "test": (...)}.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        _pickle(root / "cifar-100-python" / split, {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": fine,
            "coarse_labels": [y // 5 for y in fine],
            "data": images.reshape(n, 3072),
        })
        out[split] = (images, fine)
    _pickle(root / "cifar-100-python" / "meta", {
        "fine_label_names": [f"class{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    })
    return out


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> dict:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` with key 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    out = {"train": ([], []), "test": ([], [])}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        _pickle(folder / fname, {"batch_label": fname, "labels": labels,
                                 "data": images.reshape(per_batch, 3072),
                                 "filenames": [f"{fname}_{i}.png" for i in range(per_batch)]})
        split = "test" if fname == "test_batch" else "train"
        out[split][0].append(images)
        out[split][1].extend(labels)
    return {k: (np.concatenate(v[0]), v[1]) for k, v in out.items()}


def _colour_image(rng, h: int, w: int, mode: str = "RGB") -> Image.Image:
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img.convert("L") if mode == "L" else img


def write_tinyimagenet(root: Path, wnids=("n01443537", "n01629819", "n01641577"),
                       per_class: int = 2, seed: int = 0) -> dict:
    """``root/tiny-imagenet-200`` with wnids.txt, train/<wnid>/images/*.JPEG (64×64, one grey),
    val/images/*.JPEG and val/val_annotations.txt (val labels in a non-sorted order).

    Returns {"folder": Path, "wnids": list, "val": {filename: label}, "n_train": int}.
    """
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mode = "L" if (w == wnids[0] and i == 0) else "RGB"
            _colour_image(rng, 64, 64, mode).save(d / f"{w}_{i}.JPEG")
    val = {}
    lines = []
    order = [(2 * k + len(wnids) - 1) % len(wnids) for k in range(len(wnids) + 2)]  # not sorted
    for k, label in enumerate(order):
        name = f"val_{k}.JPEG"
        _colour_image(rng, 64, 64).save(folder / "val" / "images" / name)
        lines.append(f"{name}\t{wnids[label]}\t0\t0\t63\t63\n")
        val[name] = label
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return {"folder": folder, "wnids": list(wnids), "val": val, "n_train": per_class * len(wnids)}


def write_imagefolder(root: Path, classes=("cat", "dog"), per_class: int = 2,
                      size: tuple[int, int] = (40, 30), seed: int = 0) -> dict:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` of ``size`` (W, H), PNG (lossless).

    Returns {"root": Path, "classes": sorted list}.
    """
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _colour_image(rng, size[1], size[0]).save(d / f"{c}_{i}.png")
    return {"root": root, "classes": sorted(classes)}
