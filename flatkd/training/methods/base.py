"""The method contract: a method builds its networks and computes losses; the loop owns the rest.

Each incoming batch (a :class:`BatchSpec`) is turned by ``schedule`` into a list of
:class:`Update` s — (optimizer name, loss role, batch). The loop materialises each update's
batch, calls ``loss(role, x, y)``, back-propagates and steps that optimizer. Spaced methods
buffer specs and emit the replays when the interval is full (paper Alg. 2 / Alg. 4).
"""
from __future__ import annotations

import bisect
import copy
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..batches import BatchSpec
from ..config import TrainConfig


@dataclass(frozen=True)
class Update:
    optimizer: str      # which optimizer steps
    role: str           # which loss ``Method.loss`` computes
    spec: BatchSpec


@dataclass
class Networks:
    """What a method trains: modules by name, optimizer → module names, evaluated models."""
    modules: dict[str, nn.Module]
    optimizers: dict[str, list[str]]
    architectures: dict[str, dict]        # evaluable name → flatkd.models.create kwargs


def stage_index(lengths: list[int], epoch: int) -> int:
    """0-based stage holding 1-based ``epoch`` when the stages last ``lengths`` epochs in
    order (the last stage for an epoch past the end)."""
    return min(bisect.bisect_left(list(itertools.accumulate(lengths)), epoch), len(lengths) - 1)


class Method(ABC):
    """Base class; subclasses are registered in :data:`flatkd.training.methods.METHODS`."""

    default_interval: ClassVar[float | None] = None    # epochs; None = not a spaced method
    augment_family: ClassVar[str] = "other"     # "self": the dataset's self-KD augmentation default
    official_rotation: ClassVar[bool] = False   # RandomRotation(15) on CIFAR (online-KD pipeline)
    takes_teacher_ckpt: ClassVar[bool] = False  # distils from a pretrained teacher_ckpt
    #: whether the method honours the critical period (spaced.start_epoch, window_epochs)
    critical_period: ClassVar[bool] = False
    #: this method's own defaults of shared config keys (dotted key → value), applied over the
    #: dataclass defaults and under every preset, file and flag
    config_defaults: ClassVar[dict[str, object]] = {}

    def __init__(self, cfg: TrainConfig, nets: Networks, interval_steps: int):
        self.cfg, self.nets, self.interval_steps = cfg, nets, interval_steps
        self.replay_steps: list[int] = []      # global steps at which a replay was triggered
        self.update: Update | None = None      # the update whose loss is computed next (``begin``)

    @classmethod
    def stages(cls, cfg: TrainConfig) -> int:
        """How many consecutive trainings of ``cfg.epochs`` epochs the run has (default 1).

        A multi-stage method (born-again generations, a teacher-assistant chain, a pretrained
        teacher) trains stage k on epochs k·E+1 … (k+1)·E with fresh shuffles; the loop restarts
        the learning-rate schedule at each stage and keeps a copy of each finished stage's
        checkpoint. ``stage_of(spec)`` tells a method which stage a batch belongs to.
        """
        return 1

    @classmethod
    def stage_epochs(cls, cfg: TrainConfig) -> list[int]:
        """Epochs of each stage, in order (default: :meth:`stages` stages of ``cfg.epochs``).
        A method whose stages split one budget of ``cfg.epochs`` (StableKD) returns their
        lengths; the loop restarts the learning-rate schedule at each stage's first epoch."""
        return [cfg.epochs] * cls.stages(cfg)

    def stage_of(self, spec: BatchSpec) -> int:
        """The 0-based stage of batch ``spec`` (see :meth:`stage_epochs`)."""
        return stage_index(self.stage_epochs(self.cfg), spec.epoch)

    def begin(self, update: Update) -> None:
        """Called by the loop right before ``loss`` for ``update``. A method whose loss depends on
        which samples it sees (per-sample state keyed by ``update.spec.indices``) or on the
        batch's epoch reads ``self.update``."""
        self.update = update

    @classmethod
    @abstractmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        """Create the networks (seeded from ``cfg.seed``) and say which optimizer owns which."""

    @abstractmethod
    def schedule(self, spec: BatchSpec) -> list[Update]:
        """The updates to run for the incoming batch ``spec``, in order."""

    def finish(self) -> list[Update]:
        """Updates for what is left when training ends (default: nothing)."""
        return []

    def count_updates(self, specs: list[BatchSpec], final: bool) -> int:
        """How many updates ``schedule`` will return for ``specs`` in order, plus ``finish``'s
        when ``final`` (training ends after the last spec) — without changing this method.

        ``schedule`` may change state (spaced methods buffer specs and record replay steps;
        DLB pairs batches; offline KD marks its teacher trained), so it runs on a planning
        copy: a shallow copy whose containers (lists, dicts, sets, and whatever they hold)
        are deep-copied. Schedules change only such attributes and never the networks; a
        method whose schedule mutates other state overrides this."""
        plan = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, (list, dict, set)):
                setattr(plan, name, copy.deepcopy(value))
        n = sum(len(plan.schedule(s)) for s in specs)
        return n + (len(plan.finish()) if final else 0)

    @abstractmethod
    def loss(self, role: str, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Scalar loss for ``role`` on images x [B, C, H, W] and labels y [B], plus float logs."""

    def test_metrics(self, loader, device: torch.device) -> dict[str, float]:
        """Extra per-epoch test columns for ``metrics.csv`` beyond each network's accuracy."""
        return {}

    def state_dict(self) -> dict:
        return {"replay_steps": list(self.replay_steps)}

    def load_state_dict(self, state: dict) -> None:
        self.replay_steps = list(state.get("replay_steps", []))

    def options(self) -> dict:
        """Options this method ran with, recorded in the checkpoint (plain data)."""
        return {}
