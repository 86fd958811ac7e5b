"""The sample sets the flatness measurements run on, as mini-batches on a device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import FlatkdError


@dataclass
class Batches:
    """Mini-batches ``(x [B,C,H,W] float in [0,1], y [B] int64)`` covering ``n`` samples.

    ``materialised`` batches live in memory (reused for every Hessian-vector product);
    otherwise each iteration streams the dataset again (bounded memory for a whole train split).
    """

    n: int
    batch_size: int
    device: torch.device
    dataset: Dataset
    materialised: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.materialised is not None:
            yield from self.materialised
            return
        for x, y in self._loader():
            yield x.to(self.device), y.to(self.device)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def _loader(self) -> DataLoader:
        # a private generator: DataLoader otherwise draws its base seed from the global RNG
        return DataLoader(Subset(self.dataset, range(self.n)), batch_size=self.batch_size,
                          shuffle=False, num_workers=0, generator=torch.Generator())


def first_samples(dataset: Dataset, n: int, batch_size: int, device: torch.device,
                  *, materialise: bool = True) -> Batches:
    """The first ``n`` samples of ``dataset`` in order, in batches of ``batch_size``.

    Raises FlatkdError if the dataset holds fewer than ``n`` samples.
    """
    size = len(dataset)
    if n > size:
        raise FlatkdError(f"hessian.samples={n} exceeds the train split ({size} samples); "
                          f"valid values: 1..{size}")
    if batch_size < 1:
        raise FlatkdError(f"batch_size must be >= 1, got {batch_size}")
    batches = Batches(n=n, batch_size=batch_size, device=device, dataset=dataset)
    if materialise:
        batches.materialised = [(x.to(device), torch.as_tensor(y).to(device))
                                for x, y in batches._loader()]
    return batches
