"""Settings of ``flatkd eval --suite landscape`` (``landscape.*`` config keys)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import FlatkdError
from ..sharpness.config import positive_float, positive_int

SLICES = ("1d", "2d")


@dataclass
class LandscapeConfig:
    """Loss-landscape slices (Li et al. 2018) and the linear path between two checkpoints.

    slices: which slices to draw: ``1d`` (along one direction), ``2d`` (a plane of two), or
        both (default 1d, 2d).
    resolution: grid points per axis, odd so that the grid holds the unperturbed weights
        (default 21: a 2-D slice is 21 × 21 loss evaluations).
    span: the grid covers coefficients −span..span of each filter-normalised direction
        (default 1.0: at ±1 every filter moves by its own norm).
    samples: N, the first N un-augmented training samples the loss and accuracy are measured on
        (default 512; the whole split when it is smaller).
    path_to: a second checkpoint (same architecture); when set, loss and accuracy are also
        measured along the straight line from this network to that one's (same --model), and
        the barrier height is reported. Unset: no path (default).
    path_points: points on the path, both ends included (default 11).
    path_bn: ``recompute`` (default: before measuring each point of the path the BatchNorm
        running statistics are recomputed from the samples, since interpolated weights do not
        match either end's statistics) or ``interpolate`` (running statistics interpolated
        like the weights).
    bn_samples: training samples used to recompute BatchNorm statistics on the path (default
        1024; the whole split when it is smaller).
    """

    slices: list[str] = field(default_factory=lambda: ["1d", "2d"])
    resolution: int = 21
    span: float = 1.0
    samples: int = 512
    path_to: Optional[str] = None
    path_points: int = 11
    path_bn: str = "recompute"
    bn_samples: int = 1024

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        if not isinstance(self.slices, list) or len(set(self.slices)) != len(self.slices) \
                or any(s not in SLICES for s in self.slices):
            raise FlatkdError(f"landscape.slices: {self.slices!r} is not valid; valid: a list "
                              f"of {', '.join(SLICES)} (or empty)")
        positive_int("landscape.resolution", self.resolution, minimum=3)
        if self.resolution % 2 == 0:
            raise FlatkdError(f"landscape.resolution must be odd (the grid then holds the "
                              f"unperturbed weights), got {self.resolution}")
        positive_float("landscape.span", self.span)
        positive_int("landscape.samples", self.samples)
        positive_int("landscape.path_points", self.path_points, minimum=2)
        positive_int("landscape.bn_samples", self.bn_samples)
        if self.path_bn not in ("recompute", "interpolate"):
            raise FlatkdError(f"landscape.path_bn: {self.path_bn!r} is not valid; valid "
                              "choices: recompute, interpolate")
        if self.path_to is not None and not isinstance(self.path_to, str):
            raise FlatkdError(f"landscape.path_to must be a checkpoint path, got {self.path_to!r}")
