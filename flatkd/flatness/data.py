"""The sample sets the flatness measurements run on, as mini-batches on a device.

Under torchrun a sample set is split over the ranks in whole batches
(:func:`flatkd.training.distributed.batch_range`): each rank iterates its own batches, and the
measurements sum their per-batch terms over the ranks (``Batches.dist``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import FlatkdError
from ..training.distributed import DistContext, batch_range


@dataclass
class Batches:
    """Mini-batches ``(x [B,C,H,W] float in [0,1], y [B] int64)`` covering ``n`` samples.

    ``materialised`` batches live in memory (reused for every Hessian-vector product);
    otherwise each iteration streams the dataset again (bounded memory for a whole train split).
    Under ``dist`` iteration yields only this rank's batches (samples ``share``); ``n`` stays
    the size of the whole set.
    """

    n: int
    batch_size: int
    device: torch.device
    dataset: Dataset
    materialised: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    dist: DistContext = DistContext()

    @property
    def share(self) -> range:
        """The samples this rank iterates (all ``n`` in a single process)."""
        return batch_range(self.n, self.batch_size, self.dist)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.materialised is not None:
            yield from self.materialised
            return
        for x, y in self._loader():
            yield x.to(self.device), y.to(self.device)

    def __len__(self) -> int:
        """Batches this rank iterates."""
        return -(-len(self.share) // self.batch_size)

    def _loader(self) -> DataLoader:
        # a private generator: DataLoader otherwise draws its base seed from the global RNG
        return DataLoader(Subset(self.dataset, self.share), batch_size=self.batch_size,
                          shuffle=False, num_workers=0, generator=torch.Generator())


def first_samples(dataset: Dataset, n: int, batch_size: int, device: torch.device,
                  *, materialise: bool = True, dist: DistContext = DistContext()) -> Batches:
    """The first ``n`` samples of ``dataset`` in order, in batches of ``batch_size`` (under
    ``dist``: this rank's batches of them).

    Raises FlatkdError if the dataset holds fewer than ``n`` samples.
    """
    size = len(dataset)
    if n > size:
        raise FlatkdError(f"hessian.samples={n} exceeds the train split ({size} samples); "
                          f"valid values: 1..{size}")
    if batch_size < 1:
        raise FlatkdError(f"batch_size must be >= 1, got {batch_size}")
    batches = Batches(n=n, batch_size=batch_size, device=device, dataset=dataset, dist=dist)
    if materialise:
        batches.materialised = [(x.to(device), torch.as_tensor(y).to(device))
                                for x, y in batches._loader()]
    return batches
