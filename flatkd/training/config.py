"""Training configuration. Dataclass defaults are the paper's ResNet settings (§5.1):
SGD momentum 0.9, weight decay 5e-4, batch 128, 80 epochs, constant lr 0.01, T = 3, α = 0.3,
feature weight β = 0.03; spaced interval s = 1.5 epochs (online) / 4.0 (self).

A per-dataset preset (``flatkd/presets/<dataset>.yaml``) is applied on top of the defaults,
then the user's YAML file, then ``--set`` overrides; the preset in force is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Literal, Optional

import yaml

from .. import config as cfgmod
from ..errors import FlatkdError


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: float = 0.0
    min_lr: float = 5e-6


@dataclass
class KDConfig:
    """Response + feature distillation (paper Eq. 2; official online-KD code)."""
    temperature: float = 3.0
    alpha: float = 0.3            # weight of the KD term; (1 − α) on cross-entropy
    feature_weight: float = 0.03  # β on the feature term (projector(student feat) → teacher feat)
    loss: Literal["kl", "ce", "l1", "smoothl1", "mse", "mse_sum"] = "kl"   # logit loss (Table 3)
    feature_loss: Optional[Literal["l2", "l1", "smoothl1", "ce", "dist"]] = None
    # feature loss (official -feature_loss; Table 3): None → dist when faithful, else l2 (MSE)
    faithful: bool = False        # official code's KLDivLoss on probabilities (no T²) + unsquared torch.dist
    teacher_init: Literal["independent", "same"] = "independent"
    # independent: the teacher's init is drawn from its own seed (official code: different inits);
    # same: the teacher is built from the student's seed (paper §4.1 wording) — every
    # teacher–student method, spaced or not, applies the same policy


@dataclass
class SpacedConfig:
    """Spaced KD (paper Alg. 2 / Alg. 4, Eq. 5)."""
    interval: Optional[float] = None    # epochs; None → method default (1.5 online, 4.0 self)
    leftover: Literal["drop", "distil"] = "drop"      # official code drops the last partial interval
    teacher_bn: Literal["train", "eval"] = "train"    # teacher BN mode during replay (official: train)


@dataclass
class SelfKDConfig:
    """BYOT self distillation (paper Alg. 3; Zhang et al. 2019)."""
    alpha: float = 0.3             # soft cross-entropy weight per shallow exit; 0.7 on hard CE
    feature_weight: float = 0.03
    feature_exits: Literal["code", "all"] = "code"   # code: skip the exit next to the deepest
    loss: Literal["kl", "ce", "l1", "smoothl1", "mse", "mse_sum"] = "ce"   # BYOT: soft CE, no T²
    deep_forward: Literal["full", "backbone"] = "full"
    # spaced-self deep-path steps: full = every exit runs (exit BN statistics update; official
    # code), backbone = the deep path alone; either way only the deepest exit's CE trains


@dataclass
class TrainConfig:
    method: str = "baseline"
    arch: str = "resnet18"
    dataset: str = "cifar100"
    epochs: int = 80
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    data_root: Optional[str] = None
    download: bool = False
    num_workers: int = 0
    train_subset: Optional[int] = None   # use only the first N training samples (debugging, tests)
    test_subset: Optional[int] = None    # per-epoch test accuracy on the first N test samples only
    eval_batch_size: int = 512
    teacher_arch: Optional[str] = None   # None → same architecture as the student
    teacher_width: float = 1.0
    rotation: Optional[bool] = None      # RandomRotation(15); None → dataset/method default
    checkpoint_every: int = 0            # also checkpoint every N optimizer steps (0: epoch ends only)
    save_optimizer: bool = True          # optimizer state in the checkpoint (needed by --resume)
    amp: bool = False                    # autocast on CUDA
    preset: Optional[str] = None         # filled in: the preset file applied
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    spaced: SpacedConfig = field(default_factory=SpacedConfig)
    selfkd: SelfKDConfig = field(default_factory=SelfKDConfig)

    def validate(self) -> None:
        if self.epochs < 1:
            raise FlatkdError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.batch_size < 1:
            raise FlatkdError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.spaced.interval is not None and not self.spaced.interval >= 0:
            raise FlatkdError(f"interval must be a number of epochs ≥ 0, got {self.spaced.interval}")
        for key in ("train_subset", "test_subset"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise FlatkdError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.optim.lr <= 0:
            raise FlatkdError(f"optim.lr must be > 0, got {self.optim.lr}")
        if not 0 <= self.kd.alpha <= 1 or not 0 <= self.selfkd.alpha <= 1:
            raise FlatkdError("kd.alpha and selfkd.alpha must lie in [0, 1]")
        if self.kd.temperature <= 0:
            raise FlatkdError(f"kd.temperature must be > 0, got {self.kd.temperature}")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("flatkd.presets").iterdir()
                  if p.name.endswith(".yaml"))


def resolve(method: str, arch: str, dataset: str, *, config_file: str | None = None,
            overrides: dict | None = None, **cli) -> TrainConfig:
    """defaults → dataset preset → YAML file → CLI flags (non-None) → ``--set`` overrides."""
    cfg = TrainConfig(method=method, arch=arch, dataset=dataset)
    if dataset in preset_names():
        text = resources.files("flatkd.presets").joinpath(f"{dataset}.yaml").read_text()
        cfgmod.apply_overrides(cfg, cfgmod.flatten(yaml.safe_load(text) or {}))
        cfg.preset = f"{dataset}.yaml"
    if config_file:
        cfgmod.apply_file(cfg, config_file)
    flags = {k: v for k, v in cli.items() if v is not None}
    if "interval" in flags:
        flags["spaced.interval"] = flags.pop("interval")
    cfgmod.apply_overrides(cfg, flags)
    cfgmod.apply_overrides(cfg, overrides or {})
    cfg.method, cfg.arch, cfg.dataset = method, arch, dataset
    cfg.validate()
    return cfg

