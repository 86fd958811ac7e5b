"""Chains of teachers, paper App. A.3: born-again networks (BAN) and teacher-assistant KD (TAKD),
each as the original sequential method and as a spaced cascade.

* ``ban`` / ``takd`` — the original methods: stage k trains network k of the chain for
  ``epochs`` epochs (fresh shuffles, the learning-rate schedule restarted) against the frozen
  network k − 1 (eval mode, no gradient); stage 0 trains on cross-entropy. The loop keeps each
  finished stage's checkpoint (``stage-<k>.pt``) and resumes inside any stage.
* ``online-ban`` / ``online-takd`` — the online cascade: on every batch network 0 steps on
  cross-entropy, then each network k steps against network k − 1's pre-update outputs. It is
  the spaced cascade at s = 0 (bit for bit) and so its counterpart in the report ("w/ KD"):
  the sequential method is not a limit of the cascade, and pairing the two would mix
  "sequential → concurrent" with spacing.
* ``spaced-ban`` / ``spaced-takd`` — flatkd's reading of A.3 ("delay the students' supervised
  learning and distillation by a space interval of 1.5 epochs"; with a converged teacher a
  delay would change nothing): one run in which network 0 trains ``s`` steps ahead on
  cross-entropy, then network 1 replays those batches against the frozen network 0, then
  network 2 against the just-updated frozen network 1, … — every learner sees a teacher ``s``
  steps ahead (a cascade of Alg. 2). At s = 0 the cascade is online: each network steps on the
  batch against its predecessor's pre-update outputs.

Networks: the last of the chain is ``student`` (the evaluated one); the first is ``teacher``.
BAN: ``teacher``, ``gen1`` … ``gen{G−1}``, ``student`` (same architecture); TAKD: ``teacher``
(``teacher_arch``), ``assistant`` (``takd.assistant_arch``), ``student``. The first network is
built under ``kd.teacher_init``, the others (beyond the student) from seed + 100·k.

Pure losses (logits [N, C], labels [N]):

* :func:`ban_loss` — Furlanello et al., ICML 2018: CE(z, y) + T²·KL(p_teacher ‖ p_z) (T = 1; the
  teacher term alone with ``ban.label_loss=false``). Against the teacher's cross-entropy
  H(p_t, p_z) it differs by the constant H(p_t): same gradients.
* :func:`ban_ensemble` — BANE: the mean of the generations' softmax outputs.
* :func:`takd_loss` — Mirzadeh et al., AAAI 2020: (1 − λ)·CE + λ·T²·KL(p_t ‖ p_z).
"""
from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from ...errors import FlatkdError
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import kd_kl
from .base import Method, Networks, Update
from .kdutil import frozen_forward, make_net
from .online import teacher_seed
from .registry import METHODS
from .spacing import SpacedSchedule

CHAIN_SEED_STRIDE = 100


def ban_loss(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float = 1.0,
             label_loss: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kd) with total = [CE(z, y)] + T²·KL(softmax(t/T) ‖ softmax(z/T))."""
    ce = F.cross_entropy(z, y)
    kd = kd_kl(z, t.detach(), T)
    return (ce + kd if label_loss else kd), ce, kd


def ban_ensemble(logits: list[torch.Tensor]) -> torch.Tensor:
    """BANE: mean over generations of softmax(z) (probabilities [N, C])."""
    return torch.stack([F.softmax(z, 1) for z in logits]).mean(0)


def takd_loss(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, lam: float, T: float,
              reduction: str = "batchmean") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kd) with total = (1 − λ)·CE(z, y) + λ·T²·KL(p_t ‖ p_z); ``reduction="official"``
    averages the KL over batch × classes (TAKD's ``nn.KLDivLoss()`` default), i.e. divides the
    batch-mean KL by the number of classes."""
    ce = F.cross_entropy(z, y)
    kd = kd_kl(z, t.detach(), T)
    if reduction == "official":
        kd = kd / z.shape[1]
    return (1 - lam) * ce + lam * kd, ce, kd


class Chain(Method):
    """Common part: the chain of networks, each with its own optimizer, and the distillation
    loss of network k (k ≥ 1) from network k − 1 (``distil``, set by the family)."""

    official_rotation = True

    @classmethod
    @abstractmethod
    def chain_specs(cls, cfg: TrainConfig) -> list[tuple[str, str | None, float]]:
        """(name, arch or None = the student's, width) from first teacher to student."""

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        mods, archs = {}, {}
        specs = cls.chain_specs(cfg)
        for k, (name, arch, width) in enumerate(specs):
            if name == "student":
                seed = cfg.seed
            elif k == 0:
                seed = teacher_seed(cfg)
            else:
                seed = teacher_seed(cfg) + CHAIN_SEED_STRIDE * k
            mods[name], archs[name] = make_net(cfg, seed, num_classes, mean, std, arch, width)
        return Networks(mods, {n: [n] for n in mods}, archs)

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.chain = [name for name, _, _ in self.chain_specs(cfg)]

    @abstractmethod
    def distil(self, z, t, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, CE, KD) loss of a network with logits ``z`` [N, C] distilled from its
        predecessor's logits ``t`` [N, C] on labels ``y`` [N]."""

    def _logs(self, name: str, total, ce, kd=None) -> dict:
        key = "loss" if name == "student" else f"{name}_loss"
        logs = {key: total.item(), f"{name}_ce": ce.item()}
        if kd is not None:
            logs[f"{name}_kd"] = kd.item()
        return logs

    def step_loss(self, k: int, x, y, target: torch.Tensor | None):
        """Network k's loss: CE for k = 0, else the family's distillation from ``target``."""
        name = self.chain[k]
        z = self.nets.modules[name](x)
        if k == 0:
            ce = F.cross_entropy(z, y)
            return ce, self._logs(name, ce, ce), z
        total, ce, kd = self.distil(z, target, y)
        return total, self._logs(name, total, ce, kd), z

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict:
        from ...accuracy import top1_accuracy
        return {f"{n}_test_acc": top1_accuracy(self.nets.modules[n], loader, device)
                for n in self.chain if n not in ("student", "teacher")}


class SequentialChain(Chain):
    """Stage k trains network k for ``epochs`` epochs against the frozen network k − 1."""

    @classmethod
    def stages(cls, cfg: TrainConfig) -> int:
        return len(cls.chain_specs(cfg))

    def schedule(self, spec: BatchSpec) -> list[Update]:
        name = self.chain[self.stage_of(spec)]
        return [Update(name, "stage", spec)]

    def loss(self, role, x, y):
        k = self.stage_of(self.update.spec)
        target = None
        if k > 0:
            target = frozen_forward(self.nets.modules[self.chain[k - 1]], x, "eval")
        total, logs, _ = self.step_loss(k, x, y, target)
        return total, {**logs, "stage": float(k)}

    def options(self) -> dict:
        return {"chain": self.chain, "stages": len(self.chain), "predecessor": "frozen, eval mode",
                "teacher_init": self.cfg.kd.teacher_init}


class CascadeChain(Chain):
    """Online cascade (s = 0 of the spaced cascade): on every batch network 0 steps on CE, then
    each network k steps against network k − 1's pre-update outputs on the same batch."""

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self._outputs: dict[str, torch.Tensor] = {}

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update(n, f"online{k}", spec) for k, n in enumerate(self.chain)]

    def loss(self, role, x, y):
        if role.startswith("online"):
            k = int(role[len("online"):])
            target = self._outputs.get(self.chain[k - 1]) if k else None
            total, logs, z = self.step_loss(k, x, y, target)
            self._outputs[self.chain[k]] = z.detach()
            return total, logs
        if role.startswith("replay"):
            k = int(role[len("replay"):])
            target = frozen_forward(self.nets.modules[self.chain[k - 1]], x, self.cfg.spaced.teacher_bn)
            total, logs, _ = self.step_loss(k, x, y, target)
            return total, logs
        total, logs, _ = self.step_loss(0, x, y, None)           # "ahead": network 0 on CE
        return total, logs

    def options(self) -> dict:
        return {"chain": self.chain, "cascade": True, "teacher_init": self.cfg.kd.teacher_init}


class SpacedCascade(SpacedSchedule, CascadeChain):
    """Network 0 trains ``s`` steps ahead; then networks 1, 2, … replay the interval in turn,
    each against its frozen predecessor (BatchNorm: ``spaced.teacher_bn``)."""

    default_interval = 1.5
    advance = ("teacher", "ahead")

    def replay_updates(self, specs: list[BatchSpec]) -> list[Update]:
        return [Update(n, f"replay{k}", s) for k, n in enumerate(self.chain) if k for s in specs]

    def options(self) -> dict:
        return {**super().options(), "teacher_bn_during_replay": self.cfg.spaced.teacher_bn}


# ---------------------------------------------------------------------------- BAN
class BANFamily:
    """BAN: generations of the student's architecture; ``ban.generations`` G ≥ 1 students."""

    @classmethod
    def chain_specs(cls, cfg: TrainConfig):
        G = cfg.ban.generations
        if G < 1:
            raise FlatkdError(f"ban.generations must be ≥ 1, got {G}")
        if not cfg.ban.temperature > 0:
            raise FlatkdError(f"ban.temperature must be > 0, got {cfg.ban.temperature}")
        return [("teacher", None, 1.0)] + [(f"gen{k}", None, 1.0) for k in range(1, G)] \
            + [("student", None, 1.0)]

    def distil(self, z, t, y):
        b = self.cfg.ban
        return ban_loss(z, t, y, b.temperature, b.label_loss)

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict:
        """Each generation's accuracy and BANE's (mean softmax of generations 1 … G)."""
        row = super().test_metrics(loader, device)
        nets = [self.nets.modules[n] for n in self.chain[1:]]
        was = [n.training for n in nets]
        for n in nets:
            n.eval()
        correct = total = 0
        for x, yb in loader:
            p = ban_ensemble([n(x.to(device)) for n in nets])
            correct += int((p.argmax(1).cpu() == yb).sum())
            total += len(yb)
        for n, w in zip(nets, was):
            n.train(w)
        row["ensemble_test_acc"] = correct / total
        return row

    def options(self) -> dict:
        b = self.cfg.ban
        return {**super().options(), "generations": b.generations, "label_loss": b.label_loss,
                "temperature": b.temperature}


@METHODS.register("ban")
class BAN(BANFamily, SequentialChain):
    """Born-again networks: G + 1 generations of one architecture trained one after another,
    generation k on [CE +] T²·KL toward the frozen generation k − 1 (``ban.*``)."""


@METHODS.register("online-ban")
class OnlineBAN(BANFamily, CascadeChain):
    """Born-again networks as an online cascade: every generation steps on each batch against
    its predecessor's pre-update outputs (spaced-ban at s = 0)."""


@METHODS.register("spaced-ban")
class SpacedBAN(BANFamily, SpacedCascade):
    """Spaced born-again networks: the generations as a spaced cascade (flatkd's reading; see
    the module help)."""


# ---------------------------------------------------------------------------- TAKD
class TAKDFamily:
    """TAKD: teacher (``teacher_arch``, ``teacher_width``) → assistant (``takd.assistant_arch``,
    ``takd.assistant_width``) → student, λ = kd.alpha, T = kd.temperature."""

    @classmethod
    def chain_specs(cls, cfg: TrainConfig):
        t = cfg.takd
        return [("teacher", cfg.teacher_arch, cfg.teacher_width),
                ("assistant", t.assistant_arch, t.assistant_width), ("student", None, 1.0)]

    def distil(self, z, t, y):
        kd = self.cfg.kd
        return takd_loss(z, t, y, kd.alpha, kd.temperature, self.cfg.takd.reduction)

    def options(self) -> dict:
        return {**super().options(), "lambda": self.cfg.kd.alpha, "temperature": self.cfg.kd.temperature,
                "reduction": self.cfg.takd.reduction}


@METHODS.register("takd")
class TAKD(TAKDFamily, SequentialChain):
    """Teacher-assistant KD: teacher, then assistant, then student, each trained in turn
    against the frozen previous one."""


@METHODS.register("online-takd")
class OnlineTAKD(TAKDFamily, CascadeChain):
    """Teacher-assistant KD as an online cascade: teacher, assistant and student each step on
    every batch, the latter two against their predecessor's pre-update outputs (spaced-takd at
    s = 0)."""


@METHODS.register("spaced-takd")
class SpacedTAKD(TAKDFamily, SpacedCascade):
    """Spaced teacher-assistant KD: teacher s steps ahead, assistant and student replaying each
    interval in turn (flatkd's reading; see the module help)."""
