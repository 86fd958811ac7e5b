"""Corruption names, severity-constant sets and the per-image corruption call.

Two constant sets (``robustness.constants``):

* ``imagenet-c`` (default; what the paper used): the package's own severity tables, i.e.
  ImageNet-C's, designed for 224 px images.
* ``cifar-c``: the severity tables of Hendrycks' CIFAR-10-C generator (``make_cifar_c.py`` in
  hendrycks/robustness), written below as facts, applied to imagecorruptions' algorithms.
  Only the tables change: e.g. frost keeps the package's texture scaling and motion blur the
  package's own (Wand-free) kernel. ``elastic_transform`` has no ``cifar-c`` table — CIFAR-10-C
  uses a different algorithm (random affine + elastic field, three parameters) that does not
  map onto the package's one-parameter version — so it is only offered under ``imagenet-c``.
"""
from __future__ import annotations

import functools
import zlib
from typing import Callable

import numpy as np

from ..errors import FlatkdError
from ..registry import Registry
from . import corruptions_compat as compat

CORRUPTIONS: Registry[str] = Registry("corruption")
"""The 19 imagecorruptions names → family (noise, blur, weather, digital, extra)."""

for _family, _names in {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}.items():
    for _name in _names:
        CORRUPTIONS.register(_name)(_family)

PAPER_CORRUPTIONS = ("impulse_noise", "zoom_blur", "snow", "frost", "jpeg_compression",
                     "brightness")
"""The six corruptions of the paper's Tables 5 and 12."""

SEVERITIES = (1, 2, 3, 4, 5)

CIFAR_C_TABLES: dict[str, str] = {
    "gaussian_noise": "[0.04, 0.06, 0.08, 0.09, 0.10]",
    "shot_noise": "[500, 250, 100, 75, 50]",
    "impulse_noise": "[0.01, 0.02, 0.03, 0.05, 0.07]",
    "speckle_noise": "[0.06, 0.1, 0.12, 0.16, 0.2]",
    "gaussian_blur": "[0.4, 0.6, 0.7, 0.8, 1]",
    "glass_blur": "[(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]",
    "defocus_blur": "[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]",
    "motion_blur": "[(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]",
    "zoom_blur": "[np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), "
                 "np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)]",
    "fog": "[(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]",
    "frost": "[(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)]",
    "snow": "[(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), "
            "(0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), "
            "(0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]",
    "spatter": "[(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), "
               "(0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1), "
               "(0.65, 0.1, 0.5, 0.68, 0.6, 1)]",
    "contrast": "[0.75, 0.5, 0.4, 0.3, 0.15]",
    "brightness": "[0.05, 0.1, 0.15, 0.2, 0.3]",
    "saturate": "[(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]",
    "jpeg_compression": "[80, 65, 58, 50, 40]",
    "pixelate": "[0.95, 0.9, 0.85, 0.75, 0.65]",
}
"""CIFAR-10-C severity tables (facts from make_cifar_c.py), as Python expressions."""

CONSTANTS: Registry[dict[str, str] | None] = Registry("severity constants")
"""Constant set name → {corruption: table expression}, or None for the package's own tables."""
CONSTANTS.register("imagenet-c")(None)
CONSTANTS.register("cifar-c")(CIFAR_C_TABLES)


def available(constants: str) -> list[str]:
    """Corruption names offered under a constant set (registry order is alphabetical)."""
    tables = CONSTANTS.get(constants)
    return [n for n in CORRUPTIONS.names() if tables is None or n in tables]


def resolve(names: list[str] | tuple[str, ...], constants: str) -> list[str]:
    """Validate corruption names; ``["all"]`` expands to every corruption of the constant set.

    Raises FlatkdError naming the valid choices for unknown names, duplicates, or a name
    without a table under ``constants``.
    """
    valid = available(constants)
    if list(names) == ["all"]:
        return valid
    if "all" in names:
        raise FlatkdError("robustness.corruptions: 'all' stands alone, not in a list of names")
    if not names:
        raise FlatkdError(f"robustness.corruptions is empty; valid: all, {', '.join(valid)}")
    for n in names:
        if n not in CORRUPTIONS:
            raise FlatkdError(f"unknown corruption {n!r}; valid: all, {', '.join(valid)}")
        if n not in valid:
            raise FlatkdError(f"corruption {n!r} has no {constants} severity table; valid "
                              f"under {constants}: all, {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise FlatkdError(f"robustness.corruptions lists a name twice: {', '.join(names)}")
    return list(names)


@functools.lru_cache(maxsize=None)
def function(name: str, constants: str) -> Callable:
    """The corruption function ``f(PIL.Image, severity)`` for a name under a constant set."""
    CORRUPTIONS.get(name)
    tables = CONSTANTS.get(constants)
    if tables is None:
        return compat.FUNCTIONS[name]
    resolve([name], constants)
    return compat.with_severity_table(name, tables[name])


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """Seed for image ``index`` of a corrupted set: independent of batching and worker count."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity, index])
               .generate_state(1)[0])


def corrupt_image(image: np.ndarray, name: str, severity: int, constants: str, seed: int,
                  index: int) -> np.ndarray:
    """Corrupt one uint8 HxWx3 image (H, W ≥ 32) → uint8 HxWx3, deterministic in all arguments."""
    return compat.corrupt(image, function(name, constants), severity,
                          image_seed(seed, name, severity, index))
