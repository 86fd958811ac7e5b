"""Seeded network construction that leaves the global RNG untouched."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def seeded(seed: int, build: Callable[[], T]) -> T:
    """Run ``build()`` (which may draw from the global torch RNG) under ``seed``; restore the RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
