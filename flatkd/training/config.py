"""Training configuration. Dataclass defaults are the paper's ResNet settings (§5.1):
SGD momentum 0.9, weight decay 5e-4, batch 128, 80 epochs, constant lr 0.01, T = 3, α = 0.3,
feature weight β = 0.03; spaced interval s = 1.5 epochs (online) / 4.0 (self).

A per-dataset preset (``flatkd/presets/<dataset>.yaml``) is applied on top of the defaults,
then the user's YAML file, then ``--set`` overrides (:func:`flatkd.training.resolve.resolve`);
the preset in force is recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..errors import FlatkdError
from .method_config import (ATConfig, BANConfig, CTKDConfig, DKDConfig, DLBConfig, DMLConfig,
                            LSKDConfig, PSKDConfig, SHAKEConfig, StableKDConfig, TAKDConfig,
                            TSBConfig)


FLOAT32_MAX = 3.4028234663852886e38     # the optimizers scale float32 tensors by lr

#: Training settings a measure-vs-generalization study varies as hyper-parameter types (Jiang et
#: al. 2020 §4: learning rate, batch size, weight decay, training length, training-set size;
#: and the teacher's width): every result records their resolved values
#: (``checkpoint.hyperparameters``) and the granulated τ treats each that varies as one axis.
STUDY_HYPERPARAMETERS = ("optim.lr", "batch_size", "optim.weight_decay", "epochs",
                         "train_fraction", "teacher_width")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (paper §5.1: SGD 0.9, wd 5e-4, constant lr 0.01).

    name: sgd or adamw.
    lr: peak learning rate, also the constant one (default 0.01).
    momentum: SGD momentum (default 0.9).
    weight_decay: L2 weight decay, SGD / decoupled for AdamW (default 5e-4).
    schedule: constant, cosine (from lr after warm-up down to min_lr at the last epoch) or
        triangular2 (StableKD's per-stage cycle: within every training stage the lr rises
        linearly from min_lr to the stage's peak over the first half of the stage and falls back
        to min_lr over the second; the peak halves at each new stage, lr·2^-c in stage c, as
        PyTorch's CyclicLR triangular2 with one cycle per stage). Multi-stage methods restart
        every schedule at each stage.
    warmup_epochs: linear warm-up length in epochs (default 0; constant and cosine schedules).
    min_lr: final learning rate of the cosine schedule and the floor of triangular2 (default 5e-6).
    """
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["constant", "cosine", "triangular2"] = "constant"
    warmup_epochs: float = 0.0
    min_lr: float = 5e-6


@dataclass
class KDConfig:
    """Response + feature distillation (paper Eq. 2; official online-KD code).

    temperature: softmax temperature T of the soft loss (default 3).
    alpha: weight α of the soft loss; (1 − α) weighs the cross-entropy (default 0.3).
    feature_weight: weight β of the feature loss between the projected student feature and the
        teacher's pooled feature (default 0.03).
    loss: logit loss (paper Table 3): kl (T²·KL), ce (soft cross-entropy), l1, smoothl1, mse
        (mean), mse_sum.
    feature_loss: feature loss (the official code's -feature_loss): l2 (MSE, mean), l1,
        smoothl1, ce (cross-entropy with the teacher feature as soft target), dist (unsquared
        norm over the batch, torch.dist: Table 1's default run and Table 3's "MSE (Sum)" row);
        unset: dist when faithful, else l2.
    faithful: the official code's soft loss (KLDivLoss on probabilities, no T²) and, unless
        feature_loss is set, its torch.dist feature loss.
    teacher_init: independent (default; the teacher's initial weights are drawn from seed + 1,
        the student's from seed — different inits as in the official code) or same (the teacher
        starts from the student's seed, paper §4.1). Every teacher–student method applies it.
    """
    temperature: float = 3.0
    alpha: float = 0.3
    feature_weight: float = 0.03
    loss: Literal["kl", "ce", "l1", "smoothl1", "mse", "mse_sum"] = "kl"
    feature_loss: Optional[Literal["l2", "l1", "smoothl1", "ce", "dist"]] = None
    faithful: bool = False
    teacher_init: Literal["independent", "same"] = "independent"


@dataclass
class SpacedConfig:
    """Spaced KD (paper Alg. 2 / Alg. 4, Eq. 5).

    interval: space interval s in epochs (floor(s × batches per epoch) steps); unset: the
        method's default (1.5 spaced-online, 4.0 spaced-self); 0 is the non-spaced method.
    leftover: drop (official code: the last partial interval is never distilled) or distil.
    teacher_bn: the frozen teacher's BatchNorm during replay: train (official: statistics keep
        updating) or eval.
    start_epoch: critical period (paper Fig. 3): spacing starts after this many epochs; before
        it the run is the non-spaced method (online / self KD). Default 0: spaced from the start.
    window_epochs: critical period: spacing lasts this many epochs from start_epoch (Fig. 3a:
        10), then the non-spaced method again; a partial interval at the window's end is
        dropped or distilled as leftover says; unset: until the end of training (Fig. 3b).
    """
    interval: Optional[float] = None
    leftover: Literal["drop", "distil"] = "drop"
    teacher_bn: Literal["train", "eval"] = "train"
    start_epoch: int = 0
    window_epochs: Optional[int] = None


@dataclass
class SelfKDConfig:
    """BYOT self distillation (paper Alg. 3; Zhang et al. 2019).

    alpha: soft-loss weight per shallow exit; (1 − alpha) on its cross-entropy (default 0.3).
    feature_weight: weight of the feature term of each shallow exit (default 0.03).
    feature_exits: code (the official BYOT code skips the exit next to the deepest) or all.
    loss: soft loss of the shallow exits (default ce, BYOT's soft cross-entropy without T²).
    deep_forward: spaced-self deep-path steps run every exit so the exits' BatchNorm statistics
        update (full, the official code) or the deep path alone (backbone); only the deepest
        exit's cross-entropy trains either way.
    """
    alpha: float = 0.3
    feature_weight: float = 0.03
    feature_exits: Literal["code", "all"] = "code"
    loss: Literal["kl", "ce", "l1", "smoothl1", "mse", "mse_sum"] = "ce"
    deep_forward: Literal["full", "backbone"] = "full"


@dataclass
class AugmentConfig:
    """Training augmentation (every random draw comes from the sample's seed: exact replay).

    policy: a named policy; unset: the dataset and method default (crop + flip; BYOT's
        AutoAugment + Cutout for self KD on CIFAR; RandomResizedCrop for ImageFolder data).
    rotation: RandomRotation(15) on top (official CIFAR online-KD pipeline); unset: on for
        baseline/online/spaced-online on CIFAR, off elsewhere.
    """
    policy: Optional[str] = None
    rotation: Optional[bool] = None


@dataclass
class VitConfig:
    """Vision transformers (DeiT-Tiny, PiT-Tiny through timm, trained from scratch).

    img_size: the transformer's input size: 32 (patch 4, PiT stride 2: 8×8 DeiT tokens; timm's
        224-px patch 16 would leave 2×2 tokens on a 32-px image) or 224 (patch 16, PiT stride 8;
        inputs are upsampled bilinearly inside the model, as in the paper).
    drop_path: stochastic-depth rate of the transformer blocks (default 0.1, the paper's recipe).
    """
    img_size: Literal[32, 224] = 32
    drop_path: float = 0.1


@dataclass
class LogConfig:
    """Training curves beyond metrics.csv (flatkd/training/tb_log.py lists the tags).

    tensorboard: write TensorBoard events under OUT/tb/ (per-update losses by role, learning
        rate, per-epoch test accuracies, replays; view with tensorboard --logdir OUT/tb); unset:
        on when the tensorboard package is installed (pip install 'flatkd[tensorboard]').
    wandb: also log the same curves to Weights & Biases (needs the wandb package; never on by
        default).
    """
    tensorboard: Optional[bool] = None
    wandb: bool = False


@dataclass
class MetricsConfig:
    """What metrics.csv records beyond each network's per-epoch test accuracy.

    bn_recalibrated: every epoch's row also gets each network's test accuracy with its
        BatchNorm statistics re-estimated for its current weights (``<network>_test_acc_recalibrated``,
        the procedure of flatkd eval's default bn=recalibrate over the un-augmented training
        split, on a copy: training is unchanged); default false: the last epoch's row only.
    """
    bn_recalibrated: bool = False


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's ResNet settings; a dataset preset, a YAML file
    and ``--set`` overrides are applied on top, in that order.

    method: training method (flatkd train --method).
    arch: student architecture.
    dataset: dataset name.
    epochs: training epochs (default 80).
    batch_size: mini-batch size (default 128).
    seed: seed of initialisation, data order and augmentation (default 0).
    device: auto, cpu or cuda.
    data_root: folder holding the dataset files.
    download: let torchvision download CIFAR when a network is available.
    num_workers: DataLoader worker processes (0: load in the main process).
    train_subset: train on the first N training samples only (debugging, tests).
    train_fraction: train on a seeded class-stratified fraction of the training split (0 < f ≤
        1; round(f·n_c) images of each class c, at least one, drawn with seed; data-efficiency
        experiments); unset: the whole split. train_subset, when set too, applies afterwards.
    test_subset: per-epoch test accuracy on the first N test samples only.
    eval_batch_size: batch size of the per-epoch test pass (default 512).
    teacher_arch: teacher architecture; unset: the student's.
    teacher_width: channel multiplier of every stage of a ResNet teacher (default 1; 2 gives
        "ResNet-18×2" of paper Table 9, the official code's -downsample_factor 2).
    teacher_ckpt: offline KD: a flatkd checkpoint whose network teacher_ckpt_model is the frozen
        teacher (its dataset and classes must match; teacher_arch / teacher_width, when set,
        too); unset: offline trains its teacher first.
    teacher_ckpt_model: which network of teacher_ckpt teaches: student (default; a baseline
        run's network) or teacher.
    checkpoint_every: also checkpoint every N steps within an epoch (0: at epoch ends only).
    save_optimizer: keep optimizer state in the checkpoint (needed by --resume).
    checkpoint_networks: all (default) or student: keep only the student's weights, a smaller
        archive that evaluates like any checkpoint but cannot be resumed (metrics.csv still
        holds every network's curves).
    amp: mixed precision for training and the per-epoch test pass: off, bf16 (autocast; also
        runs on CPU) or fp16 (autocast with a gradient scaler; CUDA).
    channels_last: keep convnets and their inputs in channels-last memory format (faster
        convolutions on recent GPUs).
    compile: torch.compile each network's feature extractor with this backend (e.g. inductor;
        eager for debugging); unset: no compilation.
    sync_bn: SyncBatchNorm across the ranks of a torchrun launch (CUDA only; default: plain
        BatchNorm with rank 0's statistics broadcast after every step).
    preset: filled in by flatkd: the preset files that were applied (the dataset's, then the
        architecture's recipe, e.g. recipes/vit.yaml).
    scaled: filled in by flatkd: schedule lengths of the recipe rescaled to a run of another
        length (the warm-up keeps its fraction of the run unless set with --set).
    log: training curves for TensorBoard / W&B (log.tensorboard, log.wandb).
    metrics: extra metrics.csv columns (metrics.bn_recalibrated).
    """
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
    train_subset: Optional[int] = None
    train_fraction: Optional[float] = None
    test_subset: Optional[int] = None
    eval_batch_size: int = 512
    teacher_arch: Optional[str] = None
    teacher_width: float = 1.0
    teacher_ckpt: Optional[str] = None
    teacher_ckpt_model: Literal["student", "teacher"] = "student"
    checkpoint_every: int = 0
    save_optimizer: bool = True
    checkpoint_networks: Literal["all", "student"] = "all"
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: Optional[str] = None
    sync_bn: bool = False
    preset: Optional[str] = None
    scaled: Optional[str] = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    spaced: SpacedConfig = field(default_factory=SpacedConfig)
    selfkd: SelfKDConfig = field(default_factory=SelfKDConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lskd: LSKDConfig = field(default_factory=LSKDConfig)
    ctkd: CTKDConfig = field(default_factory=CTKDConfig)
    tsb: TSBConfig = field(default_factory=TSBConfig)
    dml: DMLConfig = field(default_factory=DMLConfig)
    shake: SHAKEConfig = field(default_factory=SHAKEConfig)
    ban: BANConfig = field(default_factory=BANConfig)
    takd: TAKDConfig = field(default_factory=TAKDConfig)
    dlb: DLBConfig = field(default_factory=DLBConfig)
    pskd: PSKDConfig = field(default_factory=PSKDConfig)
    vit: VitConfig = field(default_factory=VitConfig)
    stablekd: StableKDConfig = field(default_factory=StableKDConfig)
    dkd: DKDConfig = field(default_factory=DKDConfig)
    at: ATConfig = field(default_factory=ATConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def validate(self) -> None:
        """Refuse values no run can use, naming the key and the valid range."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise FlatkdError(message)

        def finite(x) -> bool:
            return isinstance(x, (int, float)) and math.isfinite(x)

        need(self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}")
        need(self.eval_batch_size >= 1, f"eval_batch_size must be ≥ 1, got {self.eval_batch_size}")
        need(self.spaced.interval is None or (finite(self.spaced.interval) and self.spaced.interval >= 0),
             f"interval must be a finite number of epochs ≥ 0, got {self.spaced.interval}")
        for key in ("train_subset", "test_subset"):
            v = getattr(self, key)
            need(v is None or v >= 1, f"{key} must be ≥ 1, got {v}")
        need(self.num_workers >= 0, f"num_workers must be ≥ 0, got {self.num_workers}")
        need(self.checkpoint_every >= 0,
             f"checkpoint_every must be ≥ 0 steps (0: at epoch ends only), got {self.checkpoint_every}")
        need(finite(self.teacher_width) and self.teacher_width > 0,
             f"teacher_width must be a finite number > 0, got {self.teacher_width}")
        need(self.spaced.start_epoch >= 0 and self.spaced.start_epoch < self.epochs,
             f"spaced.start_epoch must lie in [0, epochs - 1], got {self.spaced.start_epoch}")
        need(self.spaced.window_epochs is None or self.spaced.window_epochs >= 1,
             f"spaced.window_epochs must be ≥ 1 epoch (unset: until the end), "
             f"got {self.spaced.window_epochs}")
        need(finite(self.vit.drop_path) and 0 <= self.vit.drop_path < 1,
             f"vit.drop_path must lie in [0, 1), got {self.vit.drop_path}")
        o = self.optim
        need(finite(o.lr) and o.lr > 0, f"optim.lr must be a finite number > 0, got {o.lr}")
        need(o.lr <= FLOAT32_MAX, f"optim.lr={o.lr} overflows float32 (largest {FLOAT32_MAX:.3g})")
        need(finite(o.min_lr) and 0 <= o.min_lr <= o.lr,
             f"optim.min_lr must lie in [0, optim.lr], got {o.min_lr}")
        need(finite(o.warmup_epochs) and 0 <= o.warmup_epochs <= self.epochs,
             f"optim.warmup_epochs must lie in [0, epochs], got {o.warmup_epochs}")
        for key in ("momentum", "weight_decay"):
            v = getattr(o, key)
            need(finite(v) and v >= 0, f"optim.{key} must be a finite number ≥ 0, got {v}")
        need(0 <= self.kd.alpha <= 1 and 0 <= self.selfkd.alpha <= 1,
             "kd.alpha and selfkd.alpha must lie in [0, 1]")
        need(finite(self.pskd.alpha_T) and 0 <= self.pskd.alpha_T <= 1,
             f"pskd.alpha_T must lie in [0, 1], got {self.pskd.alpha_T}")
        need(finite(self.kd.temperature) and self.kd.temperature > 0,
             f"kd.temperature must be a finite number > 0, got {self.kd.temperature}")
        need(self.train_fraction is None or (finite(self.train_fraction)
                                             and 0 < self.train_fraction <= 1),
             f"train_fraction must lie in (0, 1], got {self.train_fraction}")
        sk = self.stablekd
        need(sk.blocks is None or sk.blocks >= 1,
             f"stablekd.blocks must be ≥ 1 (unset: the architecture's own count), got {sk.blocks}")
        need(sk.recompositions >= 0, f"stablekd.recompositions must be ≥ 0, got {sk.recompositions}")
        need(finite(sk.kl_weight) and sk.kl_weight >= 0,
             f"stablekd.kl_weight must be a finite number ≥ 0, got {sk.kl_weight}")
        need(finite(sk.temperature) and sk.temperature > 0,
             f"stablekd.temperature must be a finite number > 0, got {sk.temperature}")
        need(finite(self.dkd.temperature) and self.dkd.temperature > 0,
             f"dkd.temperature must be a finite number > 0, got {self.dkd.temperature}")
        for key, v in (("dkd.alpha", self.dkd.alpha), ("dkd.beta", self.dkd.beta),
                       ("dkd.warmup_epochs", self.dkd.warmup_epochs), ("at.beta", self.at.beta)):
            need(finite(v) and v >= 0, f"{key} must be a finite number ≥ 0, got {v}")
        for key, v in (("kd.feature_weight", self.kd.feature_weight),
                       ("selfkd.feature_weight", self.selfkd.feature_weight)):
            need(finite(v) and v >= 0, f"{key} must be a finite number ≥ 0, got {v}")
