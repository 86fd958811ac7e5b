"""Students of a frozen pretrained teacher (``teacher_ckpt``, eval mode, no gradient): the common
build, and the StableKD paper's logit / attention baselines DKD and AT.

* :func:`dkd_loss` — decoupled KD (Zhao et al., CVPR 2022): α·TCKD + β·NCKD, with
  TCKD = T²·KL(b_t ‖ b_s) over the binary (target, rest) probabilities and
  NCKD = T²·KL(p̂_t ‖ p̂_s) over the non-target classes; the method's loss is
  CE + min(epoch / warmup, 1)·(α·TCKD + β·NCKD) (DKD's CIFAR settings α = 1, β = 8, T = 4,
  20 warm-up epochs).
* :func:`at_loss` — attention transfer (Zagoruyko & Komodakis, ICLR 2017): per stage,
  a(F) = normalize(mean_c F², flattened); loss CE + β/2·Σ_stages mean((a_s − a_t)²),
  β = 1000 (AT's code). Channel means make it width-agnostic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import models
from ...errors import FlatkdError
from ..batches import BatchSpec
from ..config import TrainConfig
from .base import Method, Networks, Update
from .offline import load_teacher
from .online import _arch_kwargs
from .registry import METHODS
from .seeding import seeded


def dkd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, alpha: float, beta: float,
             T: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), batch means, so that DKD = α·TCKD + β·NCKD (Zhao et al. 2022, Eq. 7);
    logits s, t [N, C], labels y [N]. The non-target softmax masks the target logit by −1000/T
    as DKD's code does."""
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    t = t.detach()
    p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1).clamp_min(1e-12)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * T * T
    nckd = F.kl_div(F.log_softmax(s / T - 1000.0 * gt, 1), F.softmax(t / T - 1000.0 * gt, 1),
                    reduction="batchmean") * T * T
    return alpha * tckd, beta * nckd


def attention_map(f: torch.Tensor) -> torch.Tensor:
    """a(F) = normalize(mean over channels of F², flattened): [N, C, H, W] → [N, H·W]."""
    return F.normalize(f.pow(2).mean(1).flatten(1), dim=1)


def at_loss(fs: list[torch.Tensor], ft: list[torch.Tensor], beta: float) -> torch.Tensor:
    """β/2 · Σ_stages mean((a(F_s) − a(F_t))²) (AT's ``at_loss``, summed over the stages)."""
    return beta / 2 * sum((attention_map(a) - attention_map(b.detach())).pow(2).mean()
                          for a, b in zip(fs, ft))


class FrozenTeacher(Method):
    """A student (built from ``seed``) and the frozen teacher of ``teacher_ckpt``; only the
    student (and the ``extra`` modules a subclass adds) has an optimizer."""

    takes_teacher_ckpt = True

    @classmethod
    def extra(cls, cfg: TrainConfig, student, teacher) -> dict:
        """Training-only modules trained with the student (name → module)."""
        return {}

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        if cfg.teacher_ckpt is None:
            raise FlatkdError(f"{cfg.method} distils from a pretrained teacher: pass "
                              "--teacher-ckpt PATH (a flatkd checkpoint, e.g. a baseline run's)")
        s_kw = _arch_kwargs(cfg.arch, num_classes, mean, std, cfg=cfg)
        student = seeded(cfg.seed, lambda: models.create(**s_kw))
        teacher, t_kw = load_teacher(cfg, num_classes)
        teacher.requires_grad_(False)
        extra = cls.extra(cfg, student, teacher)
        return Networks({"student": student, "teacher": teacher, **extra},
                        {"student": ["student", *extra]}, {"student": s_kw, "teacher": t_kw})

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update("student", self.cfg.method, spec)]

    def teacher_source(self) -> dict:
        arch = self.nets.architectures["teacher"]
        return {"arch": arch["arch"], "width": arch.get("width", 1),
                "teacher_ckpt": str(self.cfg.teacher_ckpt), "network": self.cfg.teacher_ckpt_model}

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits in eval mode (any architecture)."""
        teacher = self.nets.modules["teacher"]
        was = teacher.training
        teacher.eval()
        out = teacher(x)
        teacher.train(was)
        return out[-1] if isinstance(out, (tuple, list)) else out

    @torch.no_grad()
    def teacher_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(stage outputs, logits) of the teacher in eval mode."""
        teacher = self.nets.modules["teacher"]
        was = teacher.training
        teacher.eval()
        out = stages_and_logits(teacher, x)
        teacher.train(was)
        return out


def stages_and_logits(net, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(stage outputs, logits) of a ResNet in one forward pass."""
    stages = net.forward_stages(x)
    return stages, net.fc(net.pool_features(stages[-1]))


@METHODS.register("dkd")
class DKD(FrozenTeacher):
    """Decoupled KD from a frozen teacher: CE + min(epoch/warmup, 1)·(α·TCKD + β·NCKD)."""

    def loss(self, role, x, y):
        d = self.cfg.dkd
        t = self.teacher_logits(x)                  # logits only: any teacher architecture
        s = self.nets.modules["student"](x)
        ce = F.cross_entropy(s, y)
        tckd, nckd = dkd_loss(s, t, y, d.alpha, d.beta, d.temperature)
        ramp = min(self.update.spec.epoch / d.warmup_epochs, 1.0) if d.warmup_epochs > 0 else 1.0
        total = ce + ramp * (tckd + nckd)
        return total, {"loss": total.item(), "ce": ce.item(), "tckd": tckd.item(), "nckd": nckd.item()}

    def options(self) -> dict:
        d = self.cfg.dkd
        return {"alpha": d.alpha, "beta": d.beta, "temperature": d.temperature,
                "warmup_epochs": d.warmup_epochs, "teacher": self.teacher_source()}


@METHODS.register("at")
class AttentionTransfer(FrozenTeacher):
    """Attention transfer from a frozen teacher on every stage output: CE + β/2·Σ AT terms.
    Student and teacher must be ResNets with as many stages (checked when the run is built)."""

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        nets = super().build(cfg, num_classes, mean, std)
        student, teacher = nets.modules["student"], nets.modules["teacher"]
        for role, net in (("student", student), ("teacher", teacher)):
            if not hasattr(net, "forward_stages"):
                raise FlatkdError(f"at matches the attention maps of ResNet stages: the {role} "
                                  f"({nets.architectures[role]['arch']}) has none; use ResNet "
                                  "student and teacher (resnet8, resnet18, …)")
        ns, nt = len(student.stage_channels), len(teacher.stage_channels)
        if ns != nt:
            raise FlatkdError(f"at pairs stages: the student has {ns}, the teacher {nt}; use a "
                              "teacher with as many stages")
        return nets

    def loss(self, role, x, y):
        ft, _ = self.teacher_stages(x)
        fs, s = stages_and_logits(self.nets.modules["student"], x)
        ce = F.cross_entropy(s, y)
        at = at_loss(fs, ft, self.cfg.at.beta)
        total = ce + at
        return total, {"loss": total.item(), "ce": ce.item(), "at": at.item()}

    def options(self) -> dict:
        return {"beta": self.cfg.at.beta, "teacher": self.teacher_source()}
