"""Verdicts: does a spaced method's gain over its counterpart survive its evidence (a paired
test over seeds, Holm-corrected within its table, runs that have converged)?

A :class:`Verdict` is the object that ``flatkd report`` writes (its sentence in ``report.md``,
every field in ``verdicts.json``) and that notebook 02 reads; nothing else words a verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .convergence import not_converged
from .histories import Histories
from .results import Result
from .stats import PairedTest, Stat, unit_suffix

#: what a verdict found, in the order a reader should worry about it
OUTCOMES = ("not converged", "no values", "too few seeds", "undefined", "gain", "no gain",
            "worse")


@dataclass(frozen=True)
class Verdict:
    """``spaced`` vs ``plain`` on ``what``: both sides' :class:`Stat` (fractions for accuracy,
    ``scale`` 100 shows percent), the paired test (Holm-adjusted within its table), the test-set
    size ``n_test`` (None: unknown), ``stale``, the runs that have not converged (a verdict
    about them is refused), and ``steps``, both sides' mean student optimizer steps (None:
    unknown; unequal budgets are said beside the verdict). A gain is a higher value, or a lower
    one with ``higher_is_better=False`` (Hessian trace: lower = flatter)."""

    spaced: str
    plain: str
    what: str
    a: Stat | None
    b: Stat | None
    test: PairedTest | None
    scale: float = 100.0
    unit: str = "%"
    digits: int = 2
    higher_is_better: bool = True
    n_test: int | None = None
    stale: tuple[str, ...] = ()
    steps: tuple[float, float] | None = None

    @property
    def outcome(self) -> str:
        """One of :data:`OUTCOMES`."""
        if self.stale:
            return "not converged"
        if self.a is None or self.b is None:
            return "no values"
        if self.test is None or self.test.n < 2:
            return "too few seeds"
        if self.test.significant is None:
            return "undefined"
        if not self.test.significant:
            return "no gain"
        gain = self.delta > 0 if self.higher_is_better else self.delta < 0
        return "gain" if gain else "worse"

    @property
    def delta(self) -> float:
        """Difference of the means, spaced − plain, in display units (NaN without values)."""
        if self.a is None or self.b is None:
            return math.nan
        return (self.a.mean - self.b.mean) * self.scale

    @property
    def unequal_budgets(self) -> bool:
        """Whether the two sides' students took different numbers of optimizer steps."""
        return budgets_differ(self.steps)

    @property
    def budget_note(self) -> str:
        """``""``, or the clause that the comparison is not step-for-step (e.g. Alg. 4's spaced
        self-KD trains twice per batch), pointing to the step-matched control."""
        if not self.unequal_budgets:
            return ""
        a, b = self.steps
        return (f" (unequal budgets: {self.spaced} took {a:,.0f} student optimizer steps, "
                f"{self.plain} {b:,.0f}; the step-matched control — {self.plain} trained for "
                f"{a:,.0f} steps — separates spacing from training longer)")

    @property
    def head(self) -> str:
        return f"{self.spaced} vs {self.plain}, {self.what}"

    @property
    def sentence(self) -> str:
        """The verdict in one plain sentence: both means ± std with their seed counts and the
        test-set size, Δ, the paired t-test (p, Holm-adjusted p) and its verdict said plainly
        either way, the smallest difference the design could detect (80 % power), and
        whether the two sides had unequal optimizer-step budgets."""
        return self._finding + self.budget_note

    @property
    def _finding(self) -> str:
        if self.stale:
            return f"{self.head}: no verdict: runs not converged: {'; '.join(self.stale)}"
        if self.a is None or self.b is None:
            side = self.spaced if self.a is None else self.plain
            return f"{self.head}: no values for {side}, nothing to compare"
        u, pp = unit_suffix(self.unit), unit_suffix(self.unit, pp=True)

        def ms(st: Stat) -> str:
            sd = "" if st.std is None else f" ± {st.std * self.scale:.{self.digits}f}"
            return f"{st.mean * self.scale:.{self.digits}f}{sd}{u}"
        images = f", {self.n_test} test images" if self.n_test else ""
        body = (f"{self.head}: {ms(self.a)} vs {ms(self.b)} ({self.a.n} vs {self.b.n} seeds"
                f"{images}); Δ = {self.delta:+.{self.digits}f}{pp}")
        t = self.test
        if self.outcome == "too few seeds":
            return (f"{body}; {0 if t is None else t.n} paired seed(s): too few for a "
                    "significance test, so the data cannot say whether the difference is real")
        if self.outcome == "undefined":
            return (f"{body}; the paired differences are identical over {t.n} seeds, so the "
                    "t-test is undefined")
        detect = (f"; with {t.n} paired seeds this design detects |Δ| ≥ "
                  f"{t.detectable * self.scale:.{self.digits}f}{pp} at 80 % power")
        pv = f"paired t-test over {t.n} seeds, {t.p_text()}"
        noun = "gain" if self.higher_is_better else "flatness gain"
        if self.outcome == "no gain":
            gain = self.delta > 0 if self.higher_is_better else self.delta < 0
            tail = f"the {noun} does not survive" if gain else f"spaced KD shows no {noun} here"
            return f"{body}, NOT significant ({pv} ≥ {t.alpha:g}){detect}: {tail}"
        if self.outcome == "gain":
            return f"{body}, significant ({pv} < {t.alpha:g}){detect}: the {noun} survives"
        worse = "worse" if self.higher_is_better else "sharper"
        return f"{body}, significant ({pv} < {t.alpha:g}){detect}: spaced KD is {worse} here"

    def as_row(self) -> dict:
        """The verdict as one flat JSON/CSV row (numbers in display units)."""
        t = self.test
        return {"spaced": self.spaced, "counterpart": self.plain, "what": self.what,
                "outcome": self.outcome, "unit": self.unit,
                "spaced_mean": self.a.mean * self.scale if self.a else None,
                "spaced_n": self.a.n if self.a else 0,
                "counterpart_mean": self.b.mean * self.scale if self.b else None,
                "counterpart_n": self.b.n if self.b else 0,
                "delta": None if math.isnan(self.delta) else self.delta,
                "n_pairs": t.n if t else 0, "n_test": self.n_test,
                "p": _num(t.p if t else math.nan), "p_holm": _num(t.p_holm if t else math.nan),
                "family": t.family if t else 0,
                "detectable": _num(t.detectable * self.scale if t else math.nan),
                "spaced_steps": _num(self.steps[0]) if self.steps else None,
                "counterpart_steps": _num(self.steps[1]) if self.steps else None,
                "not_converged": list(self.stale), "sentence": self.sentence}


def budgets_differ(steps: tuple[float, float] | None) -> bool:
    """Whether two mean optimizer-step counts differ by more than 0.5 % (rounding of a mean over
    seeds is not a difference); False when either is unknown (None or NaN)."""
    if steps is None or not all(math.isfinite(x) for x in steps):
        return False
    a, b = steps
    return abs(a - b) > 0.005 * max(abs(a), abs(b), 1.0)


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def stale_runs(runs: Sequence[Result], histories: Histories | None) -> tuple[str, ...]:
    """The runs among ``runs`` that have not converged (see
    :func:`~flatkd.evidence.convergence.diagnose`), named with the reason."""
    return tuple(not_converged(runs, histories))
