"""Seeded, class-stratified training fractions (data-efficiency experiments, ``train_fraction``)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
from torch.utils.data import Dataset, Subset

from ..errors import FlatkdError

#: offset of the fraction's draw from the run seed (never shared with shuffles or augmentation)
FRACTION_SEED_OFFSET = 7919


def stratified_indices(targets: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Indices of a class-stratified fraction: for each class c with n_c items, max(1,
    round(fraction · n_c)) of them drawn without replacement by a generator seeded ``seed``;
    returned sorted. Nested: a smaller fraction under the same seed is a subset of a larger."""
    if not 0 < fraction <= 1:
        raise FlatkdError(f"train_fraction must lie in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(targets):
        by_class[int(c)].append(i)
    g = torch.Generator().manual_seed(seed + FRACTION_SEED_OFFSET)
    keep = []
    for c in sorted(by_class):
        items = by_class[c]
        order = torch.randperm(len(items), generator=g).tolist()
        keep += [items[j] for j in order[:max(1, round(fraction * len(items)))]]
    return sorted(keep)


class StratifiedFraction(Subset):
    """:func:`stratified_indices` of ``base`` as a dataset keeping ``spec`` and ``targets``."""

    def __init__(self, base: Dataset, fraction: float, seed: int):
        targets = list(base.targets)
        super().__init__(base, stratified_indices(targets, fraction, seed))
        self.spec = base.spec
        self.targets = [targets[i] for i in self.indices]


def stratified_fraction(base: Dataset, fraction: float, seed: int) -> StratifiedFraction:
    """The seeded class-stratified ``fraction`` of ``base`` (see :func:`stratified_indices`)."""
    return StratifiedFraction(base, fraction, seed)
