"""Config sections of the methods beyond plain online / self KD: the loss add-ons (LSKD, CTKD),
the paper's Table 4 / App. A.3 methods (TSB, DML, SHAKE, BAN, TAKD, DLB, PS-KD) and StableKD with
its baselines (DKD, AT). Each dataclass is one ``TrainConfig`` section; defaults are each
method's paper or official-code values, documented per key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class LSKDConfig:
    """Logit standardisation (LSKD, Sun et al. 2024; method name suffix +lskd): teacher and
    student logits are z-scored per sample before the soft loss.

    temperature: base temperature τ applied after z-scoring (default 2, LSKD's CIFAR setting).
    ddof: degrees of freedom of the per-sample std: 1 (unbiased, LSKD's code) or 0 (population).
    ce_weight: weight of the cross-entropy; unset: the host method's (1 − kd.alpha). LSKD's own
        CIFAR setting: 0.1.
    kd_weight: weight of the standardised soft loss; unset: the host's kd.alpha. LSKD's own: 9.
    """
    temperature: float = 2.0
    ddof: Literal[0, 1] = 1
    ce_weight: Optional[float] = None
    kd_weight: Optional[float] = None


@dataclass
class CTKDConfig:
    """Curriculum temperature (CTKD, Li et al. 2023; method name suffix +ctkd): one learnable
    global temperature τ = t_min + t_range·sigmoid(GRL(θ)), trained with the student's optimizer
    through a gradient-reversal layer whose strength λ rises by a cosine.

    init: initial θ (default 1.0: τ = 15.62).
    t_min: lower end of the temperature range (default 1).
    t_range: width of the temperature range (default 20: τ ∈ (1, 21)).
    lambda_min: reversal strength λ at epoch 0 (default 0).
    lambda_max: λ reached at the end of the ramp and kept (default 1).
    lambda_fraction: length of the cosine ramp as a fraction of the run's epochs (default 1/24:
        CTKD's 10 of 240 epochs); used unless lambda_epochs is set. The resolved length is
        recorded in the run's options (ctkd_ramp_epochs); on λ's per-epoch clock a ramp
        shorter than one epoch reaches lambda_max at epoch 1.
    lambda_epochs: the ramp's length in epochs, overriding lambda_fraction (the paper presets
        set CTKD's 10); unset: lambda_fraction × epochs.
    clock: which epoch indexes λ: batch (the epoch of the batch being learned — in spaced KD
        the student's own progress) or stream (the epoch the data stream is in when the update
        runs — in spaced KD up to one interval ahead of the student).
    ce_weight: weight of the cross-entropy; unset: the host's (1 − kd.alpha). CTKD's own: 0.1.
    kd_weight: weight of the soft loss; unset: the host's kd.alpha. CTKD's own: 0.9.
    """
    init: float = 1.0
    t_min: float = 1.0
    t_range: float = 20.0
    lambda_min: float = 0.0
    lambda_max: float = 1.0
    lambda_fraction: float = 10 / 240
    lambda_epochs: Optional[float] = None
    clock: Literal["batch", "stream"] = "batch"
    ce_weight: Optional[float] = None
    kd_weight: Optional[float] = None


@dataclass
class TSBConfig:
    """Temporal-spatial boosting (TSB, Li et al. 2022; tsb / spaced-tsb). The original formulas
    are not public; flatkd's reading (see the method's help): a peer group, per-sample
    exponential averages of each peer's softened predictions (temporal accumulator), averaged
    over the peers (spatial integrator) into the target a separate student distils from.

    peers: peer networks K (default 2).
    beta: decay β of the temporal accumulator A ← β·A + (1 − β)·p, read bias-corrected
        A / (1 − β^n) (default 0.6).
    integrate: each peer's own target averages all peers (all, default) or the other peers only
        (others); the student's target always averages all peers.
    """
    peers: int = 2
    beta: float = 0.6
    integrate: Literal["all", "others"] = "all"


@dataclass
class DMLConfig:
    """Deep mutual learning (DML, Zhang et al. 2018; dml / spaced-dml).

    peers: networks K trained together (default 2; spaced-dml needs 2).
    update: simultaneous (official code: all predictions from one forward pass, every peer
        steps on them) or sequential (paper's algorithm: peers step in turn, each on the others'
        predictions recomputed after the previous peer's step).
    ahead_loss: spaced-dml: the peer that runs ahead trains on the DML loss against the lagging
        peer (dml, default) or on cross-entropy only (ce).
    lagging_bn: spaced-dml: the lagging peer's predictions for the peer ahead use batch
        statistics without updating its running statistics (batch, default) or its running
        statistics (eval).
    """
    peers: int = 2
    update: Literal["simultaneous", "sequential"] = "simultaneous"
    ahead_loss: Literal["dml", "ce"] = "dml"
    lagging_bn: Literal["batch", "eval"] = "batch"


@dataclass
class SHAKEConfig:
    """Shadow knowledge distillation (SHAKE, Li & Jin 2022; shake / spaced-shake). The frozen
    teacher is teacher_ckpt, or (unset) a teacher first trained with cross-entropy for
    ``epochs`` epochs (stage 1 of 2).

    temperature: T of every soft term (default 4).
    ce_weight: γ, weight of the student's cross-entropy (default 1).
    kd_weight: α, weight of the student's soft loss toward the frozen teacher (default 0).
    shadow_weight: β, weight of the shadow terms (default 1).
    logit_norm: replace every logit vector z by π·(z − mean)/sqrt(var + 1e-7) before every
        loss, as SHAKE's code does (default true).
    """
    temperature: float = 4.0
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    shadow_weight: float = 1.0
    logit_norm: bool = True


@dataclass
class BANConfig:
    """Born-again networks (BAN, Furlanello et al. 2018; ban / spaced-ban).

    generations: born-again generations G after generation 0 (default 1); ban trains G + 1
        networks one after another (G + 1 stages of ``epochs`` epochs).
    label_loss: each generation's loss includes the cross-entropy to the labels (true,
        default: the paper's "dual goals" of predicting the labels and matching the teacher)
        or is the teacher term alone (false).
    temperature: softmax temperature of the teacher term (default 1).
    """
    generations: int = 1
    label_loss: bool = True
    temperature: float = 1.0


@dataclass
class TAKDConfig:
    """Teacher-assistant KD (TAKD, Mirzadeh et al. 2020; takd / spaced-takd): teacher
    (teacher_arch) → assistant → student, each distilling (1 − λ)·CE + λ·T²·KL from the previous
    one (λ = kd.alpha, T = kd.temperature).

    assistant_arch: the assistant's architecture; unset: the student's.
    assistant_width: channel multiplier of the assistant (default 1).
    reduction: batchmean (proper KL) or official (TAKD's code: KLDivLoss's default mean over
        batch × classes, i.e. batchmean / classes).
    """
    assistant_arch: Optional[str] = None
    assistant_width: float = 1.0
    reduction: Literal["batchmean", "official"] = "batchmean"


@dataclass
class DLBConfig:
    """Self-distillation from the last mini-batch (DLB, Shen et al. 2022; dlb, online-dlb,
    spaced-dlb).

    temperature: T of the consistency term (default 3; DLB's script has no default, the value
        third-party runs of it use on CIFAR-100).
    alpha: weight α of the consistency term (default 1; same source).
    """
    temperature: float = 3.0
    alpha: float = 1.0


@dataclass
class PSKDConfig:
    """Progressive self-knowledge distillation (PS-KD, Kim et al. 2021; pskd, online-pskd,
    spaced-pskd).

    alpha_T: final weight α_T of the previous-epoch predictions in the target; epoch e
        (0-based) uses α_e = α_T·(e + 1)/epochs (default 0.8).
    """
    alpha_T: float = 0.8


@dataclass
class StableKDConfig:
    """StableKD (decomposition and recomposition; stablekd and its Table 4 ablation kd-mse).
    The teacher is teacher_ckpt (frozen, eval mode). Defaults are the paper's CIFAR-100
    settings (k = 5 for ResNet-18/34, n = 2, stage epochs e/3, e/3, rest, softmax T = 1).

    blocks: k, the number of blocks teacher and student are split into; unset: the
        architecture's own count (a ResNet: one block per stage, the stem joining the first,
        plus the classifier: ResNet-18/34/50/101: 5, ResNet-8: 4). Smaller k spreads the stages
        evenly over the first k − 1 blocks; k = 1 is vanilla KD.
    recompositions: n, how many times neighbouring groups are merged pairwise (groups (1, 2),
        (3, 4), …); the run has n + 1 stages (default 2). Once a single group remains, further
        stages stay vanilla KD.
    stage_epochs: epochs of each of the n + 1 stages (must sum to epochs); unset: the paper's
        split, floor(epochs / (n + 1)) for each stage but the last, the rest for the last.
    kl_weight: λ, weight of KL(teacher ‖ student) next to the cross-entropy in the last group's
        loss CE + λ·KL (Eq. 8). The paper gives no value; default 1.0 (equal weights: vanilla
        KD of Eq. 3 with α = λ / (1 + λ) = 0.5, scaled by 1 + λ).
    temperature: softmax temperature of the KL term (default 1, the paper's value everywhere).
    """
    blocks: Optional[int] = None
    recompositions: int = 2
    stage_epochs: Optional[list[int]] = None
    kl_weight: float = 1.0
    temperature: float = 1.0


@dataclass
class DKDConfig:
    """Decoupled KD from a frozen teacher (dkd; Zhao et al. 2022, a StableKD baseline):
    CE + min(epoch / warmup_epochs, 1)·(alpha·TCKD + beta·NCKD). Defaults: DKD's CIFAR settings.

    alpha: weight of the target-class term TCKD (default 1).
    beta: weight of the non-target-class term NCKD (default 8).
    temperature: softmax temperature T of both terms (default 4).
    warmup_epochs: epochs over which the DKD weight rises linearly to 1 (default 20; 0: none).
    """
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup_epochs: float = 20.0


@dataclass
class ATConfig:
    """Attention transfer from a frozen teacher (at; Zagoruyko & Komodakis 2017, a StableKD
    baseline): CE + beta/2 · Σ over the stage outputs of mean((a_s − a_t)²).

    beta: weight β of the attention terms (default 1000, AT's code).
    """
    beta: float = 1000.0
