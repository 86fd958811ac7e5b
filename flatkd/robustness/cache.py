"""On-disk cache of corrupted test sets: generated once, in parallel, read by every later run.

An entry is one uint8 array [N, H, W, 3] (``.npy``) per (dataset, split, corruption,
severity, seed, constants, imagecorruptions version, clean-data fingerprint), written
atomically (temporary file in the same directory, then ``os.replace``): a partially written
entry never carries the final name, and an unreadable or mis-shaped file is regenerated.

Generation runs over the available cores with a process pool. Image ``i`` of an entry is
corrupted with a seed derived from (seed, corruption, severity, i), so the arrays do not depend
on the number of workers or the chunking.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import atomic_path
from . import corruptions_compat as compat
from .corruptions import corrupt_image

Job = tuple[str, int]
"""(corruption name, severity)."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fingerprint(images: np.ndarray) -> str:
    """Short content hash of the clean uint8 images [N, H, W, 3] (16 hex digits)."""
    h = hashlib.sha256(repr(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EntryKey:
    """Everything a corrupted set depends on; ``filename`` spells it out."""

    dataset: str
    split: str
    corruption: str
    severity: int
    seed: int
    constants: str
    data: str
    package: str = compat.VERSION

    @property
    def filename(self) -> str:
        return (f"{self.dataset}-{self.split}-{self.corruption}-s{self.severity}-seed{self.seed}"
                f"-{self.constants}-imagecorruptions{self.package}-{self.data}.npy")


def load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array at ``path`` if it is a complete uint8 array of ``shape``, else None."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return arr if arr.dtype == np.uint8 and arr.shape == shape else None


def save(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _corrupt_chunk(images: np.ndarray, name: str, severity: int, constants: str, seed: int,
                   start: int) -> np.ndarray:
    return np.stack([corrupt_image(img, name, severity, constants, seed, start + i)
                     for i, img in enumerate(images)])


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def generate(images: np.ndarray, jobs: list[Job], *, constants: str, seed: int, workers: int,
             progress: bool, on_done=None) -> dict[Job, np.ndarray]:
    """Corrupt ``images`` (uint8 [N, H, W, 3]) for every job; ``workers`` = 0 → all cores.

    ``on_done(job, array)`` is called as soon as one job's array is complete.
    Returns {job: uint8 [N, H, W, 3]}.
    """
    n = len(images)
    workers = workers or available_cores()
    out = {job: np.empty_like(images) for job in jobs}
    bar = tqdm(total=n * len(jobs), desc="corrupting", unit="img", disable=not progress)
    if workers == 1:
        for job in jobs:
            out[job][:] = _corrupt_chunk(images, *job, constants, seed, 0)
            bar.update(n)
            if on_done:
                on_done(job, out[job])
        bar.close()
        return out
    chunk = max(1, min(64, -(-n * len(jobs) // (8 * workers))))
    remaining = {job: -(-n // chunk) for job in jobs}
    with compat.serial_opencv(), ProcessPoolExecutor(max_workers=workers,
                                                     mp_context=_pool_context()) as pool:
        futures = {pool.submit(_corrupt_chunk, images[s:s + chunk], *job, constants, seed, s):
                   (job, s) for job in jobs for s in range(0, n, chunk)}
        for fut in as_completed(futures):
            job, s = futures[fut]
            block = fut.result()
            out[job][s:s + len(block)] = block
            bar.update(len(block))
            remaining[job] -= 1
            if remaining[job] == 0 and on_done:
                on_done(job, out[job])
    bar.close()
    return out


def corrupted_sets(images: np.ndarray, jobs: list[Job], *, dataset: str, split: str,
                   constants: str, seed: int, cache_dir: Path, workers: int,
                   progress: bool) -> dict[Job, np.ndarray]:
    """Corrupted versions of ``images`` for every (corruption, severity) job, from the cache
    in ``cache_dir`` where present, generated (in parallel) and cached otherwise.

    images: clean uint8 [N, H, W, 3] (H, W ≥ 32). Returns {job: uint8 [N, H, W, 3]}.
    """
    cache_dir = Path(cache_dir)
    data = fingerprint(images)
    paths = {job: cache_dir / EntryKey(dataset, split, job[0], job[1], seed, constants,
                                       data).filename for job in jobs}
    found = {job: load(p, images.shape) for job, p in paths.items()}
    result = {job: arr for job, arr in found.items() if arr is not None}
    missing = [job for job in jobs if job not in result]
    if missing:
        result.update(generate(images, missing, constants=constants, seed=seed, workers=workers,
                               progress=progress,
                               on_done=lambda job, arr: save(paths[job], arr)))
    return {job: result[job] for job in jobs}
