"""Deterministic batch stream for exact replay (Spaced KD, paper Alg. 2 / Eq. 5).

A batch is described by a :class:`BatchSpec` — global step, sample indices and one integer
augmentation seed (a multiple of 2^20, so batches never share sample seeds) — never by its
pixels. Sample ``j`` of a batch is augmented with a ``torch.Generator`` seeded ``spec.seed + j``, so materialising the same spec twice gives
pixel-equal tensors, and a replay buffer costs 8 bytes per sample instead of C·H·W·4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.augment import item_seed

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class BatchSpec:
    """One optimizer step's data: global ``step`` (1-based), ``epoch`` (1-based), ``indices``, ``seed``."""
    step: int
    epoch: int
    indices: tuple[int, ...]
    seed: int

    def to_plain(self) -> list:
        return [self.step, self.epoch, list(self.indices), self.seed]

    @staticmethod
    def from_plain(row: Sequence) -> "BatchSpec":
        return BatchSpec(int(row[0]), int(row[1]), tuple(int(i) for i in row[2]), int(row[3]))


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch without drop_last: ceil(n / batch_size)."""
    return -(-n // batch_size)


def epoch_specs(n: int, batch_size: int, seed: int, epoch: int, first_step: int) -> list[BatchSpec]:
    """The batches of ``epoch`` (1-based): a seeded shuffle of range(n), last batch possibly short."""
    g = torch.Generator().manual_seed(item_seed(seed, epoch, -1))
    perm = torch.randperm(n, generator=g).tolist()
    specs = []
    for b, start in enumerate(range(0, n, batch_size)):
        step = first_step + b
        specs.append(BatchSpec(step, epoch, tuple(perm[start:start + batch_size]),
                               item_seed(seed, epoch, step) >> 21 << 20))
    return specs


class _SpecDataset(Dataset):
    """Maps (index, sample_seed) → augmented (image, label)."""

    def __init__(self, base: Dataset, augment: Augment | None):
        self.base, self.augment = base, augment

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        x, y = self.base[index]
        if self.augment is not None:
            x = self.augment(x, torch.Generator().manual_seed(sample_seed))
        return x, y


class _CurrentBatches:
    """A batch sampler whose batches are swapped between passes (see :class:`Materializer`)."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Materializer:
    """Turns lists of specs into batches through one DataLoader; with ``num_workers > 0`` its
    worker processes persist from one call to the next (a spaced run materialises a new list
    of specs for every replay: re-spawning workers each time would cost more than the replay).
    """

    def __init__(self, base: Dataset, augment: Augment | None, num_workers: int = 0,
                 persistent: bool = True):
        self._batches = _CurrentBatches()
        self.loader = DataLoader(_SpecDataset(base, augment), batch_sampler=self._batches,
                                 num_workers=num_workers,
                                 persistent_workers=persistent and num_workers > 0)

    def __call__(self, specs: Sequence[BatchSpec]) -> Iterator[tuple[BatchSpec, torch.Tensor, torch.Tensor]]:
        """Yield (spec, images [B, C, H, W] in [0, 1], labels [B]) for each spec, in order.
        Consume one call's batches before the next call."""
        self._batches.batches = [[(i, s.seed + j) for j, i in enumerate(s.indices)] for s in specs]
        for spec, (x, y) in zip(specs, self.loader):
            yield spec, x, torch.as_tensor(y, dtype=torch.long)


def materialize(base: Dataset, augment: Augment | None, specs: Sequence[BatchSpec],
                num_workers: int = 0) -> Iterator[tuple[BatchSpec, torch.Tensor, torch.Tensor]]:
    """Yield (spec, images [B, C, H, W] in [0, 1], labels [B]) for each spec, in order (one pass,
    workers not kept)."""
    return Materializer(base, augment, num_workers, persistent=False)(specs)
