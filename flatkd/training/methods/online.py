"""Baseline, online KD (paper Alg. 1) and spaced online KD (paper Alg. 2, Eq. 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import models
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import distillation_objective, feature_loss, feature_loss_name, soft_loss
from .base import Method, Networks, Update
from .registry import METHODS
from .seeding import seeded
from .spacing import SpacedSchedule

TEACHER_SEED_OFFSET = 1      # kd.teacher_init=independent: the teacher is built from seed + 1
PROJECTOR_SEED_OFFSET = 2


def teacher_seed(cfg: TrainConfig) -> int:
    """Seed the teacher is built from under ``kd.teacher_init`` — one policy for every
    teacher–student method, so a spaced method and its counterpart start from equal weights.

    ``independent`` (default): seed + 1, a different init from the student's (the official code
    draws teacher then student from one unseeded stream: different inits, same distribution);
    ``same``: the student's seed (paper §4.1), identical weights when the architectures match.
    """
    return cfg.seed if cfg.kd.teacher_init == "same" else cfg.seed + TEACHER_SEED_OFFSET


def _arch_kwargs(arch: str, num_classes: int, mean, std, width: float = 1.0,
                 multi_exit: bool = False, cfg: TrainConfig | None = None) -> dict:
    """``models.create`` kwargs, recorded in the checkpoint; ``cfg`` adds the architecture's own
    settings (transformers: ``vit.img_size``, ``vit.drop_path``)."""
    return {"arch": arch, "num_classes": num_classes, "mean": list(mean), "std": list(std),
            "width": width, "multi_exit": multi_exit,
            **(models.arch_options(arch, cfg) if cfg is not None else {})}


def projector(d_student: int, d_teacher: int) -> nn.Module:
    """Official online-KD projector on the pooled student feature: D_s → (D_s+D_t)/2 → D_t."""
    hidden = (d_student + d_teacher) // 2
    return nn.Sequential(nn.Linear(d_student, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_teacher))


@METHODS.register("baseline")
class Baseline(Method):
    """Plain cross-entropy training of one network ("w/o KD")."""

    official_rotation = True

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        kw = _arch_kwargs(cfg.arch, num_classes, mean, std, cfg=cfg)
        student = seeded(cfg.seed, lambda: models.create(**kw))
        return Networks({"student": student}, {"student": ["student"]}, {"student": kw})

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update("student", "student", spec)]

    def loss(self, role, x, y):
        loss = F.cross_entropy(self.nets.modules["student"](x), y)
        return loss, {"loss": loss.item()}


@METHODS.register("online")
class OnlineKD(Method):
    """Teacher g and student f of independent inits train side by side, one direction only.

    Every step: the teacher takes an SGD step on CE; the student on
    (1−α)·CE + α·KD(f, g) + β·feature(projector(f_feat), g_feat), distilling from the
    teacher's *pre-update* outputs on the same batch (as in the official code).
    """

    official_rotation = True

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        s_kw = _arch_kwargs(cfg.arch, num_classes, mean, std, cfg=cfg)
        t_kw = _arch_kwargs(cfg.teacher_arch or cfg.arch, num_classes, mean, std, cfg.teacher_width,
                            cfg=cfg)
        student = seeded(cfg.seed, lambda: models.create(**s_kw))
        teacher = seeded(teacher_seed(cfg), lambda: models.create(**t_kw))
        proj = seeded(cfg.seed + PROJECTOR_SEED_OFFSET,
                      lambda: projector(student.feature_dim, teacher.feature_dim))
        return Networks({"student": student, "teacher": teacher, "projector": proj},
                        {"teacher": ["teacher"], "student": ["student", "projector"]},
                        {"student": s_kw, "teacher": t_kw})

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.soft = soft_loss(cfg.kd.loss, cfg.kd.faithful)
        self.feature = feature_loss(cfg.kd.feature_loss, cfg.kd.faithful)
        self._teacher_out: tuple[torch.Tensor, torch.Tensor] | None = None

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update("teacher", "teacher", spec), Update("student", "student", spec)]

    def loss(self, role, x, y):
        if role == "teacher":
            logits, feat = self.nets.modules["teacher"].forward_features(x)
            self._teacher_out = (logits.detach(), feat.detach())
            loss = F.cross_entropy(logits, y)
            return loss, {"teacher_loss": loss.item()}
        return self.student_loss(x, y, *self._teacher_out)

    def student_loss(self, x, y, t_logits, t_feat):
        """(1−α)·CE + α·soft(s, t, T) + β·feature(projector(f_s), f_t)  (paper Eq. 2 + feature term)."""
        kd = self.cfg.kd
        s_logits, s_feat = self.nets.modules["student"].forward_features(x)
        total, ce, soft = distillation_objective(s_logits, t_logits, y, alpha=kd.alpha,
                                                 T=kd.temperature, soft=self.soft)
        feat = self.feature(self.nets.modules["projector"](s_feat), t_feat.detach())
        total = total + kd.feature_weight * feat
        return total, {"loss": total.item(), "ce": ce.item(), "kd": soft.item(), "feat": feat.item()}

    def options(self) -> dict:
        kd = self.cfg.kd
        return {"kd_loss": "faithful" if kd.faithful else kd.loss,
                "feature_loss": feature_loss_name(kd.feature_loss, kd.faithful),
                "teacher_init": kd.teacher_init}


@METHODS.register("spaced-online")
class SpacedOnlineKD(SpacedSchedule, OnlineKD):
    """Spaced KD (paper Alg. 2, Eq. 5): the teacher trains ``s`` steps ahead on B_t..B_{t+s−1}
    (CE only); then, frozen at φ_{t+s}, it teaches the student on exactly those batches in the
    same order. The buffer holds batch specs (indices + augmentation seed), never pixels, and is
    cleared after each replay. s = 0 steps is online KD.
    """

    default_interval = 1.5
    advance = ("teacher", "teacher")
    replay = ("student", "replay")

    def loss(self, role, x, y):
        if role != "replay":
            return super().loss(role, x, y)
        teacher = self.nets.modules["teacher"]
        was_training = teacher.training
        teacher.train(self.cfg.spaced.teacher_bn == "train")
        with torch.no_grad():
            t_logits, t_feat = teacher.forward_features(x)
        teacher.train(was_training)
        return self.student_loss(x, y, t_logits, t_feat)

    def options(self) -> dict:
        return {**super().options(), "teacher_bn_during_replay": self.cfg.spaced.teacher_bn}
