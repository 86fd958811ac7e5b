"""Offline KD (paper Table 10, Table 6 "w/ max"): a frozen, pretrained teacher in eval mode."""
from __future__ import annotations

from pathlib import Path

import torch

from ... import datasets, models
from ...checkpoint import load_checkpoint
from ...datasets.augment import item_seed
from ...errors import FlatkdError
from ..batches import BatchSpec, batches_per_epoch, epoch_specs
from ..config import TrainConfig
from .base import Networks, Update
from .online import PROJECTOR_SEED_OFFSET, OnlineKD, _arch_kwargs, projector, teacher_seed
from .registry import METHODS
from .seeding import seeded

#: the teacher's own data stream when offline trains it first ("fresh shuffles" for the student)
TEACHER_STREAM_EPOCH = 0         # epoch 0 never occurs in the run's own stream


def load_teacher(cfg: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """The network ``cfg.teacher_ckpt_model`` of checkpoint ``cfg.teacher_ckpt`` (as deployed,
    eval mode) and its architecture record; its dataset and classes must match this run, and
    ``teacher_arch`` / ``teacher_width``, when set, the network's. Mismatch → FlatkdError."""
    path = Path(cfg.teacher_ckpt).expanduser()
    ck = load_checkpoint(path)                       # CheckpointError: missing / not a checkpoint
    name = cfg.teacher_ckpt_model
    if name not in ck.model_names:
        raise FlatkdError(f"teacher_ckpt {path} has no network {name!r}; set teacher_ckpt_model "
                          f"to one of: {', '.join(ck.model_names)}")
    if ck.dataset != cfg.dataset:
        raise FlatkdError(f"teacher_ckpt {path} was trained on {ck.dataset}, this run is on "
                          f"{cfg.dataset}; use a teacher trained on {cfg.dataset} (valid: "
                          f"--dataset {ck.dataset} for this teacher)")
    if ck.num_classes != num_classes:
        raise FlatkdError(f"teacher_ckpt {path} predicts {ck.num_classes} classes, this run has "
                          f"{num_classes}; use a teacher with {num_classes} classes")
    record = dict(ck.raw["architectures"][name])
    if cfg.teacher_arch is not None and record.get("arch") != cfg.teacher_arch:
        raise FlatkdError(f"teacher_ckpt {path} holds a {record.get('arch')}, not teacher_arch="
                          f"{cfg.teacher_arch}; set teacher_arch={record.get('arch')} or leave it unset")
    if cfg.teacher_width != 1 and float(record.get("width", 1)) != float(cfg.teacher_width):
        raise FlatkdError(f"teacher_ckpt {path} holds width {record.get('width', 1)}, not "
                          f"teacher_width={cfg.teacher_width}; set teacher_width="
                          f"{record.get('width', 1)} or leave it at 1")
    bad = ck.non_finite_tensor(name)
    if bad is not None:
        raise FlatkdError(f"teacher_ckpt {path}: network {name!r} has non-finite weights ({bad} "
                          "holds NaN or Inf); refusing to distil from it")
    net = ck.build_model(name)           # eval mode; a self-KD network as deployed (backbone)
    record["multi_exit"] = False
    return net, record


def train_size(cfg: TrainConfig) -> int:
    """Samples per training epoch as the loop counts them (``train_subset`` or the whole split)."""
    n = len(datasets.get(cfg.dataset, "train", root=cfg.data_root, download=cfg.download))
    return min(n, cfg.train_subset) if cfg.train_subset is not None else n


@METHODS.register("offline")
class OfflineKD(OnlineKD):
    """Offline KD: the student distils from a frozen teacher in eval mode with the online-KD
    loss (1−α)·CE + α·KD(f, g) + β·feature(projector(f_feat), g_feat).

    * ``teacher_ckpt`` set: the teacher is that checkpoint's network (validated: dataset,
      classes, architecture); only the student (and its projector) has an optimizer.
    * unset (the official code's ``interval_rate ≥ 50`` branch): the teacher (``teacher_arch``,
      ``teacher_width``, initialised under ``kd.teacher_init``) first trains on CE for all
      ``epochs`` on a data stream of its own — its own shuffles and augmentation draws, the
      learning-rate schedule replayed from step 1 — all inside the run's first step; then it is
      frozen and the student trains for ``epochs`` on the run's stream (fresh shuffles).

    The frozen teacher runs in eval mode under ``no_grad``: its weights and BatchNorm buffers
    never change while the student trains.
    """

    takes_teacher_ckpt = True

    official_rotation = True

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        s_kw = _arch_kwargs(cfg.arch, num_classes, mean, std, cfg=cfg)
        student = seeded(cfg.seed, lambda: models.create(**s_kw))
        optimizers = {"student": ["student", "projector"]}
        if cfg.teacher_ckpt is not None:
            teacher, t_kw = load_teacher(cfg, num_classes)
            teacher.requires_grad_(False)
        else:
            t_kw = _arch_kwargs(cfg.teacher_arch or cfg.arch, num_classes, mean, std,
                                cfg.teacher_width, cfg=cfg)
            teacher = seeded(teacher_seed(cfg), lambda: models.create(**t_kw))
            optimizers = {"teacher": ["teacher"], **optimizers}
        proj = seeded(cfg.seed + PROJECTOR_SEED_OFFSET,
                      lambda: projector(student.feature_dim, teacher.feature_dim))
        return Networks({"student": student, "teacher": teacher, "projector": proj}, optimizers,
                        {"student": s_kw, "teacher": t_kw})

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.teacher_ready = cfg.teacher_ckpt is not None

    def teacher_stream(self) -> list[BatchSpec]:
        """The teacher's own batches for all epochs: steps 1 … epochs × batches per epoch."""
        n, bs = train_size(self.cfg), self.cfg.batch_size
        bpe = batches_per_epoch(n, bs)
        seed = item_seed(self.cfg.seed, TEACHER_STREAM_EPOCH, -2)
        return [s for e in range(1, self.cfg.epochs + 1)
                for s in epoch_specs(n, bs, seed, e, (e - 1) * bpe + 1)]

    def schedule(self, spec: BatchSpec) -> list[Update]:
        updates = []
        if not self.teacher_ready:       # first step of a run without teacher_ckpt
            updates = [Update("teacher", "teacher", s) for s in self.teacher_stream()]
            self.teacher_ready = True
        return updates + [Update("student", "offline", spec)]

    def loss(self, role, x, y):
        if role != "offline":
            return super().loss(role, x, y)
        teacher = self.nets.modules["teacher"]
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            t_logits, t_feat = teacher.forward_features(x)
        teacher.train(was_training)
        return self.student_loss(x, y, t_logits, t_feat)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "teacher_ready": self.teacher_ready}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.teacher_ready = bool(state.get("teacher_ready", self.teacher_ready))

    def options(self) -> dict:
        cfg = self.cfg
        arch = self.nets.architectures["teacher"]
        source = {"arch": arch["arch"], "width": arch.get("width", 1)}
        source |= {"teacher_ckpt": str(cfg.teacher_ckpt), "network": cfg.teacher_ckpt_model} \
            if cfg.teacher_ckpt is not None else {"trained": "first, all epochs, own data stream"}
        opts = {**super().options(), "teacher": source}
        if cfg.teacher_ckpt is not None:
            opts.pop("teacher_init", None)          # a pretrained teacher: no initialisation
        return opts
