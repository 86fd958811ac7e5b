"""Has a run converged? The evidence a verdict needs before it compares two methods.

A final accuracy is a property of the trained network only if the run has settled: a curve that
still swings by tens of points between epochs, or a network whose BatchNorm statistics do not
match its weights, gives a random point, not a result. For one run (a result with its training
history) :func:`diagnose` reports

* ``spread`` — max − min of the student's test accuracy over the last :data:`LAST_K` epochs,
* ``final_minus_best`` — final − best test accuracy over the epochs (≤ 0),
* ``bn_gap`` — as-saved − BatchNorm-recalibrated test accuracy of the final network (the
  result's ``bn`` section, else the last ``metrics.csv`` row's ``student_test_acc_recalibrated``),

all fractions, and ``converged``: spread ≤ :data:`MAX_SPREAD` and |bn_gap| ≤ :data:`MAX_BN_GAP`
(None when neither can be read: no history and no ``bn`` section).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .histories import TrainingHistory
from .results import Result

LAST_K = 3
MAX_SPREAD = 0.015          # 1.5 percentage points over the last LAST_K epochs
MAX_BN_GAP = 0.01           # 1 percentage point between as-saved and recalibrated


@dataclass(frozen=True)
class Convergence:
    """The diagnostic of one run; see the module docstring. ``why`` names what failed."""

    spread: float | None
    final_minus_best: float | None
    bn_gap: float | None
    converged: bool | None
    why: str = ""


def diagnose(result: Result, history: TrainingHistory | None) -> Convergence:
    """The convergence diagnostic of ``result`` (student network) from ``history`` and its bn
    section."""
    curve = history.column("student_test_acc") if history is not None else []
    last = curve[-LAST_K:]
    spread = max(last) - min(last) if len(last) == LAST_K else None
    final_minus_best = curve[-1] - max(curve) if curve else None
    bn_gap = _bn_gap(result, history)
    if spread is None and bn_gap is None:
        return Convergence(None, final_minus_best, None, None, "no training history")
    why = []
    if spread is not None and spread > MAX_SPREAD:
        why.append(f"last {LAST_K} epochs span {100 * spread:.1f} pp > {100 * MAX_SPREAD:g}")
    if bn_gap is not None and abs(bn_gap) > MAX_BN_GAP:
        why.append(f"BatchNorm as saved vs recalibrated differ by {100 * bn_gap:+.1f} pp "
                   f"(> {100 * MAX_BN_GAP:g})")
    return Convergence(spread, final_minus_best, bn_gap, not why, "; ".join(why))


def _bn_gap(result: Result, history: TrainingHistory | None) -> float | None:
    bn = result.data.get("bn") or {}
    if bn.get("mode") == "recalibrate":
        return bn["as_saved"]["test_accuracy"] - bn["recalibrated"]["test_accuracy"]
    if history is not None:
        saved, recal = (history.final(k) for k in ("student_test_acc",
                                                   "student_test_acc_recalibrated"))
        if saved is not None and recal is not None:
            return saved - recal
    return None


def not_converged(results: Iterable[Result], histories: dict | None) -> list[str]:
    """``"method seed N (why)"`` for every run of ``results`` diagnosed as not converged."""
    out = []
    for r in results:
        d = diagnose(r, (histories or {}).get(r.path))
        if d.converged is False:
            out.append(f"{r.key.label} seed {r.seed} ({d.why})")
    return out
