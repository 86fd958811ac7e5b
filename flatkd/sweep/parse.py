"""Reading sweep files (YAML, safe loader; format in :mod:`flatkd.sweep.spec`) into a validated
:class:`~flatkd.sweep.spec.Sweep`: presets by name, ``--set`` overrides, blocks, every key and
value checked with one message naming the valid choices.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping


from .. import config as cfgmod
from ..errors import FlatkdError
from .spec import (AXES, BLOCK_KEYS, DEVICES, EVAL_KEYS, EVAL_PATH_KEYS, MODELS, PATH_KEYS,
                   RESERVED, SLURM_LAUNCHERS, SUITES, TOP_KEYS, TORCHRUN_KEYS, EvalSpec, Run, Sweep,
                   fmt_value, preset_names, presets_dir)


def locate(path_or_name: str | Path) -> Path:
    """A sweep file path, or the name of a shipped preset (``digits-intervals``)."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    if p.suffix == "" and str(path_or_name) in preset_names():
        return Path(str(presets_dir().joinpath(f"{path_or_name}.yaml")))
    if p.exists():
        raise FlatkdError(f"sweep file {p} is not a file")
    raise FlatkdError(f"sweep file not found: {p}; shipped sweeps: {', '.join(preset_names())}")


#: the most runs a sweep may expand to unless ``--max-runs`` says otherwise
MAX_RUNS = 10_000


def load(path_or_name: str | Path, overrides: Mapping[str, str] | None = None,
         out: str | Path | None = None, max_runs: int = MAX_RUNS) -> Sweep:
    """Read, override (``--set key=value`` on the sweep file's keys), validate and expand
    (refused, before expanding, past ``max_runs`` runs)."""
    path = locate(path_or_name)
    data = cfgmod.load_yaml(path)
    for key, value in (overrides or {}).items():
        set_key(data, key, cfgmod.parse_value(value, key) if isinstance(value, str) else value)
    if out is not None:
        data["out"] = str(out)
    return build(data, source=str(path), name_default=path.stem, max_runs=max_runs)


def from_record(record: Mapping[str, Any]) -> Sweep:
    sweep = build(copy.deepcopy(record["data"]), source=record["source"],
                  name_default=Path(record["source"]).stem)
    sweep.out = Path(record["out"])
    return sweep


def set_key(data: dict, key: str, value: Any) -> None:
    """Set a dotted key of a sweep file: ``seeds``, ``train.epochs``, ``eval.suite``,
    ``eval.set.hessian.samples``, ``grid.kd.teacher_init``, ``intervals.spaced-online``,
    ``slurm.timeout_min``. Keys under train, grid, eval.set, slurm and torchrun are kept as
    one dotted key (they are training/evaluation/executor keys)."""
    head, _, rest = key.partition(".")
    if not rest:
        data[key] = value
        return
    if head in ("train", "grid", "slurm", "torchrun", "intervals"):
        section = data.get(head)
        if section is None or head == "intervals" and not isinstance(section, Mapping):
            section = {}
        if not isinstance(section, Mapping):
            raise FlatkdError(f"sweep key {head!r} must be a mapping to set {key!r}")
        section = cfgmod.flatten(section) if head in ("train", "grid", "slurm") else dict(section)
        section[rest] = value
        data[head] = section
    elif head == "eval":
        section = dict(data.get("eval") or {})
        sub, _, rest2 = rest.partition(".")
        if sub == "set" and rest2:
            inner = cfgmod.flatten(section.get("set") or {})
            inner[rest2] = value
            section["set"] = inner
        else:
            section[rest] = value
        data["eval"] = section
    else:
        raise FlatkdError(f"unknown sweep key {key!r}; valid keys: {', '.join(TOP_KEYS)} "
                          "(dotted: train.KEY, grid.KEY, eval.KEY, eval.set.KEY, "
                          "intervals.METHOD, torchrun.KEY, slurm.KEY)")


def _fail(source: str, message: str) -> FlatkdError:
    return FlatkdError(f"sweep file {source}: {message}")


def _as_list(value: Any, key: str, source: str) -> list:
    """An axis: a list, a scalar (one value) or a comma-separated string (``0,1,2``)."""
    if isinstance(value, str) and "," in value:
        value = [cfgmod.parse_value(v.strip(), key) for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        value = [value]
    value = list(value)
    if not value:
        raise _fail(source, f"{key} is empty; give at least one value")
    seen = [v for i, v in enumerate(value) if v in value[:i]]
    if seen:
        raise _fail(source, f"{key} lists {seen[0]!r} twice")
    return value


def _names(value: Any, key: str, valid: list[str], source: str) -> list[str]:
    items = _as_list(value, key, source)
    for v in items:
        if v not in valid:
            raise _fail(source, f"unknown {key[:-1]} {v!r} in {key}; valid choices: "
                        f"{', '.join(valid)}")
    return items


def _mapping(value: Any, key: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(source, f"{key} must be a mapping of keys to values, got {value!r}")
    return dict(value)


def _check_keys(data: Mapping, valid: tuple, where: str, source: str) -> None:
    for k in data:
        if k not in valid:
            raise _fail(source, f"unknown key {k!r}{where}; valid keys: {', '.join(valid)}")


def _train_keys(data: Mapping, key: str, source: str) -> dict:
    """A flat mapping of training keys, checked against the training config's keys."""
    from ..training.config import TrainConfig
    flat = cfgmod.flatten(_mapping(data, key, source))
    valid = cfgmod.valid_keys(TrainConfig())
    for k in flat:
        if k in RESERVED:
            axis = RESERVED[k]
            raise _fail(source, f"{key} sets {k!r}; " + (f"use the {axis} axis instead"
                                                         if axis else "flatkd fills it in"))
        if k not in valid:
            raise _fail(source, f"unknown training key {k!r} in {key}; valid keys: "
                        f"{', '.join(x for x in valid if x not in RESERVED)}")
    return flat


def _interval(v: Any, key: str, source: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise _fail(source, f"{key}: {v!r} is not an interval; valid: finite numbers of "
                    "epochs ≥ 0")
    return float(v)


def _abs_paths(flat: dict, keys: tuple) -> dict:
    return {k: (str(Path(v).expanduser().resolve()) if k in keys and isinstance(v, str) and v
                else v) for k, v in flat.items()}


def build(data: dict, source: str, name_default: str, max_runs: int | None = None) -> Sweep:
    """Validate a sweep mapping and expand it into runs (errors name the valid choices). The
    runs are counted before they are expanded: past ``max_runs`` (None: no limit) the sweep is
    refused, so a mistyped grid cannot fill the memory."""
    from .. import datasets, models
    from ..training import METHODS

    _check_keys(data, TOP_KEYS, "", source)
    name = str(data.get("name") or name_default)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or set(name) == {"."}:
        raise _fail(source, f"name {name!r} may hold only letters, digits, '.', '_' and '-' "
                            "(and not only dots)")
    out = Path(str(data.get("out") or Path("sweeps") / name)).expanduser()

    top_train = _train_keys(data.get("train"), "train", source)
    top_grid = _mapping(data.get("grid"), "grid", source)
    blocks = data.get("blocks")
    if blocks is None:
        blocks = [{}]
    if not isinstance(blocks, list) or not blocks:
        raise _fail(source, "blocks must be a non-empty list of partial sweeps")
    spaced = [m for m in METHODS.names() if METHODS.get(m).default_interval is not None]

    runs: dict[str, Run] = {}
    planned = 0
    axes: dict[str, list] = {}
    for b, block in enumerate(blocks):
        where = f" in blocks[{b}]" if data.get("blocks") is not None else ""
        if not isinstance(block, Mapping):
            raise _fail(source, f"blocks[{b}] must be a mapping")
        _check_keys(block, BLOCK_KEYS, where, source)
        merged = {k: block.get(k, data.get(k)) for k in AXES}
        for k in ("methods", "archs", "datasets"):
            if merged[k] is None:
                raise _fail(source, f"{k} is missing{where}; valid choices: " + ", ".join(
                    {"methods": METHODS.names(), "archs": models.names(),
                     "datasets": datasets.names()}[k]))
        methods = _names(merged["methods"], "methods", METHODS.names(), source)
        archs = _names(merged["archs"], "archs", models.names(), source)
        dsets = _names(merged["datasets"], "datasets", datasets.names(), source)
        seeds = _as_list(0 if merged["seeds"] is None else merged["seeds"], "seeds", source)
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise _fail(source, f"seeds: {s!r} is not a seed; valid: integers ≥ 0")
        explicit = "intervals" in block or data.get("blocks") is None
        per_method = _intervals(merged["intervals"], methods, spaced, where, source, explicit)
        train = {**top_train, **_train_keys(block.get("train"), f"blocks[{b}].train", source)}
        grid_map = {**cfgmod.flatten(top_grid),
                    **cfgmod.flatten(_mapping(block.get("grid"), "grid", source))}
        _train_keys(grid_map, "grid", source)
        grid_axes = {k: _as_list(v, f"grid.{k}", source) for k, v in grid_map.items()}
        train = _abs_paths(train, PATH_KEYS)
        grid_axes = {k: [_abs_paths({k: v}, PATH_KEYS)[k] for v in vs] for k, vs in grid_axes.items()}
        for k, vals in (("methods", methods), ("archs", archs), ("datasets", dsets),
                        ("seeds", seeds), *((f"grid.{k}", v) for k, v in grid_axes.items())):
            axes.setdefault(k, [])
            axes[k] += [v for v in vals if v not in axes[k]]
        for ivals in per_method.values():
            axes.setdefault("intervals", [])
            axes["intervals"] += [v for v in ivals if v not in axes["intervals"]]

        planned += (len(seeds) * len(dsets) * len(archs) * math.prod(map(len, grid_axes.values()))
                    * sum(len(per_method.get(m, [None])) for m in methods))
        if max_runs is not None and planned > max_runs:
            raise _fail(source, f"it expands to {planned:,} runs or more, past the limit of "
                                f"{max_runs:,}; narrow the axes, or raise it with --max-runs")
        combos = [dict(zip(grid_axes, vals)) for vals in itertools.product(*grid_axes.values())]
        for seed, dataset, arch, combo, method in itertools.product(seeds, dsets, archs, combos,
                                                                    methods):
            for interval in per_method.get(method, [None]):
                name_ = "_".join([method, arch, dataset]
                                 + ([f"s{fmt_value(interval)}"] if interval is not None else [])
                                 + [f"{k}-{fmt_value(v)}" for k, v in combo.items()]
                                 + [f"seed{seed}"])
                run = Run(name_, method, arch, dataset, seed, interval, dict(combo), dict(train))
                if name_ in runs:
                    if runs[name_] != run:
                        raise _fail(source, f"two different runs would both be named {name_} "
                                    f"(interval {runs[name_].interval} vs {run.interval}, "
                                    "training keys "
                                    f"{'equal' if runs[name_].overrides() == run.overrides() else 'differ'}"
                                    "); give one of them a grid axis that tells them apart")
                    continue
                runs[name_] = run
    for run in runs.values():
        _check_run(run, source)
    ev = _eval(data.get("eval"), source)
    torchrun = _mapping(data.get("torchrun"), "torchrun", source)
    _check_keys(torchrun, TORCHRUN_KEYS, " in torchrun", source)
    n = torchrun.get("nproc_per_node")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise _fail(source, f"torchrun.nproc_per_node: {n!r} is not valid; valid: integers ≥ 1")
    if not isinstance(torchrun.get("eval", False), bool):
        raise _fail(source, "torchrun.eval must be true or false")
    slurm = cfgmod.flatten(_mapping(data.get("slurm"), "slurm", source))
    slurm = {k: v for k, v in slurm.items()}
    if slurm.get("launcher", "local") not in SLURM_LAUNCHERS:
        raise _fail(source, f"slurm.launcher: {slurm['launcher']!r} is not valid; valid "
                    f"choices: {', '.join(SLURM_LAUNCHERS)}")
    check_slurm_parameters(slurm, source)
    return Sweep(name, out, list(runs.values()), ev, torchrun, slurm, source, data, axes)


def _intervals(value: Any, methods: list[str], spaced: list[str], where: str,
               source: str, explicit: bool = True) -> dict[str, list[float]]:
    """method → intervals for the spaced methods of a block (absent: the method's default).
    Intervals a block inherits from the top level may find no spaced method there (a block of
    references); intervals given for a block without one are an error."""
    here = [m for m in methods if m in spaced]
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = {}
        for m, vals in value.items():
            if m not in spaced:
                raise _fail(source, f"intervals.{m}: {m!r} is not a spaced method; valid "
                            f"choices: {', '.join(spaced)}")
            if m in here:
                out[m] = [_interval(v, f"intervals.{m}", source)
                          for v in _as_list(vals, f"intervals.{m}", source)]
        if not out and explicit:
            raise _fail(source, f"intervals{where} names no method of methods "
                        f"({', '.join(methods)})")
        return out
    vals = [_interval(v, "intervals", source) for v in _as_list(value, "intervals", source)]
    if len(set(vals)) != len(vals):
        raise _fail(source, "intervals lists an interval twice")
    if not here and explicit:
        raise _fail(source, f"intervals{where} apply to spaced methods only "
                    f"({', '.join(spaced)}), and methods has none; drop intervals "
                    "(--set intervals=null)")
    return {m: vals for m in here}


def _check_run(run: Run, source: str) -> None:
    """Resolve the run's config and check what can be checked before any work: key values,
    a teacher checkpoint that is not there or that the method would ignore, a batch larger
    than the training split and an interval covering the whole run."""
    from .. import datasets
    from ..training import METHODS
    from ..training.batches import batches_per_epoch
    from ..training.loop import interval_steps
    try:
        cfg = run.config()
    except FlatkdError as e:
        raise _fail(source, f"run {run.name}: {e}") from None
    if cfg.teacher_ckpt is not None:
        if not METHODS.get(cfg.method).takes_teacher_ckpt:
            raise _fail(source, f"run {run.name}: {cfg.method} does not distil from a pretrained "
                        "teacher, so teacher_ckpt would be ignored; give it to the methods "
                        "that take one (a block of their own)")
        if not Path(cfg.teacher_ckpt).expanduser().is_file():
            raise _fail(source, f"run {run.name}: teacher_ckpt {cfg.teacher_ckpt} not found")
    n = cfg.train_subset or datasets.spec(cfg.dataset).train_size
    if n is None:
        return
    if cfg.batch_size > n:
        raise _fail(source, f"run {run.name}: batch_size={cfg.batch_size} exceeds the {n} "
                    "training samples")
    bpe = batches_per_epoch(n, cfg.batch_size)
    if run.interval is not None and cfg.spaced.leftover == "drop" \
            and interval_steps(run.interval, bpe) >= bpe * cfg.epochs:
        raise _fail(source, f"run {run.name}: interval {run.interval:g} epochs covers the whole "
                    f"run ({cfg.epochs} epochs); choose intervals below the epoch count or set "
                    "train.spaced.leftover: distil")


def _eval(value: Any, source: str) -> EvalSpec:
    ev = _mapping(value, "eval", source)
    _check_keys(ev, EVAL_KEYS, " in eval", source)
    suite = ev.get("suite", "none")
    if suite not in SUITES:
        raise _fail(source, f"eval.suite: {suite!r} is not valid; valid choices: "
                    f"{', '.join(SUITES)}")
    models = _as_list(ev.get("models", ["student"]), "eval.models", source)
    for m in models:
        if m not in MODELS:
            raise _fail(source, f"eval.models: {m!r} is not valid; valid choices: "
                        f"{', '.join(MODELS)}")
    device = ev.get("device", "auto")
    if device not in DEVICES:
        raise _fail(source, f"eval.device: {device!r} is not valid; valid choices: "
                    f"{', '.join(DEVICES)}")
    config = ev.get("config")
    if config is not None:
        config = str(_eval_config_path(str(config), source))
    sets = _abs_paths(cfgmod.flatten(_mapping(ev.get("set"), "eval.set", source)), EVAL_PATH_KEYS)
    spec = EvalSpec(suite, models, config, sets, device)
    if suite != "none":
        from ..evaluator import _validators, suite_names
        try:
            cfg = spec.resolved()
            for s in suite_names(suite):
                for check in _validators(cfg).get(s, []):
                    check()
        except FlatkdError as e:
            raise _fail(source, f"eval: {e}") from None
    return spec


def _eval_config_path(config: str, source: str) -> Path:
    """A YAML file (relative to the working directory, else to the sweep file), or the name of
    a preset under flatkd/presets (``eval-quick``)."""
    p = Path(config).expanduser()
    for cand in (p, Path(source).parent / p):
        if cand.is_file():
            return cand.resolve()
    shipped = resources.files("flatkd.presets").joinpath(f"{config}.yaml")
    if "/" not in config and shipped.is_file():
        return Path(str(shipped))
    names = sorted(x.name[:-5] for x in resources.files("flatkd.presets").iterdir()
                   if x.name.startswith("eval") and x.name.endswith(".yaml"))
    raise _fail(source, f"eval.config: {config} is neither a file nor a preset; presets: "
                f"{', '.join(names)}")


#: count parameters of the slurm executor → their least valid value (submitit takes any int)
SLURM_COUNTS = {"gpus_per_node": 0, "cpus_per_task": 1, "nodes": 1, "tasks_per_node": 1,
                "timeout_min": 1, "slurm_array_parallelism": 1}


def check_slurm_parameters(params: Mapping[str, Any], source: str) -> None:
    """Check executor parameters the way submitit will (without a cluster): generic names
    (timeout_min, gpus_per_node, cpus_per_task, mem_gb, nodes, tasks_per_node, name, ...) with
    their types, and ``slurm_``-prefixed sbatch options."""
    rest = {k: v for k, v in params.items() if k != "launcher"}
    if not rest:
        return
    for key, value in rest.items():
        if isinstance(value, str) and any(c in value for c in "\n\r\0"):
            raise FlatkdError(f"sweep file {source}: slurm.{key}: {value!r} holds a line break "
                              "or NUL, which would end the #SBATCH line and start another")
        if key in SLURM_COUNTS and not (isinstance(value, int) and not isinstance(value, bool)
                                        and value >= SLURM_COUNTS[key]):
            raise FlatkdError(f"sweep file {source}: slurm.{key} must be an integer ≥ "
                              f"{SLURM_COUNTS[key]}, got {value!r}")
    import tempfile

    import submitit
    try:
        with tempfile.TemporaryDirectory() as tmp:
            submitit.AutoExecutor(folder=tmp, cluster="debug").update_parameters(**rest)
    except (NameError, AssertionError, ValueError, TypeError) as e:
        generic = ", ".join(sorted(submitit.AutoExecutor._valid_parameters()))
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FlatkdError(f"sweep file {source}: slurm: {first}; valid keys: launcher, {generic}, "
                          "or slurm_<sbatch option> (e.g. slurm_partition, "
                          "slurm_array_parallelism)") from None
