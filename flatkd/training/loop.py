"""The single training loop: optimizers, learning rate, steps, evaluation, checkpoints, resume.

Methods only compute losses (``Method.loss``) and say which updates a batch triggers
(``Method.schedule``); everything else happens here, once, for every method.
"""
from __future__ import annotations

import contextlib
import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from .. import datasets, provenance
from ..config import to_plain
from ..errors import FlatkdError, TrainingDiverged
from ..io import writable_target, write_text
from .batches import BatchSpec, Materializer, batches_per_epoch, epoch_specs
from .config import TrainConfig
from . import distributed
from . import epoch_metrics, tb_log
from .compile_compat import compile_network
from .methods import METHODS, Method, Update
from .methods.base import stage_index
from .resume import check_resumable

CHECKPOINT_NAME = "checkpoint.pt"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ROTATION_DATASETS = ("cifar10", "cifar100")   # official CIFAR online-KD pipeline: + RandomRotation(15)

OnUpdate = Callable[["Trainer", Update, torch.Tensor, torch.Tensor], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FlatkdError("--device cuda requested but CUDA is not available; valid: auto, cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise FlatkdError(f"unknown device {name!r}; valid choices: auto, cpu, cuda")
    return torch.device(name)


def loss_key(logs: dict) -> Optional[str]:
    """Which of a method's logs is the update's own loss: ``loss`` (the student's) or the
    ``<network>_loss`` of another network (teacher_loss, peer1_loss, …); None if neither."""
    if "loss" in logs:
        return "loss"
    return next((k for k in logs if k.endswith("_loss")), None)


def interval_steps(interval_epochs: float, n_batches: int) -> int:
    """Space interval in optimizer steps: floor(s × batches_per_epoch), as the official code."""
    return int(math.floor(interval_epochs * n_batches + 1e-9))


class _Subset(torch.utils.data.Subset):
    """The first ``n`` samples of ``base``, keeping its ``spec``."""

    def __init__(self, base, n: int, key: str):
        if n > len(base):
            raise FlatkdError(f"{key}={n} exceeds the {len(base)} samples of the split")
        super().__init__(base, range(n))
        self.spec = base.spec


class Trainer:
    """Train ``cfg`` into ``out_dir`` (``checkpoint.pt``, ``metrics.csv``, ``config.yaml``, and
    TensorBoard events in ``tb/`` under ``log.tensorboard``: :mod:`flatkd.training.tb_log`).

    ``progress``: one bar per epoch counting optimizer updates, replays included (its total from
    :meth:`Method.count_updates`), showing each role's running loss over the epoch so far.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 progress: bool = True, on_update: Optional[OnUpdate] = None):
        self.cfg, self.out = cfg, Path(out_dir)
        self.progress, self.on_update = progress, on_update
        self.ckpt_path = self.out / CHECKPOINT_NAME
        writable_target(self.out, "run directory")
        if self.ckpt_path.exists() and not resume:
            raise FlatkdError(f"{self.ckpt_path} exists; pass --resume to continue it "
                              "or choose another --out")
        if resume and not self.ckpt_path.exists():
            raise FlatkdError(f"--resume: no checkpoint at {self.ckpt_path}")
        method_cls = METHODS.get(cfg.method)
        if cfg.teacher_ckpt is not None and not method_cls.takes_teacher_ckpt:
            takers = [n for n in METHODS.names() if METHODS.get(n).takes_teacher_ckpt]
            raise FlatkdError(f"--teacher-ckpt: {cfg.method} does not distil from a pretrained "
                              f"teacher, so it would be ignored; methods that take one: "
                              f"{', '.join(takers)}")
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(self.device.type)
        self.device = self.dist.place(self.device)
        if cfg.sync_bn and self.device.type != "cuda":
            raise FlatkdError("sync_bn=true needs CUDA devices (SyncBatchNorm does not run on CPU "
                              "or gloo); valid on CPU: sync_bn=false")
        self.spec = datasets.spec(cfg.dataset)
        kw = {"root": cfg.data_root, "download": cfg.download}
        rotation = cfg.augment.rotation if cfg.augment.rotation is not None else \
            cfg.dataset in ROTATION_DATASETS and method_cls.official_rotation
        self.augment_policy = cfg.augment.policy or datasets.default_policy(
            cfg.dataset, method_cls.augment_family)
        self.augment = datasets.train_augment(cfg.dataset, self.augment_policy, rotation)
        self.train_set = self._training_split(self.augment.needs_original)
        #: the same samples un-augmented at the network's input size (BatchNorm recalibration)
        self.plain_train_set = self._training_split(False) if self.augment.needs_original \
            else self.train_set
        self.test_set = datasets.get(cfg.dataset, "test", **kw)
        if cfg.test_subset is not None:
            self.test_set = _Subset(self.test_set, cfg.test_subset, "test_subset")
        if cfg.batch_size > len(self.train_set):
            raise FlatkdError(f"batch_size={cfg.batch_size} exceeds the {len(self.train_set)} "
                              f"training samples of {cfg.dataset}; choose at most {len(self.train_set)}")
        num_classes = self.spec.num_classes or self.train_set.spec.num_classes
        self.bpe = batches_per_epoch(len(self.train_set), cfg.batch_size)
        self.stage_epochs = method_cls.stage_epochs(cfg)    # multi-stage methods: their lengths
        self.stages = len(self.stage_epochs)
        self.stage_starts = [sum(self.stage_epochs[:c]) for c in range(self.stages)]
        self.total_epochs = sum(self.stage_epochs)
        self.total_steps = self.bpe * self.total_epochs
        self.interval_epochs = self._interval(method_cls)
        self.interval_steps = interval_steps(self.interval_epochs, self.bpe) \
            if self.interval_epochs is not None else 0
        nets = method_cls.build(cfg, num_classes, self.train_set.spec.mean, self.train_set.spec.std)
        for name, m in nets.modules.items():
            if cfg.sync_bn and self.dist.enabled:
                nets.modules[name] = m = torch.nn.SyncBatchNorm.convert_sync_batchnorm(m)
            m.to(self.device, memory_format=self._memory_format)
            if cfg.compile is not None:
                compile_network(m, cfg.compile)
        self.method: Method = method_cls(cfg, nets, self.interval_steps)
        self.optimizers = {name: self._optimizer(mods) for name, mods in nets.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self._main_stream = Materializer(self.train_set, self.augment, cfg.num_workers)
        self._replay_stream = Materializer(self.train_set, self.augment, cfg.num_workers)
        self.num_classes = num_classes
        self.epoch, self.step = 0, 0
        self.opt_steps = {name: 0 for name in self.optimizers}
        self.metrics: list[dict] = []
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self.provenance = provenance.collect(seed=cfg.seed, device=str(self.device),
                                             world_size=self.dist.world_size)
        self.tensorboard = tb_log.resolve_tensorboard(cfg.log.tensorboard)
        self.wandb = tb_log.resolve_wandb(cfg.log.wandb)
        self._curves: Optional[tb_log.Curves] = None      # open while run() trains (rank 0)
        self._bar = None                                  # the epoch's progress bar, if shown
        self._role_losses: dict[str, list] = {}           # role → [sum, count] this epoch (bar)
        if resume:
            self._restore(ckpt.read(self.ckpt_path))

    # ------------------------------------------------------------------ setup
    def _training_split(self, original: bool):
        """The run's training samples: the train split (file images at their own size when
        ``original``), then ``train_fraction``, then ``train_subset``."""
        cfg = self.cfg
        ds = datasets.get(cfg.dataset, "train", original=original, root=cfg.data_root,
                          download=cfg.download)
        if cfg.train_fraction is not None:
            ds = datasets.stratified_fraction(ds, cfg.train_fraction, cfg.seed)
        if cfg.train_subset is not None:
            ds = _Subset(ds, cfg.train_subset, "train_subset")
        return ds

    def _interval(self, method_cls) -> float | None:
        sp = self.cfg.spaced
        if not method_cls.critical_period and (sp.start_epoch != 0 or sp.window_epochs is not None):
            honour = [n for n in METHODS.names() if METHODS.get(n).critical_period]
            raise FlatkdError(f"spaced.start_epoch / spaced.window_epochs (the critical period) "
                              f"would be ignored by {self.cfg.method}; they apply to: "
                              f"{', '.join(honour)}")
        given = self.cfg.spaced.interval
        if method_cls.default_interval is None:
            if given is not None:
                spaced = [n for n in METHODS.names() if METHODS.get(n).default_interval is not None]
                raise FlatkdError(f"--interval applies to spaced methods only: {', '.join(spaced)}")
            return None
        s = method_cls.default_interval if given is None else given
        n = interval_steps(s, self.bpe)
        if n >= self.total_steps and self.cfg.spaced.leftover == "drop":
            raise FlatkdError(
                f"interval {s} epochs ({n} steps) covers the whole run ({self.total_steps} steps): "
                "with spaced.leftover=drop the student would never train; "
                "use --set spaced.leftover=distil (offline KD)")
        return s

    def _optimizer(self, module_names: list[str]) -> torch.optim.Optimizer:
        params = [p for n in module_names for p in self.method.nets.modules[n].parameters()]
        o = self.cfg.optim
        if o.name == "sgd":
            return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)

    def lr_at(self, step: int) -> float:
        """Learning rate at global data step ``step`` (1-based), restarted at each stage:
        warm-up then constant or cosine, or the triangular2 cycle of the stage."""
        o = self.cfg.optim
        stage = stage_index(self.stage_epochs, (step - 1) // self.bpe + 1)
        length = self.stage_epochs[stage]
        progress = (step - 1 - self.stage_starts[stage] * self.bpe) / self.bpe   # epochs done in the stage
        if o.schedule == "triangular2":
            u = (progress + 1 / self.bpe) / length                  # (0, 1] through the stage
            return o.min_lr + (o.lr - o.min_lr) * 0.5 ** stage * (1 - abs(2 * u - 1))
        if progress < o.warmup_epochs:
            return o.lr * (progress + 1 / self.bpe) / o.warmup_epochs
        if o.schedule == "constant":
            return o.lr
        span = max(length - o.warmup_epochs, 1e-12)
        frac = min(max((progress - o.warmup_epochs) / span, 0.0), 1.0)
        return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * frac))

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        """Train to ``cfg.epochs``; returns the checkpoint path."""
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.yaml", yaml.safe_dump(self._record(), sort_keys=False))
            if self.tensorboard or self.wandb:
                self._curves = tb_log.Curves(self.out, tensorboard=self.tensorboard,
                                             wandb=self.wandb, first_step=self.step + 1,
                                             record=self._record())
        try:
            for epoch in range(self.epoch + 1, self.total_epochs + 1):
                self._train_epoch(epoch)
        finally:
            if self._curves is not None:
                self._curves.close()
                self._curves = None
        return self.ckpt_path

    def _epoch_specs(self, epoch: int) -> list[BatchSpec]:
        """The batches of ``epoch`` not trained yet (all of them but after a mid-epoch resume)."""
        return [s for s in epoch_specs(len(self.train_set), self.cfg.batch_size, self.cfg.seed,
                                       epoch, (epoch - 1) * self.bpe + 1) if s.step > self.step]

    def planned_updates(self) -> int:
        """Optimizer updates :meth:`run` has left to do (replays included), from the method's
        schedule (:meth:`Method.count_updates`; nothing is trained or changed)."""
        specs = [s for e in range(self.epoch + 1, self.total_epochs + 1)
                 for s in self._epoch_specs(e)]
        return self.method.count_updates(specs, final=bool(specs))

    def _train_epoch(self, epoch: int) -> None:
        for m in self.method.nets.modules.values():
            m.train()
        specs = self._epoch_specs(epoch)
        final = epoch == self.total_epochs and bool(specs)     # finish() runs after the last
        show = self.progress and self.dist.is_main
        # one tick per optimizer update (replays included): the total comes from the schedule
        self._bar = tqdm(total=self.method.count_updates(specs, final) if show else None,
                         desc=f"{self.cfg.method} epoch {epoch}/{self.total_epochs}",
                         disable=not show, leave=False, unit="update")
        self._role_losses = {}
        for spec, (_, x, y) in zip(specs, self._materialize(specs, self._main_stream)):
            replays = len(self.method.replay_steps)
            self._run_updates(self.method.schedule(spec), spec, x, y)
            self.step = spec.step
            if final and spec is specs[-1]:
                self._run_updates(self.method.finish(), None, None, None)
            if self._curves is not None:
                n = len(self.method.replay_steps)
                self._curves.batch(spec.step, self.lr_at(spec.step), n if n > replays else None)
            if self.cfg.checkpoint_every and spec.step % self.cfg.checkpoint_every == 0 \
                    and spec is not specs[-1]:
                self._save(epoch - 1)
        self._bar.close()
        self._bar = None
        self._end_epoch(epoch)

    def _run_updates(self, updates: list[Update], spec: BatchSpec | None, x, y) -> None:
        """Run updates; batches other than the current one (replays) are re-materialised."""
        others = [u.spec for u in updates if u.spec is not spec]
        replayed = self._materialize(others, self._replay_stream) if others else iter(())
        for u in updates:
            if u.spec is spec:
                ux, uy = x, y
            else:
                _, ux, uy = next(replayed)
            self._update(u, ux.to(self.device, non_blocking=True, memory_format=self._memory_format),
                         uy.to(self.device, non_blocking=True))

    def _materialize(self, specs: list[BatchSpec], stream: "Materializer"):
        """(spec, x, y) of this rank's shard of each global batch (the whole batch on one process),
        through ``stream``'s persistent workers (one stream for new batches, one for replays)."""
        return stream([distributed.shard(s, self.dist.rank, self.dist.world_size) for s in specs])

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.channels_last else torch.preserve_format

    def _autocast(self):
        """Mixed precision (``amp``): bf16 or fp16 autocast on the run's device, or nothing."""
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.cfg.amp])

    def _update(self, u: Update, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.on_update is not None:
            self.on_update(self, u, x, y)
        opt = self.optimizers[u.optimizer]
        for group in opt.param_groups:
            group["lr"] = self.lr_at(u.spec.step)
        self.method.begin(u)
        with self._autocast():
            loss, logs = self.method.loss(u.role, x, y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{u.role} loss became {loss.item()} at step {u.spec.step} (epoch {u.spec.epoch}); "
                + (f"the last good checkpoint is {self.ckpt_path}" if self.ckpt_path.exists()
                   else "no checkpoint was written"))
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        distributed.average_gradients((p for g in opt.param_groups for p in g["params"]), self.dist)
        self.scaler.step(opt)
        self.scaler.update()
        distributed.broadcast_buffers(self.method.nets.modules.values(), self.dist)
        self.opt_steps[u.optimizer] += 1
        for k, v in logs.items():
            self._sums[k] += v
            self._counts[k] += 1
        key = loss_key(logs)
        if self._curves is not None:
            self._curves.update(u.role, u.spec.step, logs, key)
        if self._bar is not None:
            self._tick(u.role, logs.get(key))

    def _tick(self, role: str, loss: Optional[float]) -> None:
        """Advance the epoch's bar by one update; show each role's running loss this epoch
        (only roles that have computed one: never a placeholder)."""
        if self._bar.disable:
            return
        if loss is not None:
            acc = self._role_losses.setdefault(role, [0.0, 0])
            acc[0] += loss
            acc[1] += 1
        self._bar.set_postfix_str(" ".join(f"{r}={s / n:.3f}" for r, (s, n)
                                           in self._role_losses.items()), refresh=False)
        self._bar.update(1)

    def _end_epoch(self, epoch: int) -> None:
        keys = sorted(self._sums)                           # the same updates ran on every rank
        totals = distributed.sum_over_ranks([self._sums[k] for k in keys]
                                            + [self._counts[k] for k in keys], self.dist)
        sums, counts = dict(zip(keys, totals[:len(keys)])), dict(zip(keys, totals[len(keys):]))
        row = {"epoch": epoch, "step": self.step,
               "train_loss": sums.get("loss", 0.0) / max(counts.get("loss", 0), 1)}
        if counts.get("teacher_loss"):
            row["teacher_train_loss"] = sums["teacher_loss"] / counts["teacher_loss"]
        row["lr"] = self.lr_at(self.step)                   # the epoch's last step
        with self._autocast():
            row.update(epoch_metrics.test_accuracies(self.method, self.test_set,
                                                     self.cfg.eval_batch_size, self.device,
                                                     self.dist))
            if self.cfg.metrics.bn_recalibrated or epoch == self.total_epochs:
                row.update(epoch_metrics.recalibrated_accuracies(
                    self.method, self.plain_train_set, self.test_set, self.cfg.eval_batch_size,
                    self.device, self.dist))
        row.update({f"{k}_steps": v for k, v in self.opt_steps.items()})
        self.metrics.append(row)
        if self._curves is not None:
            self._curves.epoch(row)
        self._sums.clear()
        self._counts.clear()
        self._save(epoch)
        if self.dist.is_main:
            epoch_metrics.write_metrics_csv(self.out / "metrics.csv", self.metrics)
            ends = [start + n for start, n in zip(self.stage_starts, self.stage_epochs)]
            if self.stages > 1 and epoch in ends:               # a stage ended: keep a copy
                shutil.copyfile(self.ckpt_path, self.out / f"stage-{ends.index(epoch) + 1}.pt")

    # ------------------------------------------------------------------ persistence
    def _record(self) -> dict:
        """config.yaml: the resolved config plus what the run derived from it (the checkpoint
        keeps the same ``_derived`` minus the curve sinks resolved from log.*, which change
        no result)."""
        return {"config": to_plain(self.cfg),
                "derived": {**self._derived(), "tensorboard": self.tensorboard,
                            "wandb": self.wandb}}

    def _derived(self) -> dict:
        return {"batches_per_epoch": self.bpe, "total_steps": self.total_steps,
                "stage_epochs": list(self.stage_epochs),
                "interval_epochs": self.interval_epochs, "interval_steps": self.interval_steps,
                "augmentation": self.augment.describe(), "augment_policy": self.augment_policy,
                "preset": self.cfg.preset,
                "device": str(self.device), "options": self.method.options()}

    def _save(self, epoch: int) -> None:
        nets = self.method.nets
        for name, module in nets.modules.items():
            bad = next((k for k, v in module.state_dict().items()
                        if v.is_floating_point() and not torch.isfinite(v).all()), None)
            if bad is not None:
                raise TrainingDiverged(
                    f"{name} weight {bad} became non-finite by step {self.step} (epoch {epoch}); "
                    "not saved: " + (f"the last good checkpoint is {self.ckpt_path}"
                                     if self.ckpt_path.exists() else "no checkpoint was written"))
        payload = ckpt.plain({
            "format": ckpt.FORMAT, "version": ckpt.VERSION, "method": self.cfg.method,
            "arch": self.cfg.arch, "dataset": self.cfg.dataset, "num_classes": self.num_classes,
            "architectures": self._kept(nets.architectures), "epoch": epoch, "step": self.step,
            "config": to_plain(self.cfg), "metrics": self.metrics, "provenance": self.provenance,
            "state": {**self._derived(), "method": self.method.state_dict(),
                      "replay_steps": list(self.method.replay_steps),
                      "optimizer_steps": dict(self.opt_steps),
                      **self._partial_totals()},
        })
        payload["models"] = self._kept({n: m.state_dict() for n, m in nets.modules.items()})
        payload["optim"] = {n: o.state_dict() for n, o in self.optimizers.items()} \
            if self.cfg.save_optimizer else {}
        if self._curves is not None:        # the curves on disk = the checkpointed history
            self._curves.flush()
        if self.dist.is_main:
            ckpt.save(self.ckpt_path, payload)
        distributed.barrier(self.dist)

    def _partial_totals(self) -> dict:
        """The epoch's running loss sums and counts so far, summed over the ranks."""
        keys = sorted(self._sums)
        totals = distributed.sum_over_ranks([self._sums[k] for k in keys]
                                            + [self._counts[k] for k in keys], self.dist)
        return {"partial_sums": dict(zip(keys, totals[:len(keys)])),
                "partial_counts": {k: int(c) for k, c in zip(keys, totals[len(keys):])}}

    def _kept(self, by_network: dict) -> dict:
        """The entries of the networks the checkpoint keeps (``checkpoint_networks``)."""
        if self.cfg.checkpoint_networks == "all":
            return by_network
        return {n: v for n, v in by_network.items() if n == "student"}

    def _restore(self, raw: dict) -> None:
        check_resumable(self.cfg, raw, self.stages)
        for kind, names in (("models", self.method.nets.modules), ("optim", self.optimizers)):
            lacking = sorted(set(names) - set(raw[kind]))
            if lacking:
                raise FlatkdError(f"--resume: the checkpoint's {kind} lack {', '.join(lacking)} "
                                  f"that {self.cfg.method} trains; it cannot be resumed")
        for n, m in self.method.nets.modules.items():
            m.load_state_dict(raw["models"][n])
        for n, o in self.optimizers.items():
            o.load_state_dict(raw["optim"][n])
        st = raw["state"]
        self.method.load_state_dict({**st["method"], "replay_steps": st["replay_steps"]})
        self.opt_steps = dict(st["optimizer_steps"])
        # the saved totals cover every rank's batches: rank 0 takes them, the others the same
        # keys at zero, so every rank all-reduces lists of one length at the epoch's end
        main = self.dist.is_main
        for k, v in st.get("partial_sums", {}).items():
            self._sums[k] = v if main else 0.0
        for k, v in st.get("partial_counts", {}).items():
            self._counts[k] = v if main else 0
        self.epoch, self.step, self.metrics = raw["epoch"], raw["step"], list(raw["metrics"])
        self.provenance = {**raw["provenance"], "resumed": provenance.collect(seed=self.cfg.seed)}
