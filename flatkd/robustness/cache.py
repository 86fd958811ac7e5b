"""On-disk cache of corrupted test sets: generated once, in parallel, read by every later run.

An entry is one uint8 array [N, H, W, 3] (``.npy``) per (dataset, split, corruption,
severity, seed, constants, imagecorruptions version, clean-data fingerprint), written
atomically (temporary file in the same directory, then ``os.replace``): a partially written
entry never carries the final name, and an unreadable or mis-shaped file is regenerated.

Integrity: the SHA-256 of each entry's bytes is computed while it is written and stored, after
the entry, in a sidecar ``<entry>.npy.sha256`` (``sha256sum`` format, also written atomically).
An entry is used only when its bytes hash to the recorded value, so a file altered at the same
size (zeroed blocks, a flipped bit) or one without a checksum (written by an older flatkd, or
by a writer that died between the two renames) is regenerated, never silently used.

Generation runs over the available cores with a process pool. Image ``i`` of an entry is
corrupted with a seed derived from (seed, corruption, severity, i), so the arrays do not depend
on the number of workers or the chunking.

Under torchrun (``dist``) rank 0 alone generates and writes missing entries while the other
ranks wait on a barrier, then read them: each entry is written once, with no racing writers.
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

from ..io import atomic_path, write_text
from ..training.distributed import DistContext, main_first
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


CHECKSUM_SUFFIX = ".sha256"
_CHUNK = 1 << 20


def checksum_path(path: Path) -> Path:
    """The sidecar holding ``path``'s SHA-256: ``<name>.sha256`` in the same folder."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the bytes of ``path`` (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def recorded_sha256(path: Path) -> str | None:
    """The checksum recorded for ``path`` at write time, or None when there is none."""
    try:
        fields = checksum_path(path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return fields[0] if fields and len(fields[0]) == 64 else None


def load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array at ``path`` if its bytes match the recorded SHA-256 and it is a complete
    uint8 array of ``shape``; else None (the caller regenerates it)."""
    recorded = recorded_sha256(path)
    try:
        if recorded is None or file_sha256(path) != recorded:
            return None
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return arr if arr.dtype == np.uint8 and arr.shape == shape else None


class _HashingWriter:
    """A write-only file wrapper that feeds every written byte to a SHA-256."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)


def save(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as ``.npy`` atomically, then its SHA-256 sidecar (atomically too)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _HashingWriter(f)
        np.save(out, arr, allow_pickle=False)
    write_text(checksum_path(path), f"{out.sha.hexdigest()}  {Path(path).name}\n")


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
                   progress: bool, dist: DistContext = DistContext()) -> dict[Job, np.ndarray]:
    """Corrupted versions of ``images`` for every (corruption, severity) job, from the cache
    in ``cache_dir`` where present, generated (in parallel) and cached otherwise.

    images: clean uint8 [N, H, W, 3] (H, W ≥ 32). Returns {job: uint8 [N, H, W, 3]}.
    Under ``dist`` only rank 0 writes; another rank reads after it, and generates in memory
    only an entry it cannot see (a ``cache_dir`` not shared between machines).
    """
    cache_dir = Path(cache_dir)
    data = fingerprint(images)
    paths = {job: cache_dir / EntryKey(dataset, split, job[0], job[1], seed, constants,
                                       data).filename for job in jobs}
    with main_first(dist):
        found = {job: load(p, images.shape) for job, p in paths.items()}
        result = {job: arr for job, arr in found.items() if arr is not None}
        missing = [job for job in jobs if job not in result]
        if missing:
            write = (lambda job, arr: save(paths[job], arr)) if dist.is_main else None
            result.update(generate(images, missing, constants=constants, seed=seed,
                                   workers=workers, progress=progress, on_done=write))
    return {job: result[job] for job in jobs}
