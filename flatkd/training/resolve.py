"""Resolving one run's configuration: the dataclass defaults, the dataset preset, the
architecture's recipe, the user's YAML file, CLI flags and ``--set`` overrides, in that order;
schedule lengths of the recipe rescaled to a run of another length."""
from __future__ import annotations

import functools
import math
from importlib import resources

import yaml

from .. import config as cfgmod
from .. import models
from ..errors import FlatkdError, warn
from .config import TrainConfig
from .methods import METHODS


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("flatkd.presets").iterdir()
                  if p.name.endswith(".yaml"))


def resolve(method: str, arch: str | None, dataset: str | None, *, config_file: str | None = None,
            overrides: dict | None = None, **cli) -> TrainConfig:
    """defaults (the dataclasses', then the method's ``config_defaults``) → dataset preset →
    the architecture's recipe preset (``presets/recipes/``, e.g.
    the paper's ViT recipe) → YAML file → CLI flags (non-None) → ``--set`` overrides.

    ``arch`` / ``dataset`` None: taken from the YAML file (the paper presets set both)."""
    if config_file and (arch is None or dataset is None):
        given = cfgmod.load_yaml(config_file)
        arch, dataset = arch or given.get("arch"), dataset or given.get("dataset")
    if arch is None or dataset is None:
        raise FlatkdError("name the architecture and the dataset (--arch, --dataset) or use a "
                          "--config file that sets arch and dataset")
    cfg = TrainConfig(method=method, arch=arch, dataset=dataset)
    if method in METHODS.names():                 # an unknown name is refused by validate()
        cfgmod.apply_overrides(cfg, METHODS.get(method).config_defaults)
    applied = []
    if dataset in preset_names():
        text = resources.files("flatkd.presets").joinpath(f"{dataset}.yaml").read_text()
        cfgmod.apply_overrides(cfg, cfgmod.flatten(yaml.safe_load(text) or {}))
        applied.append(f"{dataset}.yaml")
    recipe = models.recipe(arch)
    if recipe is not None:
        text = resources.files("flatkd.presets").joinpath("recipes", f"{recipe}.yaml").read_text()
        cfgmod.apply_overrides(cfg, cfgmod.flatten(yaml.safe_load(text) or {}))
        applied.append(f"recipes/{recipe}.yaml")
    cfg.preset = " + ".join(applied) or None
    if config_file:
        cfgmod.apply_file(cfg, config_file)
    recipe_epochs = cfg.epochs
    recipe_values = {key: functools.reduce(getattr, key.split("."), cfg) for key in RUN_LENGTH_KEYS}
    flags = {k: v for k, v in cli.items() if v is not None}
    if "interval" in flags:
        flags["spaced.interval"] = flags.pop("interval")
    cfgmod.apply_overrides(cfg, flags)
    cfgmod.apply_overrides(cfg, overrides or {})
    cfg.method, cfg.arch, cfg.dataset = method, arch, dataset
    _scale_to_run_length(cfg, recipe_epochs, recipe_values, set(overrides or {}))
    cfg.validate()
    return cfg


#: schedule lengths given in epochs of the recipe's run: a run of another length keeps the same
#: fraction of its own epochs unless the key itself is set with --set
RUN_LENGTH_KEYS = ("optim.warmup_epochs",)


def _scale_to_run_length(cfg: TrainConfig, recipe_epochs: int, recipe_values: dict,
                         user_keys: set) -> None:
    """Rescale :data:`RUN_LENGTH_KEYS` when ``--epochs`` / ``--set epochs`` changed the run
    length of the presets and config file (e.g. the ViT recipe's 20 warm-up epochs of 300 become
    0.067 of a 1-epoch run); the scaled keys are recorded in ``cfg.scaled`` and named in one
    warning line."""
    if cfg.epochs == recipe_epochs or not isinstance(cfg.epochs, int) or cfg.epochs < 1:
        return
    notes = []
    for key in RUN_LENGTH_KEYS:
        value = recipe_values[key]
        if key in user_keys or not isinstance(value, (int, float)) or not value > 0 \
                or not math.isfinite(value):
            continue
        scaled = value * cfg.epochs / recipe_epochs
        cfgmod.apply_overrides(cfg, {key: scaled})
        notes.append(f"{key} {value:g} of {recipe_epochs} epochs → {scaled:.4g} of {cfg.epochs}")
    if notes:
        cfg.scaled = "; ".join(notes)
        warn(f"{cfg.scaled} (the same fraction of the run; set the key with --set to keep "
             "another value)")

