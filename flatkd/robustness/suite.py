"""``flatkd eval --suite robustness``: clean, corruption and BIM accuracy of one model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..accuracy import top1_accuracy
from ..errors import FlatkdError
from ..training.distributed import DistContext, batch_range, sum_counts
from . import published as pub
from .attacks import AttackSettings, attack_rows
from .cache import corrupted_sets
from .config import RobustnessConfig


def collect(test_set: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split in memory: x float32 [N, 3, H, W] in [0, 1], y int64 [N]."""
    xs, ys = [], []
    for x, y in DataLoader(test_set, batch_size=batch_size, shuffle=False):
        xs.append(x.float())
        ys.append(torch.as_tensor(y, dtype=torch.long))
    x, y = torch.cat(xs), torch.cat(ys)
    if x.ndim != 4 or x.shape[1] != 3:
        raise FlatkdError("the robustness suite needs RGB images [N, 3, H, W], "
                          f"got {tuple(x.shape)}")
    return x, y


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] floats in [0, 1] → uint8 [N, H, W, 3] (rounded to the nearest level)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device,
             batch_size: int, dist: DistContext = DistContext()) -> float:
    """Top-1 accuracy (fraction) of ``model`` on x [N, C, H, W] (float in [0, 1] or uint8 NHWC).

    Under ``dist`` each rank classifies its batches (:func:`batch_range`) and the counts are
    summed over the ranks: the same number as one process."""
    share = batch_range(len(y), batch_size, dist)

    def batches():
        for i in range(share.start, share.stop, batch_size):
            xb = x[i:i + batch_size]                # share.stop is n or a batch boundary
            if xb.dtype == torch.uint8:
                xb = xb.permute(0, 3, 1, 2).float() / 255
            yield xb, y[i:i + batch_size]

    correct = round(top1_accuracy(model, batches(), device) * len(share)) if len(share) else 0
    return sum_counts([correct], dist)[0] / len(y)


def run_robustness(model: nn.Module, test_set: Dataset, *, dataset_name: str,
                   cfg: RobustnessConfig, seed: int, device: torch.device, batch_size: int,
                   progress: bool, cache_dir: Path, data_root: str | None = None,
                   dist: DistContext = DistContext()) -> dict:
    """The "robustness" section of the result file for ``model`` on the whole split.

    Corrupted sets come from (or go to) the cache in ``cache_dir``; the model runs in eval
    mode on ``device`` (its training flag is restored afterwards). Returns
    {"clean_accuracy", "corruptions": [{"corruption", "severity", "accuracy"}],
    "adversarial": [{"attack": "BIM", "epsilon", "stepsize", "steps", "accuracy"}]},
    accuracies as fractions, rows in config order. Same inputs and seed → same dict.
    With ``cfg.source == "published"`` the corrupted sets are read from the released arrays
    (under ``data_root`` or ``cfg.published_dir``); adversarial rows come from every attack of
    ``cfg.attacks``; ``corruption_errors`` (unnormalised mCE) is added when all 15 benchmark
    corruptions have severities 1-5 (the source is recorded with the settings).
    """
    cfg.validate()
    folder = None
    if cfg.source == "published":
        folder = pub.folder(dataset_name, data_root, cfg.published_dir)
        names = pub.resolve(cfg.corruptions, folder)
    else:
        names = cfg.corruption_names()
    was_training = model.training
    model.eval().to(device)
    try:
        x, y = collect(test_set)
        clean = accuracy(model, x, y, device=device, batch_size=batch_size, dist=dist)
        jobs = [(name, s) for name in names for s in cfg.severities]
        if folder is not None:
            sets = pub.published_sets(folder, jobs, y.numpy(), x.shape[-1])
        else:
            sets = corrupted_sets(to_uint8_hwc(x), jobs, dataset=dataset_name, split="test",
                                  constants=cfg.constants, seed=seed, cache_dir=cache_dir,
                                  workers=cfg.workers, progress=progress, dist=dist)
        rows = []
        for name, s in tqdm(jobs, desc="corruption accuracy", disable=not progress):
            acc = accuracy(model, torch.from_numpy(sets[name, s]), y, device=device,
                           batch_size=batch_size, dist=dist)
            rows.append({"corruption": name, "severity": s, "accuracy": acc})
        settings = AttackSettings(epsilons=list(cfg.epsilons), bim_protocol=cfg.bim_protocol,
                                  pgd_steps=cfg.pgd_steps, pgd_restarts=cfg.pgd_restarts,
                                  seed=seed)
        adversarial = attack_rows(model, x, y, cfg.attacks, settings, device=device,
                                  batch_size=batch_size, progress=progress, dist=dist)
    finally:
        model.train(was_training)
    out = {"clean_accuracy": clean, "corruptions": rows, "adversarial": adversarial}
    errors = pub.corruption_errors(rows, clean)
    if errors is not None:
        out["corruption_errors"] = errors
    return out
