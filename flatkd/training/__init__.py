"""Training: ``run(method, arch, dataset, out_dir, ...)`` → checkpoint path."""
from __future__ import annotations

from pathlib import Path

from .config import TrainConfig
from .resolve import resolve
from .loop import Trainer
from .methods import METHODS

__all__ = ["METHODS", "TrainConfig", "Trainer", "resolve", "run"]


def run(method: str, arch: str, dataset: str, out_dir: str | Path, *, epochs: int | None = None,
        interval: float | None = None, seed: int | None = None, device: str | None = None,
        config_file: str | None = None, overrides: dict | None = None, resume: bool = False,
        progress: bool = True) -> Path:
    """Train one run and return its checkpoint path (``out_dir/checkpoint.pt``)."""
    cfg = resolve(method, arch, dataset, config_file=config_file, overrides=overrides,
                  epochs=epochs, interval=interval, seed=seed, device=device)
    return Trainer(cfg, out_dir, resume=resume, progress=progress).run()
