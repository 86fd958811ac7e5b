"""What a comparison reads from a result: scalar metrics (:data:`METRICS`: clean accuracy,
Hessian trace, top eigenvalue) and the accuracy *selections* of Tables 1/2 (:data:`SELECTIONS`:
final, best over epochs, exit ensemble), each keyed by seed for a paired test."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ..registry import Registry
from .histories import Histories, TrainingHistory
from .results import Result


@dataclass(frozen=True)
class Metric:
    """A scalar read from one result. ``scale`` converts to display units (100 → percent)."""

    name: str
    label: str
    unit: str
    scale: float
    digits: int
    extract: Callable[[Result], float | None]
    higher_is_better: bool = True


METRICS: Registry[Metric] = Registry("metric")


def _register(metric: Metric) -> Metric:
    return METRICS.register(metric.name)(metric)


def clean_accuracy(r: Result) -> float | None:
    return (r.robustness or {}).get("clean_accuracy")


def hessian_section(r: Result) -> Mapping:
    return (r.flatness or {}).get("hessian") or {}


def hessian_trace(r: Result) -> float | None:
    return (hessian_section(r).get("trace") or {}).get("mean")


def top_eigenvalue(r: Result) -> float | None:
    eigs = hessian_section(r).get("top_eigenvalues") or []
    return max(eigs) if eigs else None


_register(Metric("accuracy", "test accuracy", "%", 100.0, 2, clean_accuracy))
_register(Metric("hessian_trace", "Hessian trace", "", 1.0, 2, hessian_trace, higher_is_better=False))
_register(Metric("top_eigenvalue", "top Hessian eigenvalue", "", 1.0, 2, top_eigenvalue,
                 higher_is_better=False))


def by_seed(results: Sequence[Result], metric: Metric) -> dict[int, float]:
    """``{seed: value}`` of results that have a seed and a value for ``metric``."""
    out = {}
    for r in results:
        v = metric.extract(r)
        if r.seed is not None and v is not None:
            out[r.seed] = float(v)
    return out


@dataclass(frozen=True)
class Selection:
    """Which accuracy a Table 1/2 row reports. ``extract(result, history)`` gives a fraction or
    None; ``families`` limits the selection to some KD families (None: all)."""

    name: str
    label: str
    extract: Callable[[Result, TrainingHistory | None], float | None]
    families: tuple[str, ...] | None = None


def _final(r: Result, h: TrainingHistory | None) -> float | None:
    return clean_accuracy(r)


def _best(r: Result, h: TrainingHistory | None) -> float | None:
    return h.best("student_test_acc") if h else None


def _best_recalibrated(r: Result, h: TrainingHistory | None) -> float | None:
    """The best BN-recalibrated per-epoch test accuracy, only when every epoch recorded one
    (``metrics.bn_recalibrated=true``): a maximum over some epochs would not be comparable."""
    col = "student_test_acc_recalibrated"
    if h is None or len(h.column(col)) != len(h.rows) or not h.rows:
        return None
    return h.best(col)


def _ensemble_final(r: Result, h: TrainingHistory | None) -> float | None:
    return h.final("ensemble_test_acc") if h else None


def _ensemble_best(r: Result, h: TrainingHistory | None) -> float | None:
    return h.best("ensemble_test_acc") if h else None


#: accuracy selections, in table order.
SELECTIONS: dict[str, Selection] = {s.name: s for s in (
    Selection("final", "final", _final),
    Selection("best", "best over epochs", _best),
    Selection("best_recalibrated", "best over epochs, BatchNorm recalibrated", _best_recalibrated),
    Selection("ensemble_final", "exit ensemble, final", _ensemble_final, ("self",)),
    Selection("ensemble_best", "exit ensemble, best over epochs", _ensemble_best, ("self",)),
)}


def history_of(histories: Histories | None, r: Result) -> TrainingHistory | None:
    return (histories or {}).get(r.path)


def seeded(results: Sequence[Result], fn: Callable[[Result], float | None]) -> dict[int, float]:
    out = {}
    for r in results:
        v = fn(r)
        if r.seed is not None and v is not None:
            out[r.seed] = float(v)
    return out
