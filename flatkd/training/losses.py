"""Distillation losses as pure functions of logits / features.

Notation: s, t = student / teacher logits [N, C]; T = temperature; p^T = softmax(·/T).
Paper Eq. 2: L = (1 − α)·CE(s, y) + α·l_KD(s, t) (+ β·feature term in the official online code).
Table 3 variants compare softened probabilities p_s^T and p_t^T.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry

SOFT_LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = Registry("kd loss")


@SOFT_LOSSES.register("kl")
def kd_kl(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Hinton et al. 2015: T² · KL(p_t^T ‖ p_s^T), averaged over the batch."""
    return F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean",
                    log_target=True) * T * T


@SOFT_LOSSES.register("ce")
def kd_soft_ce(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Soft cross-entropy −Σ_c p_t^T log p_s^T, batch mean, no T² (BYOT's ``CrossEntropy``)."""
    return -(F.softmax(t / T, 1) * F.log_softmax(s / T, 1)).sum(1).mean()


@SOFT_LOSSES.register("l1")
def kd_l1(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Mean |p_s^T − p_t^T| over all elements (paper Table 3, L1)."""
    return F.l1_loss(F.softmax(s / T, 1), F.softmax(t / T, 1))


@SOFT_LOSSES.register("smoothl1")
def kd_smooth_l1(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Mean Huber(β=1) of p_s^T − p_t^T (paper Table 3, Smooth L1)."""
    return F.smooth_l1_loss(F.softmax(s / T, 1), F.softmax(t / T, 1))


@SOFT_LOSSES.register("mse")
def kd_mse(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Mean (p_s^T − p_t^T)² over all elements (paper Table 3, MSE reduction=mean)."""
    return F.mse_loss(F.softmax(s / T, 1), F.softmax(t / T, 1))


@SOFT_LOSSES.register("mse_sum")
def kd_mse_sum(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Σ (p_s^T − p_t^T)² over all elements (paper Table 3, MSE reduction=sum)."""
    return F.mse_loss(F.softmax(s / T, 1), F.softmax(t / T, 1), reduction="sum")


def kd_faithful(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """The official code's soft loss: ``KLDivLoss`` fed *probabilities* p_s^T as its input
    (which it treats as log-probabilities) against p_t^T, batch mean, no T² factor."""
    return F.kl_div(F.softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")


def soft_loss(name: str, faithful: bool) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """The registered loss ``name``, or the official code's variant when ``faithful``."""
    return kd_faithful if faithful else SOFT_LOSSES.get(name)


FEATURE_LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("feature loss")


@FEATURE_LOSSES.register("l2")
def feature_l2(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of (f_s − f_t)² for [N, D] features (official ``L2``: ``MSELoss``)."""
    return F.mse_loss(f_s, f_t)


@FEATURE_LOSSES.register("l1")
def feature_l1(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean |f_s − f_t| over all elements (official ``L1``: ``L1Loss``)."""
    return F.l1_loss(f_s, f_t)


@FEATURE_LOSSES.register("smoothl1")
def feature_smooth_l1(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean Huber(β=1) of f_s − f_t (official ``SmoothL1``: ``SmoothL1Loss``)."""
    return F.smooth_l1_loss(f_s, f_t)


@FEATURE_LOSSES.register("ce")
def feature_ce(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Official ``CE``: ``CrossEntropyLoss()(f_s, f_t)`` with the teacher feature as (unnormalised)
    soft target: −(1/N) Σ_n Σ_d f_t[n, d] · log_softmax(f_s[n])[d]."""
    return F.cross_entropy(f_s, f_t)


@FEATURE_LOSSES.register("dist")
def feature_dist(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Official default ``dist``: ``torch.dist(f_s, f_t)``, the unsquared Frobenius norm over the
    whole batch (the Table 3 "MSE (Sum)" row and Table 1's default run)."""
    return torch.dist(f_s, f_t)


def feature_loss_name(name: str | None, faithful: bool) -> str:
    """The feature loss in force: ``name``, or ``dist`` when ``faithful`` else ``l2``."""
    return name if name is not None else ("dist" if faithful else "l2")


def feature_loss(name: str | None, faithful: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The registered feature loss (see :func:`feature_loss_name`) for [N, D] features."""
    return FEATURE_LOSSES.get(feature_loss_name(name, faithful))


def distillation_objective(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *, alpha: float,
                           T: float, soft: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper Eq. 2: (1 − α)·CE(s, y) + α·soft(s, t, T). Returns (total, ce, kd).

    A soft loss that carries ``weights = (w_ce, w_soft)`` (a loss add-on run with its own
    paper's weights, e.g. LSKD's 0.1 / 9) replaces (1 − α, α); ``weights = None``: Eq. 2.
    """
    ce = F.cross_entropy(s, y)
    kd = soft(s, t.detach(), T)
    w_ce, w_soft = getattr(soft, "weights", None) or (1 - alpha, alpha)
    return w_ce * ce + w_soft * kd, ce, kd
