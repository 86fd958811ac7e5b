"""Verdict sentences: does a spaced method's gain over its counterpart survive its evidence
(a paired test over seeds, runs that have converged)?"""
from __future__ import annotations

from typing import Sequence

from .convergence import not_converged
from .histories import Histories
from .results import Result
from .stats import PairedTest, Stat, unit_suffix


def gain_verdict(spaced: str, plain: str, what: str, a: Stat | None, b: Stat | None,
                 test: PairedTest | None, scale: float = 100.0, unit: str = "%",
                 digits: int = 2, higher_is_better: bool = True) -> str:
    """One plain sentence: does ``spaced``'s gain over ``plain`` in ``what`` survive?

    Gives both means ± std with their seed counts, Δ and the paired t-test's verdict; says
    "NOT significant" plainly when p ≥ α, and that no test is possible with fewer than 2 pairs.
    A gain is a higher value, or a lower one with ``higher_is_better=False`` (Hessian trace:
    lower = flatter).
    """
    head = f"{spaced} vs {plain}, {what}"
    if a is None or b is None:
        side = spaced if a is None else plain
        return f"{head}: no values for {side}, nothing to compare"
    u = unit_suffix(unit)

    def ms(st: Stat) -> str:
        sd = "" if st.std is None else f" ± {st.std * scale:.{digits}f}"
        return f"{st.mean * scale:.{digits}f}{sd}{u}"
    delta = (a.mean - b.mean) * scale
    body = (f"{head}: {ms(a)} vs {ms(b)} ({a.n} vs {b.n} seeds); "
            f"Δ = {delta:+.{digits}f}{unit_suffix(unit, pp=True)}")
    if test is None or test.n < 2:
        n = 0 if test is None else test.n
        return (f"{body}; {n} paired seed(s): too few for a significance test, so the data "
                "cannot say whether the difference is real")
    if test.significant is None:
        return (f"{body}; the paired differences are identical over {test.n} seeds, so the "
                "t-test is undefined")
    pv = f"paired t-test over {test.n} seeds, p = {test.p:.3g}"
    gain = delta > 0 if higher_is_better else delta < 0
    noun = "gain" if higher_is_better else "flatness gain"
    if not test.significant:
        tail = f"the {noun} does not survive" if gain else f"spaced KD shows no {noun} here"
        return f"{body}, NOT significant ({pv} ≥ {test.alpha:g}): {tail}"
    if gain:
        return f"{body}, significant ({pv} < {test.alpha:g}): the {noun} survives"
    worse = "worse" if higher_is_better else "sharper"
    return f"{body}, significant ({pv} < {test.alpha:g}): spaced KD is {worse} here"


def unless_converged(verdict: str, runs: Sequence[Result], histories: Histories | None) -> str:
    """``verdict``, or — when a run it compares has not converged
    (:func:`~flatkd.report.convergence.diagnose`) — its head with "no verdict: runs not
    converged" and the runs named: a comparison of unsettled runs says nothing."""
    stale = not_converged(runs, histories)
    if not stale:
        return verdict
    return f"{verdict.split(':')[0]}: no verdict: runs not converged: {'; '.join(stale)}"
