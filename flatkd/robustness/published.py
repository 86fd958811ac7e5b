"""The published corruption benchmarks: CIFAR-10-C, CIFAR-100-C (Hendrycks & Dietterich 2019)
and Tiny-ImageNet-C, in the ``.npy`` layout that Hendrycks' releases and RobustBench use.

Layout (one folder per benchmark, under the data root or ``robustness.published_dir``)::

    CIFAR-10-C/                      CIFAR-100-C/ and Tiny-ImageNet-C/ alike
      labels.npy                     int [5·N]: the test labels, once per severity
      brightness.npy                 uint8 [5·N, H, W, 3]: severities 1..5 stacked, N images each
      ...                            (19 files: the 15 benchmark corruptions + 4 extra)

Rows (s − 1)·N … s·N − 1 of a corruption file hold severity s, in the order of the clean test
split. Hendrycks distributes Tiny-ImageNet-C as JPEG folders; convert it to this layout (one
array per corruption, severities stacked, labels.npy) to use it here.

Corruption error (Hendrycks & Dietterich 2019): with E_{s,c} the top-1 error under corruption
c at severity s and E_clean the clean error, the mean corruption error is
mCE = mean_c Σ_s E_{s,c} / Σ_s E^base_{s,c} and the relative mCE
mean_c Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean), over the 15 benchmark
corruptions at severities 1–5. :func:`corruption_errors` reports the unnormalised sums
(baseline errors = 1, i.e. the average error, the usual CIFAR-C convention); ``flatkd report``
normalises them by a stated baseline network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import FlatkdError, one_line
from ..registry import Registry
from .corruptions import CORRUPTIONS

FOLDERS: Registry[str] = Registry("published corruption benchmark")
"""flatkd dataset name → the benchmark's folder name."""
FOLDERS.register("cifar10")("CIFAR-10-C")
FOLDERS.register("cifar100")("CIFAR-100-C")
FOLDERS.register("tinyimagenet")("Tiny-ImageNet-C")

BENCHMARK = tuple(n for n in CORRUPTIONS.names() if CORRUPTIONS.get(n) != "extra")
"""The 15 corruptions mCE averages over (noise, blur, weather, digital)."""
SEVERITIES = (1, 2, 3, 4, 5)


def folder(dataset: str, root: str | Path | None, override: str | Path | None = None) -> Path:
    """The benchmark folder of ``dataset``: ``override`` if given, else ``root/<FOLDER>``."""
    if override:
        p = Path(override)
    else:
        name = FOLDERS.get(dataset)
        if root is None:
            raise FlatkdError(f"robustness.source=published needs the folder {name}/: pass "
                              "--set data_root=DIR (the folder holding it) or "
                              "robustness.published_dir")
        p = Path(root) / name
    if not (p / "labels.npy").is_file():
        raise FlatkdError(f"{p} is not a published corruption folder (no labels.npy); expected "
                          "one <corruption>.npy per corruption, severities 1-5 stacked, and "
                          "labels.npy")
    return p


def available(path: Path) -> list[str]:
    """Corruption names with a file in the folder (registry order)."""
    return [n for n in CORRUPTIONS.names() if (path / f"{n}.npy").is_file()]


def resolve(names: Sequence[str], path: Path) -> list[str]:
    """Validate names against the files present; ``[all]`` → every corruption present."""
    have = available(path)
    if list(names) == ["all"]:
        if not have:
            raise FlatkdError(f"{path} holds no corruption file (<name>.npy)")
        return have
    missing = [n for n in names if n not in have]
    if missing:
        raise FlatkdError(f"{path} has no file for {', '.join(missing)}; present: "
                          f"all, {', '.join(have) or '(none)'}")
    return list(names)


def _open(file: Path) -> np.ndarray:
    """``file`` memory-mapped (no pickles); a file that is not a readable ``.npy`` array
    (garbage, truncated, object dtype) is refused naming it."""
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FlatkdError(f"{file} is not a readable .npy array ({one_line(str(e))}); the "
                          "published files are plain uint8 image / integer label arrays") from None


def check(path: Path, names: Sequence[str], labels: Sequence[int], image_size: int) -> None:
    """Refuse a folder whose files cannot be the benchmark of this test split, before any image
    is read: ``labels.npy`` must be an integer array [5·N] whose every severity block equals
    ``labels`` (the clean test labels, N of them), and each corruption in ``names`` a uint8
    array [5·N, image_size, image_size, 3]. Only the ``.npy`` headers and the labels are read."""
    n = len(labels)
    file = path / "labels.npy"
    stored = _open(file)
    if stored.dtype.kind not in "iu" or stored.ndim != 1 or len(stored) != len(SEVERITIES) * n:
        raise FlatkdError(f"{file} is {stored.dtype} {stored.shape}; expected integer labels "
                          f"[{len(SEVERITIES) * n}] (5 severities × {n} test images)")
    want = np.asarray(labels, dtype=np.int64)
    for s in SEVERITIES:
        if not np.array_equal(stored[(s - 1) * n: s * n], want):
            raise FlatkdError(f"{file}: the labels of severity {s} differ from the test split's; "
                              "the folder belongs to another dataset or order")
    expected = (len(SEVERITIES) * n, image_size, image_size, 3)
    for name in names:
        file = path / f"{name}.npy"
        arr = _open(file)
        if arr.dtype != np.uint8 or arr.shape != expected:
            raise FlatkdError(f"{file} is {arr.dtype} {arr.shape}; expected uint8 "
                              f"{list(expected)} (5 severities × {n} test images of "
                              f"{image_size}×{image_size}×3)")


def published_sets(path: Path, jobs: Sequence[tuple[str, int]], labels: Sequence[int],
                   image_size: int) -> dict[tuple[str, int], np.ndarray]:
    """{(name, severity): uint8 [N, H, W, 3]} for every job (a copy of the rows
    (severity − 1)·N … severity·N − 1), after :func:`check` of the folder against the clean
    test ``labels`` [N] and ``image_size``."""
    for _, s in jobs:
        if s not in SEVERITIES:
            raise FlatkdError(f"severity {s!r} is not valid; valid: 1, 2, 3, 4, 5")
    check(path, sorted({name for name, _ in jobs}), labels, image_size)
    n = len(labels)
    return {(name, s): np.array(_open(path / f"{name}.npy")[(s - 1) * n: s * n])
            for name, s in jobs}


def corruption_errors(rows: Sequence[Mapping], clean_accuracy: float) -> dict | None:
    """Unnormalised corruption errors when every benchmark corruption has all 5 severities:
    {"corruptions": {c: {"error_sum": Σ_s E_{s,c}, "relative_error_sum": Σ_s (E_{s,c} −
    E_clean)}}, "mce": mean_c Σ_s E_{s,c} / 5, "relative_mce": mean_c Σ_s (E_{s,c} −
    E_clean) / 5, "clean_error"}; None when some are missing."""
    err = {(r["corruption"], r["severity"]): 1 - r["accuracy"] for r in rows}
    if not all((c, s) in err for c in BENCHMARK for s in SEVERITIES):
        return None
    clean = 1 - clean_accuracy
    per = {c: {"error_sum": sum(err[c, s] for s in SEVERITIES),
               "relative_error_sum": sum(err[c, s] - clean for s in SEVERITIES)}
           for c in BENCHMARK}
    k = len(SEVERITIES) * len(BENCHMARK)
    return {"corruptions": per, "clean_error": clean,
            "mce": sum(v["error_sum"] for v in per.values()) / k,
            "relative_mce": sum(v["relative_error_sum"] for v in per.values()) / k}


def normalised(errors: Mapping, baseline: Mapping) -> dict:
    """mCE and relative mCE of ``errors`` normalised by ``baseline`` (both as returned by
    :func:`corruption_errors`): means over corruptions of the per-corruption ratios."""
    ce = [errors["corruptions"][c]["error_sum"] / baseline["corruptions"][c]["error_sum"]
          for c in BENCHMARK]
    rel = [errors["corruptions"][c]["relative_error_sum"]
           / baseline["corruptions"][c]["relative_error_sum"] for c in BENCHMARK]
    return {"mce": sum(ce) / len(ce), "relative_mce": sum(rel) / len(rel)}
