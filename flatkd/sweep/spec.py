"""Sweep files: methods × archs × datasets × intervals × seeds × any training key → named runs.

A sweep file is YAML (safe loader)::

    name: digits-intervals            # default: the file name without .yaml
    out: sweeps/digits-intervals      # default: sweeps/<name> (relative to the working directory)
    methods: [baseline, online, spaced-online]
    archs: [resnet8]
    datasets: [digits]
    intervals: [0.5, 1.0, 2.0]        # epochs, for the spaced methods only; or per method:
                                      #   {spaced-online: [0.5, 1.5], spaced-self: [1, 4]}
    seeds: [0, 1, 2]                  # default [0]
    grid:                             # more axes: any training key → list of values
      kd.teacher_init: [independent, same]
    train:                            # training keys for every run (as flatkd train --set)
      epochs: 6
    eval:
      suite: robustness               # flatness | robustness | all | none
      models: [student]               # student and/or teacher (where the run has one)
      config: eval-quick              # a preset name (flatkd/presets/) or a YAML file
      set: {robustness.corruptions: [brightness]}
      device: auto
    blocks:                           # optional: partial sweeps whose runs are united; each
      - methods: [online]             #   block takes the top-level keys as defaults (train and
      - methods: [spaced-online]      #   grid are merged, block keys win)
        intervals: [1.5]
    torchrun: {nproc_per_node: 2, eval: false}
    slurm:                            # submitit AutoExecutor parameters, plus `launcher`
      timeout_min: 600
      gpus_per_node: 1
      slurm_partition: gpu
      slurm_array_parallelism: 16
      launcher: local                 # how a job runs its run: local or torchrun

Run names are stable: ``<method>_<arch>_<dataset>[_s<interval>][_<key>-<value>...]_seed<seed>``,
so adding a value to an axis never renames a run that exists.

This module holds the format's vocabulary and the validated types (:class:`Run`,
:class:`EvalSpec`, :class:`Sweep`); :mod:`flatkd.sweep.parse` reads and validates the files.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import FlatkdError

AXES = ("methods", "archs", "datasets", "intervals", "seeds")
BLOCK_KEYS = (*AXES, "grid", "train")
TOP_KEYS = ("name", "out", *BLOCK_KEYS, "eval", "blocks", "torchrun", "slurm")
EVAL_KEYS = ("suite", "models", "config", "set", "device")
TORCHRUN_KEYS = ("nproc_per_node", "eval")
SUITES = ("flatness", "robustness", "all", "none")
MODELS = ("student", "teacher")
DEVICES = ("auto", "cpu", "cuda")
SLURM_LAUNCHERS = ("local", "torchrun")
#: training keys a sweep sets through its axes (or that flatkd fills in), never through train/grid
RESERVED = {"method": "methods", "arch": "archs", "dataset": "datasets", "seed": "seeds",
            "spaced.interval": "intervals", "preset": None}
#: training keys holding paths: made absolute, so evaluation (run from the sweep folder) finds them
PATH_KEYS = ("data_root",)
EVAL_PATH_KEYS = ("data_root", "cache_dir")


def presets_dir():
    """The folder of the sweep files shipped with flatkd."""
    return resources.files("flatkd.presets").joinpath("sweeps")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in presets_dir().iterdir() if p.name.endswith(".yaml"))


def fmt_value(v: Any) -> str:
    """A value as it appears in a run name (numbers without trailing zeros, unset → none)."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):          # short, unless that would name two values alike
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    if isinstance(v, (list, tuple)):
        return "+".join(fmt_value(x) for x in v)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(v)).strip("-") or "empty"


@dataclass
class Run:
    """One training run of a sweep (and the evaluations of its checkpoint)."""

    name: str
    method: str
    arch: str
    dataset: str
    seed: int
    interval: float | None
    grid: dict[str, Any] = field(default_factory=dict)      # this run's values of the extra axes
    train: dict[str, Any] = field(default_factory=dict)     # fixed training keys

    def overrides(self) -> dict[str, Any]:
        """Training keys other than method/arch/dataset/seed/interval (flat, dotted)."""
        return {**self.train, **self.grid}

    def config(self):
        """The resolved :class:`~flatkd.training.config.TrainConfig` (validated)."""
        from ..training import resolve
        return resolve(self.method, self.arch, self.dataset, seed=self.seed,
                       interval=self.interval, overrides=copy.deepcopy(self.overrides()))


@dataclass
class EvalSpec:
    suite: str = "none"
    models: list[str] = field(default_factory=lambda: ["student"])
    config: str | None = None            # the YAML file applied first (absolute path)
    set: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def resolved(self):
        """The evaluation config every result of the sweep is computed with."""
        from ..evaluator import resolve_config
        return resolve_config(self.config, copy.deepcopy(self.set))

    def result_name(self, run: Run, model: str) -> str:
        return f"{run.name}.json" if model == "student" else f"{run.name}.{model}.json"


@dataclass
class Sweep:
    """A validated sweep: its runs in order, the evaluation, launcher settings."""

    name: str
    out: Path
    runs: list[Run]
    eval: EvalSpec
    torchrun: dict[str, Any]
    slurm: dict[str, Any]
    source: str
    data: dict[str, Any]                 # the sweep file after --set overrides (recorded)
    axes: dict[str, list] = field(default_factory=dict)   # for the plan's summary line

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name:
                return r
        raise FlatkdError(f"sweep {self.name}: no run named {name!r}")

    def record(self) -> dict:
        """Plain data from which :func:`flatkd.sweep.parse.from_record` rebuilds this sweep (SLURM jobs)."""
        return {"data": copy.deepcopy(self.data), "source": self.source, "out": str(self.out)}

    # paths ---------------------------------------------------------------
    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.name

    def result_path(self, run: Run, model: str) -> Path:
        return self.out / "results" / self.eval.result_name(run, model)
