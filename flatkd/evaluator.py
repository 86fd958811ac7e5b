"""``flatkd.evaluate(path, suite)``: run evaluation suites on a checkpoint → result dict (the result format: README, "Evaluation").

Suites are registered (``SUITES``); ``all`` runs every registered suite. Settings are an
:class:`EvalConfig` (defaults, then a YAML file, then ``--set`` overrides). The result is
deterministic for a given seed: no timings or timestamps anywhere in it.

Under torchrun the process joins the group (:mod:`flatkd.training.distributed`): the flatness
and robustness suites split their samples over the ranks and sum over them (the robustness
section is byte-identical to one process, the Hessian equal up to float summation order); the
sharpness and landscape suites run whole on every rank. Rank 0 alone writes the result file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from . import config as cfgmod
from . import datasets, provenance
from .checkpoint import Checkpoint, load_checkpoint
from .errors import FlatkdError, did_you_mean
from .flatness.config import HessianConfig, PerturbationConfig
from .io import writable_target, write_json
from .landscape.config import LandscapeConfig
from .registry import Registry
from .robustness.config import RobustnessConfig
from .sharpness.config import LayersConfig, PacBayesConfig, SharpnessConfig
from .training import distributed
from .training.config import STUDY_HYPERPARAMETERS
from .training.loop import resolve_device

RESULT_FORMAT, RESULT_VERSION = "flatkd.result", 1


@dataclass
class EvalConfig:
    """Settings of flatkd eval (a YAML file, then --set key=value).

    seed: seed of every random draw of the evaluation (probes, noise, corruptions) (default 0).
    batch_size: evaluation batch size (default 256); under torchrun each rank runs whole batches
        of this size.
    data_root: folder holding the dataset files; unset: the one recorded in the checkpoint.
    cache_dir: cache of corrupted test sets; unset: $FLATKD_CACHE or ~/.cache/flatkd.
    bn: BatchNorm statistics every suite measures with: recalibrate (default: on a copy of the
        network, reset every BatchNorm's running statistics and re-estimate them as a
        cumulative average over the first bn_samples un-augmented training images, no gradient
        — statistics that match the weights) or as-saved (the checkpoint's running statistics,
        an average over earlier weights). The checkpoint file is never changed; the result's
        bn section gives test accuracy and eval-mode train loss before and after.
    bn_samples: training images of the recalibration, taken in order from the start of the
        un-augmented train split, in batches of batch_size (default 50000: the whole split of
        CIFAR; digits has 1,437).
    """
    seed: int = 0
    batch_size: int = 256
    bn: str = "recalibrate"
    bn_samples: int = 50000
    data_root: Optional[str] = None
    cache_dir: Optional[str] = None      # corrupted test sets; default $FLATKD_CACHE or ~/.cache/flatkd
    hessian: HessianConfig = field(default_factory=HessianConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    sharpness: SharpnessConfig = field(default_factory=SharpnessConfig)
    pacbayes: PacBayesConfig = field(default_factory=PacBayesConfig)
    layers: LayersConfig = field(default_factory=LayersConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)


@dataclass
class EvalContext:
    """What a suite gets: the network, the checkpoint, settings, device and data access."""
    model: torch.nn.Module
    checkpoint: Checkpoint
    cfg: EvalConfig
    device: torch.device
    progress: bool
    model_name: str = "student"
    dist: distributed.DistContext = distributed.DistContext()

    def dataset(self, split: str):
        root = self.cfg.data_root or self.checkpoint.config.get("data_root")
        return datasets.get(self.checkpoint.dataset, split, root=root)

    def trained_on(self):
        """The training data of the run: the train split reduced to the checkpoint's
        ``train_fraction`` by the run's own seeded, class-stratified draw (the whole split when
        the run used all of it). The generalization gap and the measures meant to predict it
        (the sharpness suite) are taken on it, as Jiang et al. (2020) take them on the training
        set; BatchNorm recalibration and the flatness suite use the whole train split."""
        train = self.dataset("train")
        fraction = self.checkpoint.config.get("train_fraction")
        if fraction is None or float(fraction) >= 1:
            return train
        return datasets.stratified_fraction(train, float(fraction),
                                            int(self.checkpoint.config.get("seed", 0)))

    def same_statistics(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` (another network the suites compare with, e.g. a landscape path partner)
        with the BatchNorm treatment of the evaluated network (``cfg.bn``); returned."""
        if self.cfg.bn == "recalibrate":
            from .batchnorm import recalibrate
            recalibrate(net, self.dataset("train"), samples=self.cfg.bn_samples,
                        batch_size=self.cfg.batch_size, device=self.device, dist=self.dist)
        return net

    @property
    def cache_dir(self) -> Path:
        base = self.cfg.cache_dir or os.environ.get("FLATKD_CACHE") or Path.home() / ".cache" / "flatkd"
        return Path(base) / "corruptions"


Suite = Callable[[EvalContext], dict]
SUITES: Registry[Suite] = Registry("suite")
SUITE_CHOICES = ("flatness", "robustness", "sharpness", "landscape", "all")


@SUITES.register("flatness")
def _flatness(ctx: EvalContext) -> dict:
    from .flatness.suite import run_flatness
    return run_flatness(ctx.model, ctx.dataset("train"), ctx.cfg.hessian, ctx.cfg.perturbation,
                        seed=ctx.cfg.seed, device=ctx.device, batch_size=ctx.cfg.batch_size,
                        progress=ctx.progress, dist=ctx.dist)


@SUITES.register("robustness")
def _robustness(ctx: EvalContext) -> dict:
    from .robustness.suite import run_robustness
    return run_robustness(ctx.model, ctx.dataset("test"), dataset_name=ctx.checkpoint.dataset,
                          cfg=ctx.cfg.robustness, seed=ctx.cfg.seed, device=ctx.device,
                          batch_size=ctx.cfg.batch_size, progress=ctx.progress,
                          cache_dir=ctx.cache_dir,
                          data_root=ctx.cfg.data_root or ctx.checkpoint.config.get("data_root"),
                          dist=ctx.dist)


@SUITES.register("sharpness")
def _sharpness(ctx: EvalContext) -> dict:
    from .sharpness.suite import run_sharpness
    return run_sharpness(ctx.model, ctx.trained_on(), ctx.dataset("test"),
                         sharpness=ctx.cfg.sharpness, pacbayes=ctx.cfg.pacbayes,
                         layers=ctx.cfg.layers, seed=ctx.cfg.seed, device=ctx.device,
                         batch_size=ctx.cfg.batch_size, progress=ctx.progress)


@SUITES.register("landscape")
def _landscape(ctx: EvalContext) -> dict:
    from .landscape.suite import run_landscape
    return run_landscape(ctx.model, ctx.dataset("train"), ctx.cfg.landscape, seed=ctx.cfg.seed,
                         device=ctx.device, batch_size=ctx.cfg.batch_size,
                         progress=ctx.progress, model_name=ctx.model_name,
                         prepare=ctx.same_statistics)


def _validators(cfg: EvalConfig) -> dict[str, list[Callable[[], None]]]:
    return {"flatness": [cfg.hessian.validate, cfg.perturbation.validate],
            "robustness": [cfg.robustness.validate],
            "sharpness": [cfg.sharpness.validate, cfg.pacbayes.validate, cfg.layers.validate],
            "landscape": [cfg.landscape.validate]}


BN_MODES = ("recalibrate", "as-saved")


def _preflight(cfg: EvalConfig, ck: Checkpoint, model: str, names: list[str]) -> None:
    """Check the inputs that suites read from disk, before any suite runs (a bad one found by
    the third suite would otherwise waste the first two): the published corruption folder and
    its files, and the landscape path partner (a readable checkpoint of finite weights with
    network ``model``)."""
    if "robustness" in names and cfg.robustness.source == "published":
        from .robustness import published as pub
        root = cfg.data_root or ck.config.get("data_root")
        folder = pub.folder(ck.dataset, root, cfg.robustness.published_dir)
        test = datasets.get(ck.dataset, "test", root=root)
        pub.check(folder, pub.resolve(cfg.robustness.corruptions, folder), test.targets,
                  test.spec.image_size)
    path_to = cfg.landscape.path_to
    if "landscape" in names and path_to is not None:
        partner = load_checkpoint(path_to)
        if model not in partner.model_names:
            raise FlatkdError(f"landscape.path_to={path_to} has no network {model!r}; valid "
                              f"choices there: {', '.join(partner.model_names)}")
        bad = partner.non_finite_tensor(model)
        if bad is not None:
            raise FlatkdError(f"landscape.path_to={path_to}: network {model!r} has non-finite "
                              f"weights ({bad} holds NaN or Inf); refusing to measure a path to it")


def _validate_common(cfg: EvalConfig) -> None:
    if cfg.bn not in BN_MODES:
        raise FlatkdError(f"bn: {cfg.bn!r} is not valid; valid choices: {', '.join(BN_MODES)}"
                          + did_you_mean(cfg.bn, list(BN_MODES)))
    for key in ("bn_samples", "batch_size"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FlatkdError(f"{key} must be an integer ≥ 1, got {value!r}")


def _batchnorm(ctx: "EvalContext") -> dict:
    """Recalibrate ``ctx.model``'s BatchNorm statistics (``cfg.bn``) and describe what changed:
    clean test accuracy and eval-mode train loss on the recalibration sample, as saved and
    after. Runs before every suite, so all of them measure the same network."""
    from . import batchnorm as BN
    cfg = ctx.cfg
    if cfg.bn == "as-saved":
        return {"mode": "as-saved"}
    if not BN.bn_layers(ctx.model):
        return {"mode": "none", "note": "no BatchNorm layer with running statistics: nothing "
                "to recalibrate"}
    train, test = ctx.dataset("train"), ctx.dataset("test")
    n = min(cfg.bn_samples, len(train))

    def measured() -> dict:
        acc, _ = BN.accuracy_and_loss(ctx.model, test, len(test), cfg.batch_size, ctx.device,
                                      ctx.dist)
        train_acc, loss = BN.accuracy_and_loss(ctx.model, train, n, cfg.batch_size, ctx.device,
                                               ctx.dist)
        return {"test_accuracy": acc, "train_loss": loss, "train_accuracy": train_acc}

    before = measured()
    ctx.same_statistics(ctx.model)
    return {"mode": "recalibrate", "samples": n, "batch_size": cfg.batch_size,
            "layers": len(BN.bn_layers(ctx.model)), "as_saved": before, "recalibrated": measured()}


def suite_names(suite: str) -> list[str]:
    """The suites ``suite`` names: one name, a comma-separated list (``flatness,robustness``,
    run in registry order) or ``all`` (every registered suite)."""
    if suite == "all":
        return SUITES.names()
    asked = [s.strip() for s in str(suite).split(",")]
    for s in asked:
        if s not in SUITES:
            raise FlatkdError(f"unknown suite {s!r}; valid choices: {', '.join(SUITE_CHOICES)} "
                              "(or a comma-separated list of suites)")
    return [s for s in SUITES.names() if s in asked]


def resolve_config(config_file: str | None = None, overrides: dict | None = None) -> EvalConfig:
    cfg = EvalConfig()
    if config_file:
        cfgmod.apply_file(cfg, config_file)
    cfgmod.apply_overrides(cfg, overrides or {})
    return cfg


def evaluate(path: str | Path, suite: str = "all", *, model: str = "student",
             overrides: dict | None = None, config_file: str | None = None,
             out: str | Path | None = None, device: str = "auto", progress: bool = False) -> dict:
    """Evaluate network ``model`` of checkpoint ``path``; return (and write to ``out``) the result.

    All input errors (bad checkpoint, unknown suite/model/setting) are raised as
    :class:`FlatkdError` before any suite runs, and nothing is written on error. Under torchrun
    every rank returns the result and rank 0 writes it.
    """
    ck = load_checkpoint(path)
    names = suite_names(suite)
    if out is not None:
        writable_target(out, "result file")
    cfg = resolve_config(config_file, overrides)
    _validate_common(cfg)
    for name in names:
        for check in _validators(cfg).get(name, []):
            check()
    _preflight(cfg, ck, model, names)
    dev = resolve_device(device)
    dist = distributed.setup(dev.type)
    dev = dist.place(dev)
    net = ck.build_model(model).to(dev)
    bad = ck.non_finite_tensor(model)
    if bad is not None:
        raise FlatkdError(f"{path}: network {model!r} has non-finite weights ({bad} holds NaN or Inf); "
                          "refusing to evaluate it")
    ctx = EvalContext(net, ck, cfg, dev, progress and dist.is_main, model_name=model, dist=dist)
    result = {
        "format": RESULT_FORMAT, "version": RESULT_VERSION,
        "checkpoint": {"path": str(path), "sha256": ck.sha256, "method": ck.method, "arch": ck.arch,
                       "dataset": ck.dataset, "model": model, "seed": ck.config.get("seed"),
                       "interval": ck.raw.get("state", {}).get("interval_epochs"),
                       "epochs": ck.epoch, "hyperparameters": _hyperparameters(ck)},
    }
    result["bn"] = _batchnorm(ctx)
    for name in names:
        result[name] = SUITES.get(name)(ctx)
    prov = provenance.collect(seed=cfg.seed, settings=cfgmod.to_plain(cfg), suites=names,
                              device=str(ctx.device))
    for volatile in ("created_utc", "command"):        # same seed → identical JSON
        prov.pop(volatile)
    result["provenance"] = prov
    if out is not None and dist.is_main:
        write_json(out, result)
    return result


def _hyperparameters(ck: Checkpoint) -> dict:
    """The checkpoint's resolved value of every study hyper-parameter
    (:data:`~flatkd.training.config.STUDY_HYPERPARAMETERS`; None where its config lacks one)."""
    flat = cfgmod.flatten(ck.config)
    return {key: flat.get(key) for key in STUDY_HYPERPARAMETERS}

