"""Shadow knowledge distillation (SHAKE, Li & Jin, NeurIPS 2022), paper App. A.3, with and
without spacing.

A frozen, pretrained teacher (``teacher_ckpt``; unset: the teacher first trains with
cross-entropy for ``epochs`` epochs — stage 1 of 2, kept as ``stage-1.pt``) carries a trainable
*shadow head*: three conv-BN-ReLU fusions over the teacher's last three stage outputs, pooled
and fed through the teacher's own classifier (weights detached). The shadow head is a proxy
teacher that learns online from the student while staying anchored to the teacher.

Pure loss (logits [N, C], labels [N]) — :func:`shake_losses`: with every logit vector z
replaced by π·(z − mean)/sqrt(var + 1e-7) (population variance, ``shake.logit_norm``),
student part  γ·CE(z_s) + α·KD_T(z_s ← z_t) + β·KD_T(z_s ← z_h),
shadow part   β·[KD_T(z_h ← z_s) + CE(z_h) + MSE(z_h, z_t)],
KD_T(a ← b) = T²·KL(softmax(b/T) ‖ softmax(a/T)) (batch mean, b constant); the two parts have
disjoint gradients, so one joint step (SHAKE's code) equals one step of each. Both shadow ↔
student terms detach their target as SHAKE's official training loop does
(``criterion_div(pred_feat_s, logit_s.detach()) + criterion_div(logit_s, pred_feat_s.detach())``
in ``shake/helper/loops.py`` of lliai/SHAKE), although the RepDistiller ``DistillKL`` it calls
does not detach by itself.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FlatkdError
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import kd_kl
from .base import Method, Networks, Update
from .kdutil import bn_frozen, make_net
from .online import teacher_seed
from .registry import METHODS
from .seeding import seeded
from .spacing import SpacedSchedule

SHADOW_SEED_OFFSET = 3
PI = 3.1415                    # SHAKE's constant


def logit_norm(z: torch.Tensor, scale: float = PI, eps: float = 1e-7) -> torch.Tensor:
    """SHAKE's logit normalisation π·(z − mean)/sqrt(var + eps) per row (population variance,
    no affine): π·LN([1, 2, 3]) = [−3.847536, 0, 3.847536]."""
    mean = z.mean(1, keepdim=True)
    var = z.var(1, keepdim=True, correction=0)
    return scale * (z - mean) / torch.sqrt(var + eps)


def shake_losses(z_s, z_t, z_h, y, *, T: float, gamma: float, alpha: float, beta: float,
                 norm: bool = True) -> dict[str, torch.Tensor]:
    """The SHAKE terms and the two parts (``student``, ``shadow``) of the objective above."""
    if norm:
        z_s, z_t, z_h = logit_norm(z_s), logit_norm(z_t), logit_norm(z_h)
    z_t = z_t.detach()
    terms = {"ce_student": F.cross_entropy(z_s, y), "kd_teacher": kd_kl(z_s, z_t, T),
             "kd_from_shadow": kd_kl(z_s, z_h.detach(), T), "kd_to_shadow": kd_kl(z_h, z_s.detach(), T),
             "ce_shadow": F.cross_entropy(z_h, y), "mse_shadow": F.mse_loss(z_h, z_t)}
    terms["student"] = gamma * terms["ce_student"] + alpha * terms["kd_teacher"] \
        + beta * terms["kd_from_shadow"]
    terms["shadow"] = beta * (terms["kd_to_shadow"] + terms["ce_shadow"] + terms["mse_shadow"])
    return terms


def _cbr(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ShadowHead(nn.Module):
    """SHAKE's shadow head on the teacher's last three stage outputs f1, f2, f3 (channels c1,
    c2, c3, each stage halving the resolution): h = CBR3(f1, /2) + CBR1(f2); h = CBR3(h, /2) +
    CBR1(f3); h = CBR3(h); global average pool → the teacher's classifier (weights detached)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        c1, c2, c3 = channels[-3:]
        self.down1, self.lat2 = _cbr(c1, c2, 3, 2), _cbr(c2, c2, 1)
        self.down2, self.lat3 = _cbr(c2, c3, 3, 2), _cbr(c3, c3, 1)
        self.fuse = _cbr(c3, c3, 3)

    def forward(self, stages: list[torch.Tensor], fc: nn.Linear) -> torch.Tensor:
        f1, f2, f3 = stages[-3:]
        h = self.down1(f1) + self.lat2(f2)
        h = self.down2(h) + self.lat3(f3)
        h = torch.flatten(F.adaptive_avg_pool2d(self.fuse(h), 1), 1)
        return F.linear(h, fc.weight.detach(), fc.bias.detach())


def _teacher(cfg: TrainConfig, num_classes: int, mean, std):
    if cfg.teacher_ckpt is not None:
        from .offline import load_teacher
        net, kw = load_teacher(cfg, num_classes)
        net.requires_grad_(False)
        return net, kw
    return make_net(cfg, teacher_seed(cfg), num_classes, mean, std, cfg.teacher_arch, cfg.teacher_width)


@METHODS.register("shake")
class SHAKE(Method):
    """SHAKE: the student and the shadow head step together on every batch against the frozen
    teacher (``shake.*``: T = 4, γ = 1, α = 0, β = 1, π-normalised logits, SHAKE's CIFAR
    script). Without ``teacher_ckpt`` the run has two stages: the teacher's CE training, then
    SHAKE. The frozen teacher runs in eval mode under no_grad."""

    official_rotation = True
    takes_teacher_ckpt = True

    @classmethod
    def stages(cls, cfg: TrainConfig) -> int:
        return 1 if cfg.teacher_ckpt is not None else 2

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        teacher, t_kw = _teacher(cfg, num_classes, mean, std)
        if not hasattr(teacher, "forward_stages") or len(getattr(teacher, "stage_channels", [])) < 3:
            raise FlatkdError(f"shake needs a ResNet teacher with ≥ 3 stages (its shadow head "
                              f"fuses the last three); got {t_kw.get('arch')}")
        student, s_kw = make_net(cfg, cfg.seed, num_classes, mean, std)
        shadow = seeded(cfg.seed + SHADOW_SEED_OFFSET, lambda: ShadowHead(teacher.stage_channels))
        optimizers = {"shadow": ["shadow"], "student": ["student"]}
        if cfg.teacher_ckpt is None:
            optimizers = {"teacher": ["teacher"], **optimizers}
        s = cfg.shake
        if not (s.temperature > 0 and all(math.isfinite(v) and v >= 0
                                          for v in (s.ce_weight, s.kd_weight, s.shadow_weight))):
            raise FlatkdError("shake.temperature must be > 0 and its weights finite numbers ≥ 0")
        return Networks({"teacher": teacher, "shadow": shadow, "student": student}, optimizers,
                        {"student": s_kw, "teacher": t_kw})

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.pretrain = cfg.teacher_ckpt is None
        self._spec: BatchSpec | None = None
        self._terms: dict = {}

    def distilling(self, spec: BatchSpec) -> bool:
        """False while the teacher pretrains (stage 1 of 2 without teacher_ckpt)."""
        return not self.pretrain or self.stage_of(spec) >= 1

    def schedule(self, spec: BatchSpec) -> list[Update]:
        if not self.distilling(spec):
            return [Update("teacher", "teacher", spec)]
        return [Update("shadow", "shadow", spec), Update("student", "student", spec)]

    def teacher_outputs(self, x, shadow_bn: str | None = None):
        """Frozen teacher (eval, no grad): logits and shadow logits; the shadow head runs with
        gradient (``shadow_bn`` None) or frozen (no grad, BatchNorm mode ``shadow_bn``)."""
        teacher = self.nets.modules["teacher"]
        was = teacher.training
        teacher.eval()
        with torch.no_grad():
            stages = teacher.forward_stages(x)
            z_t = teacher.fc(teacher.pool_features(stages[-1]))
        teacher.train(was)
        shadow = self.nets.modules["shadow"]
        if shadow_bn is None:
            return z_t, shadow(stages, teacher.fc)
        was = shadow.training
        shadow.train(shadow_bn in ("train", "batch"))
        with torch.no_grad(), (bn_frozen(shadow) if shadow_bn == "batch" else nullcontext()):
            z_h = shadow(stages, teacher.fc)
        shadow.train(was)
        return z_t, z_h

    def terms(self, z_s, z_t, z_h, y) -> dict:
        s = self.cfg.shake
        return shake_losses(z_s, z_t, z_h, y, T=s.temperature, gamma=s.ce_weight,
                            alpha=s.kd_weight, beta=s.shadow_weight, norm=s.logit_norm)

    def loss(self, role, x, y):
        if role == "teacher":
            ce = F.cross_entropy(self.nets.modules["teacher"](x), y)
            return ce, {"teacher_loss": ce.item()}
        spec = self.update.spec
        if self._spec is not spec:                  # one forward of each network per batch
            z_t, z_h = self.teacher_outputs(x)
            self._terms = self.terms(self.nets.modules["student"](x), z_t, z_h, y)
            self._spec = spec
        t = self._terms
        if role == "shadow":
            return t["shadow"], {"shadow_loss": t["shadow"].item(), "shadow_ce": t["ce_shadow"].item(),
                                 "shadow_mse": t["mse_shadow"].item()}
        return t["student"], {"loss": t["student"].item(), "ce": t["ce_student"].item(),
                              "kd_shadow": t["kd_from_shadow"].item()}

    def options(self) -> dict:
        s = self.cfg.shake
        return {"temperature": s.temperature, "gamma": s.ce_weight, "alpha": s.kd_weight,
                "beta": s.shadow_weight, "logit_norm": s.logit_norm,
                "teacher": str(self.cfg.teacher_ckpt) if self.cfg.teacher_ckpt
                else "trained first (stage 1 of 2)"}


@METHODS.register("spaced-shake")
class SpacedSHAKE(SpacedSchedule, SHAKE):
    """Spaced SHAKE (flatkd's reading of A.3): the shadow head is the online teacher. It
    trains ``s`` steps ahead on its part of the objective, with the *lagging* student's
    predictions (batch statistics, the student's running statistics untouched); then, frozen,
    it teaches the student, which replays exactly those batches on its part (γ·CE + α·KD from
    the teacher + β·KD from the frozen shadow head; BatchNorm of the frozen head:
    ``spaced.teacher_bn``). The teacher's pretraining stage, if any, is not spaced. s = 0 is
    shake."""

    default_interval = 1.5
    advance = ("shadow", "shadow_ahead")
    replay = ("student", "replay")

    def spacing_on(self, spec: BatchSpec) -> bool:
        return self.distilling(spec) and super().spacing_on(spec)

    def loss(self, role, x, y):
        if role == "shadow_ahead":
            z_t, z_h = self.teacher_outputs(x)
            student = self.nets.modules["student"]
            was = student.training
            student.train()
            with torch.no_grad(), bn_frozen(student):
                z_s = student(x)
            student.train(was)
            t = self.terms(z_s, z_t, z_h, y)
            return t["shadow"], {"shadow_loss": t["shadow"].item()}
        if role == "replay":
            z_t, z_h = self.teacher_outputs(x, self.cfg.spaced.teacher_bn)
            t = self.terms(self.nets.modules["student"](x), z_t, z_h, y)
            return t["student"], {"loss": t["student"].item(), "ce": t["ce_student"].item(),
                                  "kd_shadow": t["kd_from_shadow"].item()}
        return super().loss(role, x, y)

    def options(self) -> dict:
        return {**super().options(), "teacher_bn_during_replay": self.cfg.spaced.teacher_bn}
