"""What the study correlates: measures (each oriented so that larger = sharper) and
generalization targets, extracted from result files.

Results of one network (same checkpoint sha256 and ``--model``) may be spread over several
files — e.g. ``--suite flatness`` run once and ``--suite sharpness`` later — and are merged
section by section (``flatkd.report.results.load_results``); two files holding different contents for the same section
of one network are refused.

Measure families (registry :data:`MEASURES`, each ``fn(result dict) → [(name, value)]``):

* ``hessian``: ``hessian_trace``, ``top_eigenvalue`` (flatness suite);
* ``perturbation``: ``perturbation_loss@σ`` — training loss under Gaussian weight noise, each
  σ > 0 of the curve (flatness suite);
* ``adaptive_sharpness``: ``adaptive_average``, ``adaptive_worst`` (sharpness suite);
* ``pacbayes``: ``pacbayes_inv_sigma_sq`` = 1/σ², ``pacbayes_mag_inv_sigma_sq`` = 1/σ′²
  (sharpness suite; a search that never reached the threshold gives the bound 1/sigma_max²);
* ``layers``: ``layer_trace[group]`` per parameter group (sharpness suite).

Targets (registry :data:`TARGETS`): ``gap`` = train − test accuracy and ``test_accuracy``, from
the sharpness suite's ``generalization`` block (whole splits); without it, test accuracy is the
robustness suite's clean accuracy and train accuracy the flatness suite's σ = 0 accuracy on its
first ``hessian.samples`` training samples — the source is recorded either way, and a study
never mixes the two: when some networks have the sharpness suite's target, only those enter
that target's τ.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..evidence.results import SECTIONS, Result, base_network, load_results
from ..registry import Registry

Extract = Callable[[Mapping[str, Any]], list[tuple[str, float]]]
MEASURES: Registry[Extract] = Registry("measure family")
TARGETS: Registry[Callable[[Mapping[str, Any]], tuple[float, str] | None]] = Registry("target")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@MEASURES.register("hessian")
def _hessian(r: Mapping) -> list[tuple[str, float]]:
    h = (r.get("flatness") or {}).get("hessian") or {}
    out = []
    if _finite((h.get("trace") or {}).get("mean")):
        out.append(("hessian_trace", float(h["trace"]["mean"])))
    if h.get("top_eigenvalues") and _finite(h["top_eigenvalues"][0]):
        out.append(("top_eigenvalue", float(h["top_eigenvalues"][0])))
    return out


@MEASURES.register("perturbation")
def _perturbation(r: Mapping) -> list[tuple[str, float]]:
    rows = (r.get("flatness") or {}).get("perturbation") or []
    return [(f"perturbation_loss@{row['sigma']:g}", float(row["loss_mean"])) for row in rows
            if _finite(row.get("sigma")) and row["sigma"] > 0 and _finite(row.get("loss_mean"))]


@MEASURES.register("adaptive_sharpness")
def _adaptive(r: Mapping) -> list[tuple[str, float]]:
    a = (r.get("sharpness") or {}).get("adaptive") or {}
    return [(f"adaptive_{k}", float(a[k]["value"])) for k in ("average", "worst")
            if _finite((a.get(k) or {}).get("value"))]


@MEASURES.register("pacbayes")
def _pacbayes(r: Mapping) -> list[tuple[str, float]]:
    p = (r.get("sharpness") or {}).get("pacbayes") or {}
    out = []
    for key, name in (("isotropic", "pacbayes_inv_sigma_sq"),
                      ("magnitude_aware", "pacbayes_mag_inv_sigma_sq")):
        v = (p.get(key) or {}).get("inverse_sigma_sq")
        if _finite(v):
            out.append((name, float(v)))
    return out


@MEASURES.register("layers")
def _layers(r: Mapping) -> list[tuple[str, float]]:
    groups = ((r.get("sharpness") or {}).get("layers") or {}).get("groups") or []
    return [(f"layer_trace[{g['name']}]", float(g["trace"]["mean"])) for g in groups
            if _finite((g.get("trace") or {}).get("mean"))]


def _generalization(r: Mapping) -> Mapping:
    return (r.get("sharpness") or {}).get("generalization") or {}


@TARGETS.register("gap")
def _gap(r: Mapping) -> tuple[float, str] | None:
    g = _generalization(r)
    if _finite(g.get("gap")):
        return float(g["gap"]), "whole train split − whole test split"
    test = (r.get("robustness") or {}).get("clean_accuracy")
    rows = [p for p in (r.get("flatness") or {}).get("perturbation") or [] if p.get("sigma") == 0]
    if _finite(test) and rows and _finite(rows[0].get("acc_mean")):
        n = ((r.get("flatness") or {}).get("hessian") or {}).get("n_samples")
        return float(rows[0]["acc_mean"]) - float(test), \
            f"first {n} training samples − whole test split"
    return None


@TARGETS.register("test_accuracy")
def _test(r: Mapping) -> tuple[float, str] | None:
    g = _generalization(r)
    if _finite(g.get("test_accuracy")):
        return float(g["test_accuracy"]), "whole test split (sharpness suite)"
    test = (r.get("robustness") or {}).get("clean_accuracy")
    return (float(test), "whole test split (robustness suite)") if _finite(test) else None


def merge(results: Iterable[Result]) -> list[dict]:
    """One dict per network (results as :func:`~flatkd.report.results.load_results` merges
    them): ``checkpoint``, its sections and ``files`` (the result paths it came from)."""
    return [{"checkpoint": dict(r.checkpoint), "files": [str(f) for f in (r.files or (r.path,))],
             "result": r, **{s: r.data[s] for s in SECTIONS if s in r.data}} for r in results]


def load(paths: Iterable[str | Path]) -> list[dict]:
    """Read result files (a folder stands for every result file below it), one entry per
    network, exactly as ``flatkd report`` reads them."""
    return merge(load_results(paths))


PRIMARY_SOURCES = ("whole train split − whole test split", "whole test split (sharpness suite)")
"""Target sources of the sharpness suite; the others are fallbacks."""


def source_rank(source: str) -> int:
    """0 for a target measured by the sharpness suite, 1 for a fallback."""
    return 0 if source in PRIMARY_SOURCES else 1


def rows(merged: Iterable[Mapping]) -> list[dict]:
    """The study table: one row per network with identity columns, ``hyperparameters``
    {config key: value} (as its result recorded them; empty for older results), ``targets``
    {name: value}, ``target_sources`` and ``measures`` {name: value}."""
    out = []
    for e in merged:
        r: Result = e["result"]
        targets, sources = {}, {}
        for name in TARGETS.names():
            got = TARGETS.get(name)(e)
            if got is not None:
                targets[name], sources[name] = got
        measures: dict[str, float] = {}
        for fam in MEASURE_ORDER:
            for name, value in MEASURES.get(fam)(e):
                measures[name] = value
        ck = e["checkpoint"]
        out.append({"dataset": ck["dataset"], "network": base_network(ck["arch"]),
                    "method": ck["method"], "interval": r.interval, "model": r.model,
                    "seed": r.seed, "label": r.key.label, "sha256": ck.get("sha256"),
                    "hyperparameters": dict(ck.get("hyperparameters") or {}),
                    "files": e["files"], "targets": targets, "target_sources": sources,
                    "measures": measures})
    return out


MEASURE_ORDER = ("hessian", "perturbation", "adaptive_sharpness", "pacbayes", "layers")
"""Display order of the measure families (every registered family appears in it)."""


def family_of(measure: str) -> str:
    """The family a measure name belongs to."""
    prefixes = {"hessian_trace": "hessian", "top_eigenvalue": "hessian",
                "perturbation_loss": "perturbation", "adaptive_": "adaptive_sharpness",
                "pacbayes_": "pacbayes", "layer_trace": "layers"}
    return next((f for p, f in prefixes.items() if measure.startswith(p)), "other")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
