"""Load and validate result files (the JSON written by ``flatkd eval``) and group them
across seeds.

A result file is the JSON written by ``flatkd eval``: ``{"format": "flatkd.result", "version": 1,
"checkpoint": {...}, "flatness": {...}?, "robustness": {...}?, "provenance": {...}}``. Sections that
were not run are absent; this module never fills them in.

Groups are keyed by :class:`GroupKey` ``(dataset, network, method, interval, model)`` — one group
holds the seeds of one configuration. ``network`` is the architecture with a ``byot_`` prefix
removed, so a self-KD multi-exit ResNet-18 sits in the same table row as a plain ResNet-18.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import FlatkdError

RESULT_FORMAT = "flatkd.result"
RESULT_VERSION = 1

#: spaced method → its non-spaced counterpart (the "w/o Ours" column of Tables 1 and 2).
COUNTERPART = {"spaced-online": "online", "spaced-self": "self"}
#: KD family → (baseline "w/o KD", "w/o Ours", "w/ Ours") methods, paper Table 1 / Table 2.
FAMILIES = {
    "online": ("baseline", "online", "spaced-online"),
    "self": ("baseline", "self", "spaced-self"),
}
#: display order of methods in tables and figure legends.
METHOD_ORDER = ("baseline", "offline", "online", "constant-ahead", "spaced-online",
                "self", "spaced-self")

#: spacing as a plug-in (paper Table 4, App. A.3): each method inside online KD ("w/ KD") and
#: inside spaced KD ("w/ Ours"); w/o KD is the baseline, or for DLB / PS-KD the self-distilled
#: network alone. Loss add-ons are named HOST+ADDON (online+lskd). BAN and TAKD pair their
#: spaced cascade with the online cascade (its s = 0 limit), not with the sequential method.
_PLUGINS = {
    "lskd": ("baseline", "online+lskd", "spaced-online+lskd"),
    "ctkd": ("baseline", "online+ctkd", "spaced-online+ctkd"),
    "tsb": ("baseline", "tsb", "spaced-tsb"),
    "dml": ("baseline", "dml", "spaced-dml"),
    "shake": ("baseline", "shake", "spaced-shake"),
    "ban": ("baseline", "online-ban", "spaced-ban"),
    "takd": ("baseline", "online-takd", "spaced-takd"),
    "dlb": ("dlb", "online-dlb", "spaced-dlb"),
    "pskd": ("pskd", "online-pskd", "spaced-pskd"),
}
FAMILIES |= _PLUGINS
COUNTERPART |= {spaced: plain for _, plain, spaced in _PLUGINS.values()}
COUNTERPART |= {"spaced-self+lskd": "self+lskd", "spaced-self+ctkd": "self+ctkd"}
METHOD_ORDER += tuple(m for fam in _PLUGINS.values() for m in fam
                      if m != "baseline") + ("self+lskd", "spaced-self+lskd", "self+ctkd",
                                             "spaced-self+ctkd", "ban", "takd")


@dataclass(frozen=True, order=True)
class GroupKey:
    """One configuration across seeds. ``interval`` is in epochs (None when not spaced)."""

    dataset: str
    network: str
    method: str
    interval: float | None
    model: str

    @property
    def label(self) -> str:
        """Legend label, e.g. ``spaced-online (s=1.5)``; the model is named when it is a teacher."""
        return method_label(self.method, self.interval, self.model)


@dataclass(frozen=True)
class Result:
    """One validated result file."""

    path: Path
    data: Mapping[str, Any] = field(repr=False, compare=False)
    #: every file this network's sections came from (``path`` first); see :func:`load_results`
    files: tuple[Path, ...] = field(default=(), compare=False)

    @property
    def checkpoint(self) -> Mapping[str, Any]:
        return self.data["checkpoint"]

    @property
    def dataset(self) -> str:
        return self.checkpoint["dataset"]

    @property
    def arch(self) -> str:
        return self.checkpoint["arch"]

    @property
    def network(self) -> str:
        return base_network(self.arch)

    @property
    def method(self) -> str:
        return self.checkpoint["method"]

    @property
    def interval(self) -> float | None:
        s = self.checkpoint.get("interval")
        return None if s is None else float(s)

    @property
    def model(self) -> str:
        return self.checkpoint.get("model") or "student"

    @property
    def seed(self) -> int | None:
        s = self.checkpoint.get("seed", self.data.get("provenance", {}).get("seed"))
        return None if s is None else int(s)

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.dataset, self.network, self.method, self.interval, self.model)

    @property
    def flatness(self) -> Mapping[str, Any] | None:
        return self.data.get("flatness")

    @property
    def robustness(self) -> Mapping[str, Any] | None:
        return self.data.get("robustness")

    def checkpoint_file(self) -> Path | None:
        """The checkpoint this result was computed from, if it can be found on disk.

        Tried in order: the recorded path as given (absolute or relative to the working
        directory), relative to the result file's folder and to each folder above it (a path
        recorded relative to the repository root resolves from a notebook too), and its file
        name in the result file's folder (a results folder moved with its checkpoints).
        """
        return self.beside_checkpoint(None)

    def metrics_file(self) -> Path | None:
        """The ``metrics.csv`` of the run folder the checkpoint was in, searched like
        :meth:`checkpoint_file` (a run whose checkpoint was deleted keeps its history)."""
        return self.beside_checkpoint("metrics.csv")

    def beside_checkpoint(self, name: str | None) -> Path | None:
        """File ``name`` of the run folder the checkpoint was in (``None``: the checkpoint
        itself), searched like :meth:`checkpoint_file`; None when not found."""
        recorded = self.checkpoint.get("path")
        if not recorded:
            return None
        p = Path(recorded) if name is None else Path(recorded).parent / name
        here = self.path.resolve().parent
        for cand in (p, *(d / p for d in (here, *here.parents)), here / p.name):
            if cand.is_file():
                return cand
        return None


def base_network(arch: str) -> str:
    """``byot_resnet18`` → ``resnet18``: the backbone a self-KD model is built on."""
    return arch[len("byot_"):] if arch.startswith("byot_") else arch


def method_label(method: str, interval: float | None, model: str = "student") -> str:
    """Human label of a configuration: ``spaced-online (s=1.5)``, ``online [teacher]``."""
    label = method if interval is None else f"{method} (s={fmt_interval(interval)})"
    return label if model == "student" else f"{label} [{model}]"


def fmt_interval(s: float | None) -> str:
    """An interval in epochs as the paper writes it (``1.5``, ``4.0``); ``—`` when not spaced."""
    if s is None or s != s:
        return "—"
    return f"{s:.1f}" if float(s).is_integer() else f"{s:g}"


def method_rank(method: str) -> int:
    """Sort position of a method in tables/legends (unknown methods last)."""
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def sort_keys(keys: Iterable[GroupKey]) -> list[GroupKey]:
    """Keys in paper order: dataset, network, then method order, interval, model."""
    return sorted(keys, key=lambda k: (k.dataset, k.network, method_rank(k.method), k.method,
                                       -1.0 if k.interval is None else k.interval, k.model))


_NUM = (int, float)
_OPT_NUM = (int, float, type(None))


class _Row(dict):
    """A table row's spec: every key is required (a row without its ``epsilon`` cannot be put in
    a BIM table), except those whose type admits None."""


#: the types of the result sections the report reads (object keys optional, row keys required;
#: unknown keys are ignored)
SECTION_TYPES: dict = {
    "flatness": {
        "hessian": {"trace": {"mean": _NUM, "stderr": _OPT_NUM, "n_hvp": int},
                    "top_eigenvalues": [_NUM], "density": {"grid": [_NUM], "values": [_NUM]},
                    "backend": str, "n_samples": int},
        "perturbation": [_Row({"sigma": _NUM, "loss_mean": _NUM, "loss_std": _OPT_NUM,
                               "acc_mean": _NUM, "acc_std": _OPT_NUM,
                               "repeats": (int, type(None))})],
    },
    "robustness": {
        "clean_accuracy": _NUM,
        "corruptions": [_Row({"corruption": str, "severity": int, "accuracy": _NUM})],
        "adversarial": [_Row({"attack": str, "epsilon": _NUM, "accuracy": _NUM})],
    },
    "bn": {"mode": str, "as_saved": {"test_accuracy": _NUM}, "recalibrated": {"test_accuracy": _NUM}},
    "sharpness": {}, "landscape": {}, "provenance": {},
}


def _check_types(value: Any, spec: Any, where: str, source: str) -> None:
    """Raise FlatkdError naming the field unless ``value`` matches ``spec`` (a type or tuple of
    types, a dict of optional keys → spec, or ``[item spec]`` for a list)."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise FlatkdError(f"{source}: {where} must be an object, got {type(value).__name__}")
        for key, sub in spec.items():
            if key in value:
                _check_types(value[key], sub, f"{where}.{key}", source)
            elif isinstance(spec, _Row) and not (isinstance(sub, tuple) and type(None) in sub):
                raise FlatkdError(f"{source}: {where} lacks {key!r}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise FlatkdError(f"{source}: {where} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check_types(item, spec[0], f"{where}[{i}]", source)
    elif not isinstance(value, spec) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in (spec if isinstance(spec, tuple) else (spec,)))
        raise FlatkdError(f"{source}: {where} must be {names}, got {value!r:.60}")


def validate(data: Any, source: str) -> None:
    """Raise :class:`FlatkdError` naming ``source`` unless ``data`` is a flatkd result (format
    and version, checkpoint fields, accuracies as fractions)."""
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise FlatkdError(f"{source}: not a flatkd result file (expected format {RESULT_FORMAT!r})")
    if data.get("version") != RESULT_VERSION:
        raise FlatkdError(f"{source}: unsupported result version {data.get('version')!r}; "
                          f"valid: {RESULT_VERSION}")
    ck = data.get("checkpoint")
    if not isinstance(ck, dict):
        raise FlatkdError(f"{source}: missing 'checkpoint' section")
    missing = [k for k in ("method", "arch", "dataset") if not isinstance(ck.get(k), str)]
    if missing:
        raise FlatkdError(f"{source}: checkpoint section lacks {', '.join(missing)}")
    seed = ck.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FlatkdError(f"{source}: checkpoint.seed must be an integer or null, got {seed!r:.60}")
    interval = ck.get("interval")
    if interval is not None and not (isinstance(interval, (int, float))
                                     and math.isfinite(interval) and interval >= 0):
        raise FlatkdError(f"{source}: checkpoint.interval must be a number ≥ 0 or null, "
                          f"got {interval!r}")
    for section, spec in SECTION_TYPES.items():
        if section in data:
            _check_types(data[section], spec, section, source)
    _check_fractions(data, source)


def _check_fractions(data: Mapping[str, Any], source: str) -> None:
    rob = data.get("robustness") or {}
    values = [("robustness.clean_accuracy", rob.get("clean_accuracy"))]
    values += [(f"corruption {c.get('corruption')}", c.get("accuracy"))
               for c in rob.get("corruptions", [])]
    values += [(f"BIM eps={a.get('epsilon')}", a.get("accuracy")) for a in rob.get("adversarial", [])]
    values += [(f"perturbation sigma={p.get('sigma')}", p.get("acc_mean"))
               for p in (data.get("flatness") or {}).get("perturbation", [])]
    for name, v in values:
        if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
            raise FlatkdError(f"{source}: {name} accuracy must be a fraction in [0, 1], got {v!r}")


def load_result(path: str | Path) -> Result:
    """Read and validate one result JSON file."""
    p = Path(path)
    if not p.is_file():
        raise FlatkdError(f"result file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FlatkdError(f"{p}: not valid JSON ({e})") from None
    except RecursionError:
        raise FlatkdError(f"{p}: nested too deeply to be a result file") from None
    validate(data, str(p))
    return Result(path=p, data=data)


def find_result_files(root: str | Path) -> list[Path]:
    """All ``*.json`` files under ``root`` (recursively) whose ``format`` is a flatkd result.

    Other JSON files (configs, caches) are ignored, so a checkpoints folder can be passed as is.
    A ``*.json`` file that is not valid JSON (a truncated result, say) is refused, naming it:
    leaving it out silently would report fewer networks than the folder holds.
    """
    r = Path(root)
    if not r.is_dir():
        raise FlatkdError(f"results directory not found: {r}")
    found = []
    for p in sorted(r.rglob("*.json")):
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FlatkdError(f"{p} under {r} is not valid JSON ({type(e).__name__}: "
                              f"{str(e)[:80]}): a truncated result? Remove or repair it, or pass "
                              "the result files themselves") from None
        except RecursionError:
            raise FlatkdError(f"{p} under {r} is nested too deeply to be a result file") from None
        if isinstance(data, dict) and data.get("format") == RESULT_FORMAT:
            found.append(p)
    return found


#: result sections that one network's files may split between them (merged by :func:`load_results`)
SECTIONS = ("flatness", "robustness", "sharpness", "landscape")


def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """The result files that ``paths`` name: a file as given, a folder every flatkd result file
    below it (any depth). This is what a *results folder* means for ``flatkd report``, the
    study and the notebooks alike."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files += find_result_files(p) if p.is_dir() else [p]
    if not files:
        raise FlatkdError("no flatkd result files given (expected *.json written by `flatkd eval`)")
    return files


def load_results(paths: Iterable[str | Path]) -> list[Result]:
    """Load the result files of ``paths`` (:func:`result_files`), one :class:`Result` per network.

    Files of one network (the same checkpoint sha256 and evaluated model, e.g. a flatness and a
    sharpness evaluation written separately) are merged: their sections are united and
    ``Result.files`` lists them; a section that two of them hold with different values is
    refused. Two different networks that claim the same configuration and seed are refused,
    naming both files (they would be counted twice in mean ± std).
    """
    merged: dict[tuple, tuple[list[Path], dict]] = {}
    for f in result_files(paths):
        r = load_result(f)
        ident = (r.checkpoint.get("sha256") or str(r.path), r.model)
        files, data = merged.setdefault(ident, ([], {}))
        files.append(r.path)
        for key, value in r.data.items():
            if key in SECTIONS and key in data and data[key] != value:
                raise FlatkdError(f"{r.path}: section {key!r} of {r.method} seed {r.seed} "
                                  f"differs from the one in {files[0]} (the same network); "
                                  "pass one of them")
            data.setdefault(key, value)
    results = [Result(path=files[0], data=data, files=tuple(files))
               for files, data in merged.values()]
    seen: dict[tuple, Path] = {}
    for r in results:
        ident = (r.key, r.seed)
        if r.seed is not None and ident in seen:
            raise FlatkdError(f"{r.path} and {seen[ident]} are two different networks, both "
                              f"{r.key.label} on {r.dataset}/{r.arch} with seed {r.seed}; pass "
                              "the folders of one experiment (e.g. a results/ folder), or one "
                              "of the files")
        seen[ident] = r.path
    return results


def group(results: Iterable[Result]) -> dict[GroupKey, list[Result]]:
    """Results by configuration, keys in paper order, each list sorted by seed."""
    out: dict[GroupKey, list[Result]] = {}
    for r in results:
        out.setdefault(r.key, []).append(r)
    return {k: sorted(out[k], key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
            for k in sort_keys(out)}


def dataset_facts(dataset: str) -> tuple[int | None, int | None]:
    """``(num_classes, test_size)`` of a registered dataset, ``(None, None)`` when only the files
    on disk know them (``imagefolder``) or the name is not registered."""
    from .. import datasets
    try:
        spec = datasets.spec(dataset)
    except FlatkdError:
        return None, None
    return spec.num_classes, spec.test_size


def robustness_constants(results: Iterable[Result]) -> list[str]:
    """The corruption severity constants (``robustness.constants`` in each result's provenance
    settings) of the results that have corruption rows; ``"unrecorded"`` when a result lacks it."""
    found = []
    for r in results:
        if not (r.robustness or {}).get("corruptions"):
            continue
        settings = (r.data.get("provenance") or {}).get("settings") or {}
        found.append(str((settings.get("robustness") or {}).get("constants") or "unrecorded"))
    return sorted(set(found))
